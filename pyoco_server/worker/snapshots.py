"""How a worker changes run snapshots: change functions for :meth:`RunStore.update`.

``RunStore.update`` calls a change function with the latest snapshot (again after a concurrent
write) and writes what it returns with compare-and-set. The functions here only touch the
fields the worker owns, so everything else survives: ``tenant_id``/``api_key_id``, the cancel
request fields the gateway writes, plugin fields. None of them ever replaces a CANCELLING
status with RUNNING, and none overwrites a terminal snapshot.
"""

from __future__ import annotations

import time
from typing import Any

from ..children.changes import resumable
from ..model import (
    CANCELLED,
    CANCELLING,
    PENDING,
    PENDING_APPROVAL,
    RUNNING,
    WAITING,
    is_terminal,
)

Snapshot = dict[str, Any]


def _cancel_pending_tasks(tasks: dict[str, str]) -> dict[str, str]:
    return {name: "CANCELLED" if state == "PENDING" else state for name, state in tasks.items()}


class Claim:
    """Mark a run RUNNING on this worker, unless it must not run.

    After the update, :attr:`decision` tells what happened: ``run`` (claimed, execute it),
    ``finished`` (already terminal: redelivered job, or a PENDING run the gateway cancelled;
    or the job is of an earlier ``attempt`` than the run's, superseded by a redrive)
    or ``cancelled`` (a cancel was pending: written CANCELLED without executing).

    A parent's resumption job (``resume`` one above the snapshot's) is run from WAITING when
    every awaited child is done: the gateway publishes it before writing the parent PENDING
    (see :mod:`pyoco_server.gateway.children.join`), so it may arrive first, or alone when
    that gateway died in between. Likewise the job of a PENDING_APPROVAL run is run, with the
    approval recorded: only an approval publishes it, before writing the snapshot.

    The claim records the delivery it came from (``job_stream_seq``: the job's sequence in the
    work stream, ``num_delivered``), so the gateway's lost-run reconciliation can ask JetStream
    whether the job can still be delivered again.
    """

    RUN = "run"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    #: An earlier attempt of a parent whose resumption was decided but maybe never queued.
    RESUME_DUE = "resume_due"

    def __init__(
        self,
        worker_id: str,
        job_stream_seq: int | None = None,
        num_delivered: int | None = None,
        attempt: int | None = None,
        resume: int = 0,
        approved_by: str | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.job_stream_seq = job_stream_seq
        self.num_delivered = num_delivered
        self.attempt = attempt
        self.resume = resume
        self.approved_by = approved_by
        self.decision: str | None = None
        self.found_status: str | None = None

    def __call__(self, snapshot: Snapshot) -> Snapshot | None:
        now = time.time()
        self.found_status = snapshot.get("status")
        if is_terminal(self.found_status) or self._superseded(snapshot):
            self.decision = self.FINISHED
            return None
        if resumable(snapshot) and self.resume == int(snapshot.get("resume") or 0) + 1:
            # The resumption job of a parent whose gateway published it and has not yet (or
            # never: it died) written the parent PENDING: the job is due, run it.
            snapshot.update(resume=self.resume, waiting_on=[])
        elif self.found_status == WAITING or int(snapshot.get("resume") or 0) > self.resume:
            # A suspended parent (or a later resumption of it) owns the run: this delivery is
            # an earlier attempt's, redelivered after it had suspended.
            due = self.found_status == PENDING
            self.decision = self.RESUME_DUE if due else self.FINISHED
            return None
        if self.found_status == PENDING_APPROVAL:
            # Only an approval queues the job of a run awaiting one, and it publishes before it
            # writes: this job is the approval, arriving first (or alone: its gateway died).
            snapshot["approval"] = {"state": "approved", "by": self.approved_by, "at": now}
        if self.found_status == CANCELLING:
            self.decision = self.CANCELLED
            snapshot.update(
                status=CANCELLED,
                end_time=now,
                heartbeat_at=now,
                tasks=_cancel_pending_tasks(snapshot.get("tasks") or {}),
            )
            return snapshot
        self.decision = self.RUN
        snapshot.update(
            status=RUNNING,
            worker_id=self.worker_id,
            start_time=now,
            end_time=None,
            error=None,
            heartbeat_at=now,
            tasks={},
            task_records={},
            task_records_truncated=False,
            job_stream_seq=self.job_stream_seq,
            num_delivered=self.num_delivered,
        )
        return snapshot

    def _superseded(self, snapshot: Snapshot) -> bool:
        run_attempt = snapshot.get("attempt")
        return (
            self.attempt is not None
            and isinstance(run_attempt, int)
            and not isinstance(run_attempt, bool)
            and run_attempt > self.attempt
        )


class Progress:
    """Refresh ``heartbeat_at`` (and task states, when given) of a run this worker executes.

    Leaves the status alone, so a CANCELLING written by the gateway stays; afterwards
    :attr:`cancel_requested` says whether the run was CANCELLING. Writes nothing once the run
    is terminal or another worker has claimed it (a redelivery this worker lost).
    """

    def __init__(
        self,
        worker_id: str,
        tasks: dict[str, str] | None = None,
        task_records: dict[str, Any] | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.tasks = tasks
        self.task_records = task_records
        self.cancel_requested = False

    def __call__(self, snapshot: Snapshot) -> Snapshot | None:
        status = snapshot.get("status")
        if is_terminal(status) or snapshot.get("worker_id") != self.worker_id:
            return None
        self.cancel_requested = status == CANCELLING
        snapshot["heartbeat_at"] = time.time()
        if self.tasks is not None:
            snapshot["tasks"] = self.tasks
            snapshot["task_records"] = self.task_records or {}
            snapshot["task_records_truncated"] = False
        return snapshot


class Finish:
    """Write a terminal snapshot (COMPLETED, FAILED or CANCELLED), unless one exists already.

    ``tasks``/``task_records`` of ``None`` keep what the snapshot has; ``worker_id`` of
    ``None`` keeps the recorded worker (for jobs this worker never ran, e.g. invalid ones).
    """

    def __init__(
        self,
        status: str,
        *,
        worker_id: str | None = None,
        error: str | None = None,
        tasks: dict[str, str] | None = None,
        task_records: dict[str, Any] | None = None,
        ended_at: float | None = None,
    ) -> None:
        self.status = status
        self.worker_id = worker_id
        self.error = error
        self.tasks = tasks
        self.task_records = task_records
        self.ended_at = ended_at

    def __call__(self, snapshot: Snapshot) -> Snapshot | None:
        if is_terminal(snapshot.get("status")):
            return None
        now = time.time()
        snapshot.update(
            status=self.status, end_time=self.ended_at or now, heartbeat_at=now, error=self.error
        )
        if self.worker_id is not None:
            snapshot["worker_id"] = self.worker_id
        if self.tasks is not None:
            snapshot["tasks"] = self.tasks
            snapshot["task_records"] = self.task_records or {}
            snapshot["task_records_truncated"] = False
        return snapshot


class Requeue:
    """Put a run whose attempt failed back to PENDING while its job waits for redelivery.

    Used when a ``pyoco_failure_disposition`` answers ``nak`` with ``snapshot_status``
    ``PENDING`` (a retry): the error and the task states of the failed attempt stay visible,
    the worker is released, and the redelivered job claims the run again like a new one.
    Leaves terminal and CANCELLING runs alone (a CANCELLING run is ended by the next claim).
    """

    def __init__(
        self,
        *,
        error: str | None = None,
        tasks: dict[str, str] | None = None,
        task_records: dict[str, Any] | None = None,
    ) -> None:
        self.error = error
        self.tasks = tasks
        self.task_records = task_records

    def __call__(self, snapshot: Snapshot) -> Snapshot | None:
        status = snapshot.get("status")
        if is_terminal(status) or status == CANCELLING:
            return None
        snapshot.update(
            status=PENDING,
            worker_id=None,
            end_time=None,
            heartbeat_at=time.time(),
            error=self.error,
        )
        if self.tasks is not None:
            snapshot["tasks"] = self.tasks
            snapshot["task_records"] = self.task_records or {}
            snapshot["task_records_truncated"] = False
        return snapshot
