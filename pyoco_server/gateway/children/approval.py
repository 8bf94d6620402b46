"""Approval of spawn bundles: PENDING_APPROVAL → PENDING (approve) or CANCELLED (reject).

A bundle that can reach a ``spawn:`` task is stored PENDING_APPROVAL while
``PYOCO_SPAWN_REQUIRES_APPROVAL`` is on (the default); its job waits in the spawn bucket and is
queued only by ``POST /runs/{id}/approve``. Both decisions are compare-and-set changes, so
two approvals queue the run once, and an approval racing a rejection has one winner.
"""

from __future__ import annotations

import time
from typing import Any

from ...model import CANCELLED, PENDING, PENDING_APPROVAL

APPROVED = "approved"
REJECTED = "rejected"


class Decide:
    """Change function of an approval decision; :attr:`applied` says whether it was taken
    now, :attr:`found` the status it was taken on."""

    def __init__(self, decision: str, by: str | None, reason: str | None = None) -> None:
        self.decision = decision
        self.by = by
        self.reason = reason
        self.applied = False
        self.found: str | None = None

    def __call__(self, snapshot: dict[str, Any]) -> dict[str, Any] | None:
        self.found = snapshot.get("status")
        self.applied = False
        if self.found != PENDING_APPROVAL:
            return None
        now = time.time()
        snapshot["approval"] = {"state": self.decision, "by": self.by, "at": now}
        if self.decision == APPROVED:
            snapshot.update(status=PENDING, heartbeat_at=now)
        else:
            error = "rejected by approval"
            if self.reason:
                snapshot["approval"]["reason"] = self.reason
                error = f"{error}: {self.reason}"
            snapshot.update(status=CANCELLED, end_time=now, heartbeat_at=now, error=error)
        self.applied = True
        return snapshot
