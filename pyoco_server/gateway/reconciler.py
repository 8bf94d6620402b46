"""Lost-run reconciliation: runs whose worker vanished end instead of saying RUNNING forever.

Two ways a gateway ends a run its worker can no longer finish (every gateway runs both; see
docs/operations.md):

* **Lost runs** — every ``PYOCO_RECONCILE_INTERVAL_SEC`` the gateway takes the RUNNING and
  CANCELLING runs from its run index (no scan: the index keeps a set per status) whose
  ``heartbeat_at`` is older than ``PYOCO_RUN_LOST_AFTER_SEC`` and asks JetStream whether their
  job can still be delivered. The worker's claim recorded the job's stream sequence and
  delivery count: a job that is gone from the work stream, or that was delivered
  ``MaxDeliver`` times and whose AckWait has run out since the last heartbeat, will never
  reach a worker again; any other job will (a redelivered job that executes refreshes the
  heartbeat when it is claimed, before anything else), so the run is left alone.
* **Exhausted jobs** — the JetStream advisory
  ``$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<work stream>.<consumer>`` names the stream
  sequence of a job that ran out of deliveries; the job (still stored: a work-queue stream
  keeps an unacknowledged message) tells the run, which ends even if no worker ever wrote to
  it (a worker killed before its claim).

A RUNNING or PENDING run ends FAILED (``lost: worker <id> stopped heartbeating``, or
``max_deliveries: …``) with a dead letter of reason ``lost`` / ``max_deliveries``; a
CANCELLING run ends CANCELLED without one (its cancel was asked for). Exactly once, whatever
the number of gateways: the terminal snapshot is a compare-and-set that only applies while the
run is still as observed (same status family, worker and heartbeat), and only the gateway whose
write won publishes the dead letter (with a ``Nats-Msg-Id`` too). The job message is then
deleted from the work stream, so a queue never shows a job nobody will take.

Worker and gateway clocks must agree (NTP): ``heartbeat_at`` is the worker's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nats.js.errors import NotFoundError

from ..config import Settings
from ..errors import err_id, msg_id
from ..jobs import InvalidJob, build_job, decode_job, without_pending
from ..log import get_logger
from ..model import CANCELLED, CANCELLING, FAILED, PENDING, RUNNING, is_terminal
from ..nats_client import NatsConnection
from ..run_store import RunNotFound, RunStore
from .dead_letters import DeadLetterQueue
from .workers import epoch_seconds

log = get_logger(__name__)

#: Error number of a run ended by reconciliation (ERR-PYOCO-0030).
RUN_LOST = 30
#: Runs examined per pass at most (the longest silent first); the rest wait for the next pass.
MAX_RUNS_PER_PASS = 200
#: The job of a run can still be delivered / never will be again.
JOB_PENDING = "pending"
JOB_GONE = "gone"
JOB_EXHAUSTED = "exhausted"


def lost_error(worker_id: Any) -> str:
    """The ``error`` of a run whose worker stopped heartbeating."""
    return f"lost: worker {worker_id or 'unknown'} stopped heartbeating"


def _end_tasks(tasks: Any, final: str) -> dict[str, str]:
    """Task states of a run that ends without its worker: a task that was running did not
    finish; with CANCELLED, the tasks that never started are cancelled too."""
    if not isinstance(tasks, dict):
        return {}
    ended = {}
    for name, state in tasks.items():
        if state == RUNNING:
            state = CANCELLED if final == CANCELLED else FAILED
        elif state == PENDING and final == CANCELLED:
            state = CANCELLED
        ended[name] = state
    return ended


class EndRun:
    """Change function: end a run its worker can no longer finish.

    ``observed`` (a lost run as the reconciler saw it) makes the write conditional: nothing is
    written if the worker or ``heartbeat_at`` changed meanwhile (a redelivery claimed it, or
    the worker was only slow). ``attempt`` (an exhausted job's attempt) leaves a run alone
    that a redrive has moved to a later attempt. Afterwards :attr:`won` says whether this call
    wrote the terminal snapshot, :attr:`final_status` which one, and :attr:`obsolete` that the
    run needed nothing (already terminal, or a later attempt).
    """

    def __init__(
        self,
        error: str,
        *,
        observed: dict[str, Any] | None = None,
        attempt: int | None = None,
    ) -> None:
        self.error = error
        self.observed = observed
        self.attempt = attempt
        self.won = False
        self.obsolete = False
        self.final_status: str | None = None
        self.snapshot: dict[str, Any] = {}

    def __call__(self, snapshot: dict[str, Any]) -> dict[str, Any] | None:
        self.won = self.obsolete = False
        status = snapshot.get("status")
        run_attempt = snapshot.get("attempt")
        if is_terminal(status) or (
            self.attempt is not None and isinstance(run_attempt, int) and run_attempt > self.attempt
        ):
            self.obsolete = True
            return None
        if self.observed is not None and (
            status not in (RUNNING, CANCELLING)
            or snapshot.get("worker_id") != self.observed.get("worker_id")
            or snapshot.get("heartbeat_at") != self.observed.get("heartbeat_at")
        ):
            return None
        final = CANCELLED if status == CANCELLING else FAILED
        snapshot.update(
            status=final,
            error=self.error,
            end_time=time.time(),
            tasks=_end_tasks(snapshot.get("tasks"), final),
        )
        self.won = True
        self.final_status = final
        self.snapshot = snapshot
        return snapshot


def _job_from_snapshot(snapshot: dict[str, Any]) -> dict[str, Any] | None:
    """The job of a run rebuilt from its snapshot, for a dead letter whose job message is gone;
    ``None`` for a YAML run (its workflow is never stored in KV) or truncated params."""
    params = snapshot.get("params")
    if (
        snapshot.get("workflow_yaml_sha256")
        or not isinstance(params, dict)
        or params.get("_truncated")
        or not snapshot.get("flow_name")
    ):
        return None
    tag = snapshot.get("tag")
    return build_job(
        snapshot["run_id"],
        snapshot["flow_name"],
        tag,
        list(snapshot.get("tags") or [tag]),
        params,
        submitted_at=snapshot.get("submitted_at"),
        tenant_id=snapshot.get("tenant_id"),
        api_key_id=snapshot.get("api_key_id"),
        attempt=snapshot.get("attempt") or 1,
    )


class Reconciler:
    """The gateway's reconciliation loop and advisory subscription."""

    def __init__(
        self,
        settings: Settings,
        nats: NatsConnection,
        query_index: Callable[..., Awaitable[Any]],
        run_store: Callable[[], Awaitable[RunStore]],
    ) -> None:
        """:param query_index: calls a method of the run index, caught up, on the index's
            thread (503 while it cannot be caught up).
        :param run_store: the run store (raises while NATS is down)."""
        self.settings = settings
        self.nats = nats
        self.query_index = query_index
        self.run_store = run_store
        self._subscription: Any = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- life --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Follow the advisories (when NATS is up already) and start the loop."""
        self._stop = asyncio.Event()
        if self.nats.connected:
            with contextlib.suppress(Exception):  # retried by the loop
                await self.subscribe()
        self._task = asyncio.get_running_loop().create_task(self.run(self._stop))

    async def stop(self) -> None:
        """Stop the loop (bounded) and the advisory subscription."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait([self._task], timeout=5)
            self._task = None
        await self.close()

    async def run(self, stop: asyncio.Event) -> None:
        """Reconcile every ``PYOCO_RECONCILE_INTERVAL_SEC`` until ``stop``; never raises."""
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.reconcile_interval_sec)
            if stop.is_set() or not self.nats.connected:
                continue
            try:
                await self.subscribe()
                await self.reconcile_once()
            except Exception as exc:
                log.warning("reconcile_failed", error=f"{type(exc).__name__}: {exc}")

    async def subscribe(self) -> None:
        """Follow the MaxDeliver advisories of the work stream's consumers (once connected)."""
        nc = self.nats.nc
        if self._subscription is not None or nc is None or not self.nats.connected:
            return
        subject = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{self.settings.work_stream}.*"
        self._subscription = await nc.subscribe(subject, cb=self._on_max_deliveries)

    async def close(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None

    # -- lost runs ---------------------------------------------------------------------------

    async def reconcile_once(self) -> list[str]:
        """One pass over the silent RUNNING/CANCELLING runs; returns the runs this gateway
        ended."""
        active = await self.query_index("with_status", RUNNING, CANCELLING)
        now = time.time()
        bound = self.settings.run_lost_after_sec
        silent = []
        for summary in active:
            heartbeat = epoch_seconds(summary.get("heartbeat_at"))
            if heartbeat is None or now - heartbeat > bound:
                silent.append((heartbeat or 0.0, summary["run_id"]))
        silent.sort()
        ended: list[str] = []
        consumers: dict[str, Any] = {}
        for _, run_id in silent[:MAX_RUNS_PER_PASS]:
            try:
                if await self._reconcile_run(run_id, consumers):
                    ended.append(run_id)
            except Exception as exc:
                log.warning(
                    "reconcile_run_failed", run_id=run_id, error=f"{type(exc).__name__}: {exc}"
                )
        return ended

    async def _reconcile_run(self, run_id: str, consumers: dict[str, Any]) -> bool:
        store = await self.run_store()
        try:
            snapshot, _ = await store.get(run_id)
        except RunNotFound:
            return False
        heartbeat = epoch_seconds(snapshot.get("heartbeat_at"))
        age = None if heartbeat is None else time.time() - heartbeat
        if snapshot.get("status") not in (RUNNING, CANCELLING) or (
            age is not None and age <= self.settings.run_lost_after_sec
        ):
            return False
        verdict, job, message_seq, consumer = await self._job_state(snapshot, age, consumers)
        if verdict == JOB_PENDING:
            log.debug("silent_run_job_pending", run_id=run_id, heartbeat_age_sec=age)
            return False
        worker_id = snapshot.get("worker_id")
        change = EndRun(lost_error(worker_id), observed=snapshot)
        await store.update(run_id, change, "lost", job)
        if not change.won:
            return False
        log.error(
            "run_lost",
            run_id=run_id,
            worker_id=worker_id,
            heartbeat_age_sec=None if age is None else round(age, 1),
            job=verdict,
            status=change.final_status,
            err_id=err_id(RUN_LOST),
            msg_id=msg_id(RUN_LOST),
        )
        if change.final_status == FAILED:
            await self._dead_letter(
                "lost",
                change.snapshot,
                job or _job_from_snapshot(change.snapshot),
                stream_seq=message_seq or snapshot.get("job_stream_seq"),
                num_delivered=snapshot.get("num_delivered"),
                max_deliver=self._max_deliver(consumer),
            )
        if message_seq is not None:
            await self._delete_job(message_seq)
        return True

    async def _consumer(self, tag: str, consumers: dict[str, Any]) -> Any:
        if tag not in consumers:
            try:
                consumers[tag] = await self.nats.js.consumer_info(
                    self.settings.work_stream, self.settings.consumer_name(tag)
                )
            except NotFoundError:
                consumers[tag] = None
        return consumers[tag]

    def _max_deliver(self, consumer: Any) -> int:
        if consumer is not None and consumer.config.max_deliver is not None:
            return int(consumer.config.max_deliver)
        return self.settings.consumer_max_deliver

    async def _job_state(
        self, snapshot: dict[str, Any], age: float | None, consumers: dict[str, Any]
    ) -> tuple[str, dict[str, Any] | None, int | None, Any]:
        """Whether the run's job can still reach a worker: ``(verdict, job, seq, consumer)``."""
        js = self.nats.js
        settings = self.settings
        tag = snapshot.get("tag") or settings.default_tag
        consumer = await self._consumer(tag, consumers)
        seq = snapshot.get("job_stream_seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq <= 0:
            # A claim that did not record its delivery: only an empty subject is conclusive.
            subject = settings.work_subject(tag)
            info = await js.stream_info(settings.work_stream, subjects_filter=subject)
            waiting = (info.state.subjects or {}).get(subject, 0)
            return (JOB_PENDING if waiting else JOB_GONE), None, None, consumer
        try:
            message = await js.get_msg(settings.work_stream, seq)
        except NotFoundError:
            return JOB_GONE, None, None, consumer
        try:
            job = decode_job(message.data or b"")
        except InvalidJob:
            job = None
        if job is None or job["run_id"] != snapshot["run_id"]:
            return JOB_GONE, None, None, consumer
        max_deliver = self._max_deliver(consumer)
        ack_wait = (
            float(consumer.config.ack_wait)
            if consumer is not None and consumer.config.ack_wait
            else settings.consumer_ack_wait_sec
        )
        delivered = snapshot.get("num_delivered")
        exhausted = (
            max_deliver > 0
            and isinstance(delivered, int)
            and delivered >= max_deliver
            and (age is None or age > ack_wait)
        )
        return (JOB_EXHAUSTED if exhausted else JOB_PENDING), job, seq, consumer

    # -- exhausted jobs ----------------------------------------------------------------------

    async def _on_max_deliveries(self, msg: Any) -> None:
        try:
            advisory = json.loads(msg.data)
            seq = int(advisory["stream_seq"])
        except (ValueError, KeyError, TypeError):
            log.warning("max_deliveries_advisory_unreadable", subject=msg.subject)
            return
        try:
            await self.end_exhausted(seq, advisory.get("deliveries"))
        except Exception as exc:
            log.warning(
                "max_deliveries_not_handled", stream_seq=seq, error=f"{type(exc).__name__}: {exc}"
            )

    async def end_exhausted(self, seq: int, deliveries: Any) -> bool:
        """End the run of the job at work-stream sequence ``seq``, which exhausted its
        deliveries; returns whether this gateway wrote its terminal snapshot."""
        js = self.nats.js
        try:
            message = await js.get_msg(self.settings.work_stream, seq)
        except NotFoundError:
            log.info("max_deliveries_job_gone", stream_seq=seq)
            return False
        try:
            job = decode_job(message.data or b"")
        except InvalidJob as exc:
            log.warning("max_deliveries_invalid_job", stream_seq=seq, error=str(exc))
            return False
        run_id = job["run_id"]
        tag = job.get("tag") or self.settings.default_tag
        consumer = await self._consumer(tag, {})
        max_deliver = self._max_deliver(consumer)
        store = await self.run_store()
        try:
            current, _ = await store.get(run_id)
        except RunNotFound:
            log.info("max_deliveries_run_missing", run_id=run_id, stream_seq=seq)
            await self._delete_job(seq)
            return False
        attempt = job.get("attempt")
        change = EndRun(
            f"max_deliveries: the job was delivered {deliveries or max_deliver} times and never "
            f"acknowledged (MaxDeliver {max_deliver}); last worker "
            f"{current.get('worker_id') or 'none (it never started)'}",
            attempt=attempt if isinstance(attempt, int) else None,
        )
        await store.update(run_id, change, "max_deliveries", job)
        if change.won:
            log.error(
                "run_lost",
                run_id=run_id,
                worker_id=change.snapshot.get("worker_id"),
                job=JOB_EXHAUSTED,
                status=change.final_status,
                stream_seq=seq,
                err_id=err_id(RUN_LOST),
                msg_id=msg_id(RUN_LOST),
            )
            if change.final_status == FAILED:
                await self._dead_letter(
                    "max_deliveries",
                    change.snapshot,
                    job,
                    stream_seq=seq,
                    num_delivered=deliveries if isinstance(deliveries, int) else max_deliver,
                    max_deliver=max_deliver,
                )
        if change.won or change.obsolete:
            await self._delete_job(seq)
        return change.won

    # -- shared ------------------------------------------------------------------------------

    async def _dead_letter(
        self,
        reason: str,
        snapshot: dict[str, Any],
        job: dict[str, Any] | None,
        *,
        stream_seq: Any,
        num_delivered: Any,
        max_deliver: int,
    ) -> None:
        """Publish the dead letter of a run this gateway ended (same fields as a worker's)."""
        tag = snapshot.get("tag") or self.settings.default_tag
        attempt = snapshot.get("attempt") or 1
        entry: dict[str, Any] = {
            "timestamp": time.time(),
            "reason": reason,
            "error": snapshot.get("error"),
            "run_id": snapshot["run_id"],
            "flow_name": snapshot.get("flow_name"),
            "tag": tag,
            "tags": snapshot.get("tags") or [tag],
            "worker_id": snapshot.get("worker_id"),
            "num_delivered": num_delivered,
            "max_deliver": max_deliver,
            "subject": self.settings.work_subject(tag),
            "stream_seq": stream_seq,
            "attempt": attempt,
            "err_id": err_id(RUN_LOST),
            "msg_id": msg_id(RUN_LOST),
            "detected_by": "gateway",
        }
        if snapshot.get("tenant_id") is not None:
            entry["tenant_id"] = snapshot["tenant_id"]
        if job is not None:
            entry["job"] = without_pending(job)  # as a worker's dead letter carries it
        else:
            entry["job_unavailable"] = (
                "the job message is gone and cannot be rebuilt from the snapshot (a YAML "
                "run's workflow is never stored in KV)"
            )
        try:
            await DeadLetterQueue(self.nats.js, self.settings).publish(
                entry, f"{reason}:{snapshot['run_id']}:{attempt}"
            )
        except Exception as exc:
            log.error(
                "dlq_publish_failed",
                run_id=snapshot["run_id"],
                reason=reason,
                error=f"{type(exc).__name__}: {exc}",
                err_id=err_id(11),
                msg_id=msg_id(11),
            )

    async def _delete_job(self, seq: int) -> None:
        """Remove a job no worker will take from the work stream (already gone: fine)."""
        try:
            await self.nats.js.delete_msg(self.settings.work_stream, seq)
        except NotFoundError:
            pass
        except Exception as exc:
            log.warning("job_not_removed", stream_seq=seq, error=f"{type(exc).__name__}: {exc}")
