"""Keeping the runs of a host alive while they execute.

Two host-wide loops instead of tasks per run (a short run never touches them):

* every ``PYOCO_RUN_HEARTBEAT_INTERVAL_SEC`` each active run's snapshot gets ``heartbeat_at``
  (and the latest task states) — the same coalesced write that task progress triggers, so a
  run has at most one snapshot write in flight and progress never queues up;
* JetStream ``in_progress`` for every active job, so a run longer than AckWait is not
  redelivered (ERR-PYOCO-0009 when it fails).

A failed write is logged and never stops the run or its terminal write.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ..config import Settings
from ..errors import err_id, msg_id
from ..log import get_logger
from .consumer import Delivery
from .pool import RunExecution
from .run_writer import WorkerRunStore
from .snapshots import Progress

log = get_logger(__name__)


class ActiveRun:
    """A job this host holds, from its claim until its queue action.

    A cancel (the snapshot was found CANCELLING) is passed on to the execution process at once
    — or as soon as one is attached — and, if the flow has not ended ``cancel_grace_sec``
    later, the execution process is killed (:meth:`RunExecution.abort`): the run then ends
    CANCELLED without waiting for a task that ignores cancellation.
    """

    def __init__(
        self, run_id: str, job: dict[str, Any], delivery: Delivery, cancel_grace_sec: float = 30.0
    ) -> None:
        self.run_id = run_id
        self.job = job
        self.delivery = delivery
        self.cancel_grace_sec = cancel_grace_sec
        self.execution: RunExecution | None = None
        loop = asyncio.get_running_loop()
        self.started = loop.time()
        self.last_progress_ack = self.started
        self.cancel_requested = False
        #: The snapshot and KV revision this host wrote or read last: the next write starts
        #: from it instead of reading the run again (``RunStore.update(known=...)``).
        self.latest: tuple[dict[str, Any], int] | None = None
        #: True once the grace period ran out and the execution process was killed.
        self.hard_stopped = False
        #: Set once the outcome is known: no more progress writes.
        self.closed = False
        self._writing = False
        self._dirty = False
        self._progress_pending = False
        self._hard_stop: asyncio.TimerHandle | None = None

    def attach(self, execution: RunExecution) -> None:
        self.execution = execution
        if self.cancel_requested:
            self._cancel_execution()

    def request_cancel(self) -> None:
        """The run is CANCELLING: cancel the flow cooperatively, hard-stop it after the grace
        period (no-op when already requested)."""
        if self.cancel_requested or self.closed:
            return
        self.cancel_requested = True
        log.info("run_cancel_requested", run_id=self.run_id, grace_sec=self.cancel_grace_sec)
        if self.execution is not None:
            self._cancel_execution()

    def _cancel_execution(self) -> None:
        assert self.execution is not None
        self.execution.request_cancel()
        if self._hard_stop is None:
            loop = asyncio.get_running_loop()
            self._hard_stop = loop.call_later(self.cancel_grace_sec, self._stop_hard)

    def _stop_hard(self) -> None:
        if self.closed or self.execution is None or self.execution.finished:
            return
        log.warning(
            "run_hard_stopped",
            run_id=self.run_id,
            reason="the flow did not end within PYOCO_CANCEL_GRACE_PERIOD_SEC after the cancel",
            grace_sec=self.cancel_grace_sec,
        )
        self.hard_stopped = True
        self.execution.abort()

    def close(self) -> None:
        """The outcome is known: stop writing progress, forget the hard-stop timer."""
        self.closed = True
        if self._hard_stop is not None:
            self._hard_stop.cancel()


class Heartbeats:
    """Snapshot heartbeats/progress and ``in_progress`` acks for every active run."""

    def __init__(self, settings: Settings, worker_id: str, store: WorkerRunStore) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.store = store
        self.runs: dict[str, ActiveRun] = {}
        self._writes: set[asyncio.Task[None]] = set()

    def add(self, run: ActiveRun) -> None:
        self.runs[run.run_id] = run

    def remove(self, run: ActiveRun) -> None:
        run.close()
        if self.runs.get(run.run_id) is run:
            del self.runs[run.run_id]

    def progressed(self, run: ActiveRun) -> None:
        """New task states arrived from the execution process."""
        run._progress_pending = True
        self.request_write(run)

    def request_write(self, run: ActiveRun) -> None:
        """Write the run's heartbeat and latest task states soon (coalesced)."""
        if run.closed:
            return
        if run._writing:
            run._dirty = True
            return
        run._writing = True
        task = asyncio.get_running_loop().create_task(self._write(run))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, run: ActiveRun) -> None:
        try:
            while not run.closed:
                run._dirty = False
                execution = run.execution
                event = "progress" if run._progress_pending else "heartbeat"
                run._progress_pending = False
                change = Progress(
                    self.worker_id,
                    execution.tasks if execution and execution.tasks else None,
                    execution.task_records if execution and execution.tasks else None,
                )
                try:
                    run.latest = await self.store.update(
                        run.run_id, change, event, run.job, run.latest
                    )
                except Exception as exc:
                    log.warning(
                        "run_heartbeat_failed",
                        run_id=run.run_id,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                if change.cancel_requested:
                    run.request_cancel()
                if not run._dirty:
                    break
        finally:
            run._writing = False

    async def heartbeat_loop(self, stop: asyncio.Event) -> None:
        """Every run heartbeat interval, refresh each active run that is not brand new."""
        interval = self.settings.run_heartbeat_interval_sec
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            try:
                now = loop.time()
                for run in list(self.runs.values()):
                    if now - run.started >= interval / 2:
                        self.request_write(run)
            except Exception as exc:  # never let the loop die
                log.error("heartbeat_loop_error", error=f"{type(exc).__name__}: {exc}")

    async def ack_progress_loop(self, stop: asyncio.Event) -> None:
        """Send ``in_progress`` so that no active job is older than the interval unacked."""
        interval = self.settings.ack_progress_interval_sec
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), interval / 2)
            for run in list(self.runs.values()):
                now = loop.time()
                if now - run.last_progress_ack < interval / 2:
                    continue
                run.last_progress_ack = now
                try:
                    await run.delivery.msg.in_progress()
                except Exception as exc:
                    log.warning(
                        "in_progress_failed",
                        run_id=run.run_id,
                        error=f"{type(exc).__name__}: {exc}",
                        err_id=err_id(9),
                        msg_id=msg_id(9),
                    )

    async def drain(self, timeout: float) -> None:
        """Wait for snapshot writes in flight (bounded)."""
        if self._writes:
            await asyncio.wait(list(self._writes), timeout=timeout)
