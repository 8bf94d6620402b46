"""``POST /runs/{run_id}/cancel``: record a cancel request with compare-and-set.

The request is one :meth:`~pyoco_server.run_store.RunStore.update` with :class:`CancelRequest` as
its change function. ``RunStore.update`` calls it again with the newer snapshot whenever a
worker wrote in between, so the decision is always taken on the latest state and a cancel is
never lost nor a terminal snapshot overwritten:

* PENDING, PENDING_APPROVAL and WAITING (a parent suspended until its child runs end) →
  CANCELLED at once (no worker is needed, so a tag without workers never leaves the
  run waiting; the job still queued is ACKed without executing by whichever worker takes it);
* RUNNING → CANCELLING (the worker executing it notices at its next run heartbeat, cancels the
  flow and writes CANCELLED, or COMPLETED when every task had already succeeded);
* CANCELLING and terminal runs are left as they are (a repeated cancel is idempotent).
"""

from __future__ import annotations

import time
from typing import Any

from ..log import get_logger
from ..model import CANCELLED, CANCELLING, PENDING, PENDING_APPROVAL, RUNNING, WAITING

log = get_logger(__name__)

#: The ``pyoco_enrich_snapshot`` event of a cancel write (the new status tells which kind).
EVENT = "cancel_requested"


class CancelRequest:
    """Change function: apply a cancel request to the latest snapshot (``None``: no write).

    ``requested_by`` (the caller's API key id, when authentication identifies it) is stored as
    ``cancel_requested_by``. After the update, :attr:`before` is the status the decision was
    taken on and :attr:`wrote` tells whether the snapshot changed.
    """

    def __init__(self, requested_by: str | None = None) -> None:
        self.requested_by = requested_by
        self.before: str | None = None
        self.wrote = False

    def _stamp(self, snapshot: dict[str, Any], now: float) -> None:
        snapshot["cancel_requested_at"] = now
        if self.requested_by is not None:
            snapshot["cancel_requested_by"] = self.requested_by

    def __call__(self, snapshot: dict[str, Any]) -> dict[str, Any] | None:
        now = time.time()
        self.before = snapshot.get("status")
        self.wrote = self.before in (PENDING, RUNNING, WAITING, PENDING_APPROVAL)
        if self.before in (PENDING, WAITING, PENDING_APPROVAL):
            self._stamp(snapshot, now)
            tasks = snapshot.get("tasks") or {}
            snapshot.update(
                status=CANCELLED,
                end_time=now,
                tasks={name: CANCELLED if s == PENDING else s for name, s in tasks.items()},
            )
            return snapshot
        if self.before == RUNNING:
            self._stamp(snapshot, now)
            snapshot["status"] = CANCELLING
            return snapshot
        return None  # CANCELLING already, or terminal: unchanged


async def cancel_run(store: Any, run_id: str, requested_by: str | None) -> dict[str, Any]:
    """Apply a cancel request to ``run_id`` and return the snapshot that is current afterwards.

    Raises :class:`~pyoco_server.run_store.RunNotFound` when the run does not exist.
    """
    change = CancelRequest(requested_by)
    snapshot, _ = await store.update(run_id, change, EVENT)
    log.info(
        "run_cancel",
        run_id=run_id,
        found=change.before,
        status=snapshot.get("status"),
        written=change.wrote,
    )
    return snapshot
