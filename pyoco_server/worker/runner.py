"""One delivered job, from message to queue action (contract §7.1).

decode → claim the run (RUNNING, compare-and-set) → execute in an execution process while
:class:`~pyoco_server.worker.heartbeats.Heartbeats` keeps it alive → terminal snapshot →
ACK. Anything that goes wrong becomes a :class:`~pyoco_server.model.Failure` handed to the
:class:`~pyoco_server.worker.dispositions.Disposer`. At-least-once: the terminal snapshot is
written before the ACK, and a job whose run is already terminal is ACKed without running.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from ..children.tree import APPROVED_BY
from ..errors import err_id, msg_id
from ..jobs import InvalidJob, decode_job, pending_from_job
from ..log import get_logger, structlog
from ..model import CANCELLED, Failure
from ..run_store import RunNotFound
from .children.coordinator import ChildCoordinator, ParentGone
from .consumer import Delivery
from .dispositions import Disposer
from .heartbeats import ActiveRun, Heartbeats
from .pool import ExecutionPool, RunExecution
from .protocol import Outcome
from .registration import WorkerRecord
from .run_writer import WorkerRunStore
from .snapshots import Claim, Finish

log = get_logger(__name__)

#: How long a claimed job may wait for an execution process (one is being replaced) before it
#: is handed back to the queue.
EXECUTION_PROCESS_WAIT_SEC = 90.0
#: Waits between attempts to write a terminal snapshot before the job is NAKed instead.
TERMINAL_WRITE_RETRY_DELAYS_SEC = (0.25, 0.5, 1.0, 1.5)


def _partial_job(data: bytes) -> dict[str, Any] | None:
    """Whatever an invalid job message still tells (a JSON object), for its dead letter."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def stopped_outcome(outcome: Outcome, grace_sec: float, hard_stopped: bool) -> Outcome:
    """The CANCELLED outcome of a cancelled run whose execution process was killed.

    Tasks that had not finished (PENDING or RUNNING) become CANCELLED; a task that was still
    running when the grace period ran out says so in its record's ``error``.
    """
    tasks = dict(outcome.tasks)
    records = {name: dict(record) for name, record in outcome.task_records.items()}
    for name, state in tasks.items():
        if state not in ("PENDING", "RUNNING"):
            continue
        tasks[name] = CANCELLED
        record = records.setdefault(name, {})
        record["state"] = CANCELLED
        if state == "RUNNING":
            record["ended_at"] = outcome.ended_at
            if hard_stopped:
                record["error"] = (
                    f"stopped hard: still running {grace_sec:g} s after the cancel "
                    "(PYOCO_CANCEL_GRACE_PERIOD_SEC)"
                )
    return Outcome(CANCELLED, None, None, tasks, records, outcome.ended_at)


class JobRunner:
    """Runs delivered jobs on the host's execution pool."""

    def __init__(
        self,
        *,
        worker_id: str,
        store: WorkerRunStore,
        pool: ExecutionPool,
        heartbeats: Heartbeats,
        disposer: Disposer,
        record: WorkerRecord,
        children: ChildCoordinator,
    ) -> None:
        self.worker_id = worker_id
        self.children = children
        self.store = store
        self.pool = pool
        self.heartbeats = heartbeats
        self.disposer = disposer
        self.record = record
        self._executed: dict[int, Callable[[], None]] = {}

    @property
    def executions(self) -> list[RunExecution]:
        return [run.execution for run in self.heartbeats.runs.values() if run.execution]

    def abort_all(self) -> None:
        """Hard-stop every flow in progress (shutdown after the grace period)."""
        for execution in self.executions:
            execution.abort()

    async def handle(self, delivery: Delivery, executed: Callable[[], None] | None = None) -> None:
        """Process one delivery; never raises.

        ``executed()`` is called once the job no longer needs an execution process (its outcome
        is known, or it never ran): the host may take the next job while this one's terminal
        snapshot and ACK are still being written.
        """
        if executed is not None:
            self._executed[id(delivery)] = executed
        try:
            await self._handle(delivery)
        finally:
            self._free_slot(delivery)

    def _free_slot(self, delivery: Delivery) -> None:
        executed = self._executed.pop(id(delivery), None)
        if executed is not None:
            executed()

    async def _handle(self, delivery: Delivery) -> None:
        try:
            job = decode_job(delivery.msg.data)
        except InvalidJob as exc:
            partial = _partial_job(delivery.msg.data)
            run_id = partial.get("run_id") if partial else None
            context = {"run_id": run_id if isinstance(run_id, str) else None}
            failure = Failure("invalid_job", str(exc), partial, *self._counts(delivery))
            await self._guarded(self._fail(failure, delivery), delivery, context)
            return
        context = {
            "run_id": job["run_id"],
            "flow_name": job["flow_name"],
            "tag": job.get("tag") or delivery.tag,
        }
        await self._guarded(self._run(job, delivery), delivery, context)

    async def _guarded(self, work: Any, delivery: Delivery, context: dict[str, Any]) -> None:
        with structlog.contextvars.bound_contextvars(**context):
            try:
                await work
            except Exception as exc:  # a bug: keep the job, let it come back
                log.exception("job_handling_failed", error=f"{type(exc).__name__}: {exc}")
                await delivery.settle("nak", 2.0)

    @staticmethod
    def _counts(delivery: Delivery) -> tuple[int, int]:
        return delivery.num_delivered, delivery.max_deliver

    async def _fail(
        self, failure: Failure, delivery: Delivery, outcome: Outcome | None = None
    ) -> None:
        await self.disposer.dispose(failure, delivery, outcome)

    async def _transient(self, job: dict[str, Any], delivery: Delivery, error: str) -> None:
        await self._fail(Failure("transient", error, job, *self._counts(delivery)), delivery)

    async def _claim(self, run: ActiveRun) -> bool:
        """Mark the run RUNNING; ``False`` when the job must not run (and was settled)."""
        job, delivery = run.job, run.delivery
        attempt = job.get("attempt")
        claim = Claim(
            self.worker_id,
            job_stream_seq=delivery.stream_seq,
            num_delivered=delivery.num_delivered,
            attempt=attempt if isinstance(attempt, int) else None,
            resume=job.get("resume") if isinstance(job.get("resume"), int) else 0,
            approved_by=job.get(APPROVED_BY) if isinstance(job.get(APPROVED_BY), str) else None,
        )
        try:
            # A job from the gateway carries the PENDING snapshot it created: the claim is a
            # single compare-and-set on it (a stale one fails and the latest is read).
            known = pending_from_job(job)
            run.latest = await self.store.update(job["run_id"], claim, "started", job, known)
        except RunNotFound:
            # The gateway removes a run whose publish it reported as failed: the client was
            # told the run does not exist, so it must not run.
            log.warning("job_without_run", err_id=err_id(5), msg_id=msg_id(5), action="term")
            await delivery.settle("term")
            return False
        except Exception as exc:
            await self._transient(
                job, delivery, f"could not mark the run RUNNING: {type(exc).__name__}: {exc}"
            )
            return False
        if claim.decision == Claim.FINISHED:
            log.info("run_already_terminal", status=claim.found_status, action="ack")
            await delivery.settle("ack")
            return False
        if claim.decision == Claim.RESUME_DUE:
            try:
                await self.children.resume_due(job["run_id"], int(run.latest[0]["resume"]))
            except Exception as exc:
                await self._transient(job, delivery, f"resumption not queued: {exc}")
                return False
            log.info("run_resumption_requeued", action="ack")
            await delivery.settle("ack")
            return False
        if claim.decision == Claim.CANCELLED:
            log.info("run_cancelled_before_start", action="ack")
            await delivery.settle("ack")
            return False
        return True

    async def _run(self, job: dict[str, Any], delivery: Delivery) -> None:
        grace = self.heartbeats.settings.cancel_grace_period_sec
        run = ActiveRun(job["run_id"], job, delivery, cancel_grace_sec=grace)
        self.heartbeats.add(run)  # in_progress from the start, in case claiming is slow
        self.record.run_started(run.run_id)
        try:
            if not await self._claim(run):
                return
            log.info("run_started", num_delivered=delivery.num_delivered)
            try:
                assert run.latest is not None
                runnable = await self.children.prepare(job, run.latest[0])
            except ParentGone as gone:
                await self.children.end_orphan(run.run_id, str(gone), run.latest)
                await delivery.settle("ack")
                return
            except Exception as exc:
                await self._transient(job, delivery, f"child runs not read: {exc}")
                return
            try:
                execution = await asyncio.wait_for(
                    self.pool.run(runnable), EXECUTION_PROCESS_WAIT_SEC
                )
            except asyncio.TimeoutError:
                await self._transient(job, delivery, "no execution process could be started")
                return
            execution.on_progress(lambda: self.heartbeats.progressed(run))
            execution.on_spawn(lambda request: self.children.spawned(run.run_id, request))
            run.attach(execution)
            outcome = await execution.outcome()
            self._free_slot(delivery)
            run.close()
            if not execution.aborted and await self._suspended(run, outcome):
                return
            await self._finish(run, execution, outcome)
        finally:
            self.children.forget(run.run_id)
            self.heartbeats.remove(run)
            self.record.run_finished(run.run_id)

    async def _suspended(self, run: ActiveRun, outcome: Outcome) -> bool:
        """Settle the children side of the attempt; ``True`` when the run suspended itself
        (WAITING, its job ACKed here) or the attempt was handed back to the queue."""
        try:
            decision = await self.children.settle(run.run_id, outcome, run.latest)
        except Exception as exc:
            await self._transient(run.job, run.delivery, f"child runs not settled: {exc}")
            return True
        if decision is None:
            return False
        await run.delivery.settle("ack")
        return True

    async def _finish(self, run: ActiveRun, execution: RunExecution, outcome: Outcome) -> None:
        delivery = run.delivery
        if execution.aborted:
            if run.cancel_requested:
                outcome = stopped_outcome(outcome, run.cancel_grace_sec, run.hard_stopped)
            else:
                # Stopped by a shutdown: another worker gets the job at once.
                log.warning("run_interrupted_requeued", action="nak")
                await delivery.settle("nak")
                return
        if outcome.kind is not None:
            failure = Failure(outcome.kind, outcome.error or "", run.job, *self._counts(delivery))
            await self._fail(failure, delivery, outcome)
            return
        finish = Finish(
            outcome.status,
            worker_id=self.worker_id,
            tasks=outcome.tasks,
            task_records=outcome.task_records,
            ended_at=outcome.ended_at,
        )
        error = await self._write_terminal(run, finish)
        if error is not None:
            log.error(
                "terminal_snapshot_not_written",
                error=error,
                err_id=err_id(8),
                msg_id=msg_id(8),
                action="nak",
            )
            await self._transient(run.job, delivery, f"terminal snapshot not written: {error}")
            return
        log.info("run_finished", status=outcome.status)
        await delivery.settle("ack")

    async def _write_terminal(self, run: ActiveRun, finish: Finish) -> str | None:
        """Write the terminal snapshot, retrying briefly; the last error, or ``None``."""
        error = None
        for delay in (*TERMINAL_WRITE_RETRY_DELAYS_SEC, None):
            try:
                await self.store.update(run.run_id, finish, "finished", run.job, run.latest)
                return None
            except RunNotFound:
                log.warning("run_vanished_before_finish", err_id=err_id(5), msg_id=msg_id(5))
                return None
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.warning("terminal_snapshot_retry", error=error, retry_in_sec=delay)
            if delay is not None:
                await asyncio.sleep(delay)
        return error
