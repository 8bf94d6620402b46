"""Snapshot change functions of the run tree (for :meth:`RunStore.update`).

Every decision about a parent — suspend it, note a finished child, resume it — is taken
inside one compare-and-set of the parent's snapshot, so the host suspending a parent and the
gateway noting its last child can race in any order and one resumption is queued (several
gateways that noted the same last child publish the same ``Nats-Msg-Id``: one job).
"""

from __future__ import annotations

import time
from typing import Any

from ..model import CANCELLED, CANCELLING, PENDING, WAITING, is_terminal

Snapshot = dict[str, Any]

#: Decisions taken by the change functions.
RESUME = "resume"
WAIT = "wait"
CANCEL = "cancel"
NOTHING = "nothing"


def _merged(first: list[str], more: list[str]) -> list[str]:
    seen = set(first)
    return first + [item for item in more if item not in seen and not seen.add(item)]


def _resume(snapshot: Snapshot, now: float) -> None:
    snapshot.update(
        status=PENDING,
        resume=int(snapshot.get("resume") or 0) + 1,
        worker_id=None,
        heartbeat_at=now,
        waiting_on=[],
    )


class SuspendParent:
    """The host ends a parent's attempt that waits on children: WAITING (no worker), or
    straight back to PENDING when those children are already terminal, or CANCELLED when a
    cancel arrived meanwhile. :attr:`decision` tells which (``nothing``: the run is no longer
    this worker's)."""

    def __init__(self, worker_id: str, child_ids: list[str], waiting_on: list[str]) -> None:
        self.worker_id = worker_id
        self.child_ids = child_ids
        self.waiting_on = waiting_on
        self.decision = NOTHING

    def __call__(self, snapshot: Snapshot) -> Snapshot | None:
        self.decision = NOTHING
        status = snapshot.get("status")
        if is_terminal(status) or snapshot.get("worker_id") != self.worker_id:
            return None
        now = time.time()
        known = list(snapshot.get("child_run_ids") or [])
        snapshot["child_run_ids"] = _merged(known, self.child_ids)
        if status == CANCELLING:
            self.decision = CANCEL
            tasks = snapshot.get("tasks") or {}
            snapshot.update(
                status=CANCELLED,
                end_time=now,
                heartbeat_at=now,
                waiting_on=[],
                tasks={n: CANCELLED if s in (PENDING, "RUNNING") else s for n, s in tasks.items()},
            )
            return snapshot
        done = snapshot.get("children_done") or {}
        if all(child in done for child in self.waiting_on):
            self.decision = RESUME
            _resume(snapshot, now)
            return snapshot
        self.decision = WAIT
        snapshot.update(
            status=WAITING, worker_id=None, heartbeat_at=now, waiting_on=self.waiting_on
        )
        return snapshot


class RecordChildIds:
    """Add the ids of children a still-running attempt spawned (nothing when terminal)."""

    def __init__(self, child_ids: list[str]) -> None:
        self.child_ids = child_ids

    def __call__(self, snapshot: Snapshot) -> Snapshot | None:
        known = list(snapshot.get("child_run_ids") or [])
        merged = _merged(known, self.child_ids)
        if merged == known:
            return None
        snapshot["child_run_ids"] = merged
        return snapshot


def resumable(snapshot: Snapshot) -> bool:
    """A WAITING parent every awaited child of which is terminal (noted in ``children_done``)."""
    done = snapshot.get("children_done") or {}
    return snapshot.get("status") == WAITING and all(
        child in done for child in snapshot.get("waiting_on") or []
    )


class ChildFinished:
    """Note a terminal child in its parent (``children_done``). The parent stays WAITING:
    :attr:`decision` is ``resume`` when it has become :func:`resumable` — whoever noted the
    child then publishes the resumption job and only afterwards writes :class:`ResumeParent`
    (publish first: a crash in between leaves a WAITING parent, which the sweep resumes)."""

    def __init__(self, child_id: str, status: str) -> None:
        self.child_id = child_id
        self.status = status
        self.decision = NOTHING

    def __call__(self, snapshot: Snapshot) -> Snapshot | None:
        self.decision = NOTHING
        if is_terminal(snapshot.get("status")):
            return None
        done = dict(snapshot.get("children_done") or {})
        if done.get(self.child_id) == self.status:
            return None
        done[self.child_id] = self.status
        snapshot["children_done"] = done
        if resumable(snapshot):
            self.decision = RESUME
        return snapshot


class ResumeParent:
    """WAITING → PENDING with ``resume`` + 1, once its resumption job was published; only while
    the parent is still :func:`resumable` at resumption ``resume`` (a worker that already
    claimed the published job, a cancel or a second gateway make it a no-op)."""

    def __init__(self, resume: int) -> None:
        self.resume = resume
        self.applied = False

    def __call__(self, snapshot: Snapshot) -> Snapshot | None:
        self.applied = False
        if not resumable(snapshot) or int(snapshot.get("resume") or 0) != self.resume:
            return None
        _resume(snapshot, time.time())
        self.applied = True
        return snapshot
