"""Redriving dead letters: the dead job queued again, once per entry.

A redrive of entry ``seq`` either reopens the job's run as a **new attempt** (the default) or
submits the job as a **fresh run** (``new_run``):

* new attempt: compare-and-set on the run's snapshot (:class:`Reopen`), only from a terminal
  status — PENDING again, ``attempt`` + 1, the ended attempt (status, error, worker, times,
  dead-letter seq and reason) appended to ``attempts`` — then the job is published again with
  its new ``attempt`` and so a new ``Nats-Msg-Id`` (``<run_id>:<attempt>``). If the publish
  fails, the snapshot is put back as it was (:class:`UndoReopen`) and the caller gets 503;
* fresh run: the gateway's own submit path (:func:`~.submit.submit_run`): PENDING snapshot,
  then the job, under the tenant of the dead letter.

YAML jobs carry their workflow YAML again, checked by every ``pyoco_check_workflow_yaml`` hook
before anything is written (a policy that still rejects it answers 422).

Exactly once per entry: the redrive first claims the entry with an atomic KV create of a
marker (``dlq_redrive.<stream>.<stream id>.<seq>`` in the ``PYOCO_IDEMPOTENCY_KV_BUCKET``, kept
for ``PYOCO_IDEMPOTENCY_TTL_SEC``). A concurrent or later redrive of the same entry finds the
marker and is refused with 409 (``already_redriven``, or ``redrive_in_progress`` while the
first one runs); a claim left by a gateway that crashed mid-redrive is taken over after
:data:`CLAIM_STALE_SEC`. A failed redrive releases its claim. After a successful redrive the
entry is deleted from the DLQ stream; the marker stays, so a second redrive of the deleted
entry still answers 409 rather than 404.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from nats.js.errors import NotFoundError

from ..errors import PolicyViolation
from ..jobs import MSG_ID_HEADER, InvalidJob, decode_job, message_id, without_pending
from ..log import get_logger
from ..model import PENDING, WorkflowContext, is_terminal
from ..run_store import RunNotFound
from ..workflow import check_workflow_yaml
from .dead_letters import DeadLetterQueue
from .error_responses import NATS_OUTAGE_ERRORS, NATS_UNAVAILABLE, ApiError, cannot_redrive
from .kv_claim import claim_key, read_record
from .services import GatewayServices
from .submit import encoded_job, publish_job, submit_run
from .tenancy import Caller
from .validation import run_request

log = get_logger(__name__)

#: A claim older than this (its gateway died mid-redrive) may be taken over.
CLAIM_STALE_SEC = 30.0
#: Ended attempts kept in a snapshot's ``attempts`` (the oldest are dropped).
MAX_ATTEMPTS_KEPT = 20
#: Longest ``error`` kept per ended attempt.
ATTEMPT_ERROR_CHARS = 2048
CLAIMED = "claimed"
DONE = "done"


@dataclass(frozen=True)
class Redriven:
    """The answer to a redrive: the run that will run the job, and how."""

    run_id: str
    attempt: int
    new_run: bool
    seq: int
    redriven_from: str | None
    status: str = PENDING

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _count(value: Any, default: int = 1) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _trimmed(error: Any) -> Any:
    if isinstance(error, str) and len(error) > ATTEMPT_ERROR_CHARS:
        return error[:ATTEMPT_ERROR_CHARS] + "…"
    return error


class Reopen:
    """Change function: a terminal run becomes PENDING as its next attempt.

    Writes nothing when the run is not terminal (:attr:`refused_status`) or belongs to another
    tenant than ``tenant_id`` (:attr:`foreign`). Afterwards :attr:`attempt` is the new attempt
    and :attr:`previous` the snapshot it replaced.
    """

    def __init__(self, seq: int, reason: Any, tenant_id: str | None) -> None:
        self.seq = seq
        self.reason = reason
        self.tenant_id = tenant_id
        self.refused_status: str | None = None
        self.foreign = False
        self.attempt = 0
        self.previous: dict[str, Any] = {}

    def __call__(self, snapshot: dict[str, Any]) -> dict[str, Any] | None:
        self.refused_status, self.foreign = None, False
        if self.tenant_id is not None and snapshot.get("tenant_id") != self.tenant_id:
            self.foreign = True
            return None
        status = snapshot.get("status")
        if not is_terminal(status):
            self.refused_status = status
            return None
        self.previous = copy.deepcopy(snapshot)
        ended = _count(snapshot.get("attempt"))
        now = time.time()
        history = [item for item in snapshot.get("attempts") or [] if isinstance(item, dict)]
        history.append(
            {
                "attempt": ended,
                "status": status,
                "error": _trimmed(snapshot.get("error")),
                "worker_id": snapshot.get("worker_id"),
                "start_time": snapshot.get("start_time"),
                "end_time": snapshot.get("end_time"),
                "dlq_seq": self.seq,
                "dlq_reason": self.reason,
                "redriven_at": now,
            }
        )
        self.attempt = ended + 1
        snapshot.update(
            status=PENDING,
            attempt=self.attempt,
            attempts=history[-MAX_ATTEMPTS_KEPT:],
            error=None,
            worker_id=None,
            start_time=None,
            end_time=None,
            heartbeat_at=now,
            tasks={},
            task_records={},
            task_records_truncated=False,
            job_stream_seq=None,
            num_delivered=None,
        )
        return snapshot


class UndoReopen:
    """Change function: put back the snapshot :class:`Reopen` replaced, if the run is still
    the PENDING attempt it made (nothing else wrote since)."""

    def __init__(self, reopen: Reopen) -> None:
        self.reopen = reopen

    def __call__(self, snapshot: dict[str, Any]) -> dict[str, Any] | None:
        if snapshot.get("status") != PENDING or snapshot.get("attempt") != self.reopen.attempt:
            return None
        return copy.deepcopy(self.reopen.previous)


class RedriveMarkers:
    """The per-entry claim markers in KV (see the module docstring)."""

    def __init__(self, kv: Any) -> None:
        self.kv = kv

    async def read(self, key: str) -> tuple[dict[str, Any], int] | None:
        """The marker at ``key`` and its revision (``None``: no marker)."""
        return await read_record(self.kv, key)

    async def claim(self, key: str, entry: dict[str, Any]) -> int:
        """Claim entry ``seq`` for this redrive; returns the marker's revision."""
        record = {
            "state": CLAIMED,
            "at": time.time(),
            "seq": entry["seq"],
            "run_id": entry.get("run_id"),
            "tenant_id": entry.get("tenant_id"),
        }
        data = json.dumps(record).encode()

        def may_take_over(marker: dict[str, Any]) -> bool:
            if marker.get("state") == DONE or time.time() - float(marker.get("at") or 0) < (
                CLAIM_STALE_SEC
            ):
                raise refusal_for(entry["seq"], marker)
            return True

        for _ in range(3):
            revision = await claim_key(self.kv, key, data, may_take_over)
            if isinstance(revision, int):
                return revision
        raise cannot_redrive(
            entry["seq"], "redrive_in_progress", f"dead letter {entry['seq']} is being redriven"
        )

    async def complete(self, key: str, revision: int, redriven: Redriven, tenant: Any) -> None:
        record = {"state": DONE, "at": time.time(), "tenant_id": tenant, **redriven.as_dict()}
        try:
            await self.kv.update(key, json.dumps(record).encode(), last=revision)
        except Exception as exc:  # the claim still blocks a second redrive until it is stale
            log.warning("redrive_marker_not_completed", key=key, error=f"{type(exc).__name__}")

    async def release(self, key: str, revision: int) -> None:
        try:
            await self.kv.delete(key, last=revision)
        except Exception as exc:
            log.warning("redrive_marker_not_released", key=key, error=f"{type(exc).__name__}")


def refusal_for(seq: int, marker: dict[str, Any]) -> ApiError:
    """The 409 for a redrive of an entry that has a marker already."""
    if marker.get("state") == DONE:
        return cannot_redrive(
            seq,
            "already_redriven",
            f"dead letter {seq} was already redriven (run {marker.get('run_id')}, attempt "
            f"{marker.get('attempt')})",
            run_id=marker.get("run_id"),
            attempt=marker.get("attempt"),
        )
    return cannot_redrive(
        seq, "redrive_in_progress", f"dead letter {seq} is being redriven right now"
    )


def redrivable_job(entry: dict[str, Any]) -> dict[str, Any]:
    """The job a dead letter carries, validated; 409 ``no_job`` when there is none."""
    job = entry.get("job")
    if isinstance(job, dict):
        try:
            return decode_job(json.dumps(job).encode())
        except InvalidJob:
            pass
    raise cannot_redrive(
        entry["seq"],
        "no_job",
        f"dead letter {entry['seq']} carries no valid job to queue again "
        f"({entry.get('reason') or 'unknown reason'}); inspect it with GET /dlq/{entry['seq']} "
        "and delete it",
    )


class Redriver:
    """Redrives dead letters for the gateway's resources."""

    def __init__(self, services: GatewayServices) -> None:
        self.services = services
        self.settings = services.settings

    def _queue(self) -> DeadLetterQueue:
        return DeadLetterQueue(self.services.nats.js, self.settings)

    async def _markers(self) -> RedriveMarkers:
        return RedriveMarkers(await self.services.nats.kv(self.settings.idempotency_kv_bucket))

    async def redrive(self, caller: Caller, seq: int, *, new_run: bool) -> Redriven:
        """Redrive entry ``seq`` (404 when it is not the caller's, 409 when refused)."""
        queue = self._queue()
        markers = await self._markers()
        key = self._marker_key(await queue.stream_id(), seq)
        try:
            entry = await queue.get(caller, seq)
        except ApiError:
            found = await markers.read(key)
            if found is not None and caller.sees(found[0]):
                raise refusal_for(seq, found[0]) from None
            raise
        return await self._redrive_entry(caller, entry, new_run, queue, markers, key)

    async def redrive_many(
        self, caller: Caller, filters: dict[str, Any], limit: int, *, new_run: bool
    ) -> dict[str, Any]:
        """Redrive the entries ``GET /dlq`` would list with ``filters`` and ``limit``.

        Entries are redriven one by one, newest first; a refused one is skipped with its
        reason; a NATS outage stops the batch (the rest are reported ``not_attempted``).
        """
        queue = self._queue()
        markers = await self._markers()
        page = await queue.page(caller, limit=limit, **filters)
        stream_id = await queue.stream_id()
        results: list[dict[str, Any]] = []
        outage = False
        for summary in page.entries:
            seq = summary["seq"]
            result: dict[str, Any] = {"seq": seq, "run_id": summary.get("run_id")}
            if outage:
                results.append({**result, "outcome": "not_attempted"})
                continue
            try:
                entry = await queue.get(caller, seq)
                key = self._marker_key(stream_id, seq)
                done = await self._redrive_entry(caller, entry, new_run, queue, markers, key)
            except PolicyViolation as violation:
                results.append(
                    {
                        **result,
                        "outcome": "skipped",
                        "err_id": violation.err_id,
                        "reason": violation.reason,
                        "detail": violation.detail,
                    }
                )
                continue
            except ApiError as error:
                outage = error.number == NATS_UNAVAILABLE
                outcome = "failed" if outage or error.status_code >= 500 else "skipped"
                body = error.body()
                results.append(
                    {
                        **result,
                        "outcome": outcome,
                        "err_id": body["err_id"],
                        "reason": body.get("reason"),
                        "detail": body["detail"],
                    }
                )
                continue
            except NATS_OUTAGE_ERRORS as exc:
                outage = True
                results.append({**result, "outcome": "failed", "detail": type(exc).__name__})
                continue
            results.append({**result, "outcome": "redriven", **done.as_dict()})
        counts = {
            name: sum(1 for item in results if item["outcome"] == name)
            for name in ("redriven", "skipped", "failed", "not_attempted")
        }
        return {"matched": len(page.entries), **counts, "results": results}

    def _marker_key(self, stream_id: str, seq: int) -> str:
        return f"dlq_redrive.{self.settings.dlq_stream}.{stream_id}.{seq}"

    async def _redrive_entry(
        self,
        caller: Caller,
        entry: dict[str, Any],
        new_run: bool,
        queue: DeadLetterQueue,
        markers: RedriveMarkers,
        key: str,
    ) -> Redriven:
        seq = entry["seq"]
        job = redrivable_job(entry)
        self._check_workflow(job)
        revision = await markers.claim(key, entry)
        try:
            if new_run:
                redriven = await self._as_new_run(caller, entry, job)
            else:
                redriven = await self._as_new_attempt(entry, job)
        except BaseException:
            await markers.release(key, revision)
            raise
        await markers.complete(key, revision, redriven, entry.get("tenant_id"))
        try:
            await queue.delete(seq)
        except Exception as exc:  # the marker keeps refusing a second redrive
            log.warning("dlq_entry_not_deleted", seq=seq, error=f"{type(exc).__name__}: {exc}")
        log.info(
            "dlq_redriven",
            seq=seq,
            reason=entry.get("reason"),
            run_id=redriven.run_id,
            attempt=redriven.attempt,
            new_run=redriven.new_run,
            redriven_from=redriven.redriven_from,
        )
        return redriven

    def _check_workflow(self, job: dict[str, Any]) -> None:
        """Every ``pyoco_check_workflow_yaml`` hook again (the policy may have changed)."""
        text = job.get("workflow_yaml")
        if not text:
            return
        check_workflow_yaml(
            self.services.pm,
            text.encode("utf-8"),
            WorkflowContext(
                settings=self.settings,
                flow_name=job["flow_name"],
                tag=job.get("tag"),
                tenant_id=job.get("tenant_id"),
                where="gateway",
            ),
        )

    async def _as_new_attempt(self, entry: dict[str, Any], job: dict[str, Any]) -> Redriven:
        seq, run_id = entry["seq"], job["run_id"]
        store = await self.services.run_store()
        reopen = Reopen(seq, entry.get("reason"), entry.get("tenant_id"))
        try:
            await store.update(run_id, reopen, "redriven", job, reopen=True)
        except RunNotFound:
            reopen.foreign = True
        if reopen.foreign:
            raise cannot_redrive(
                seq,
                "run_missing",
                f"run {run_id} of dead letter {seq} no longer exists; redrive it with "
                "new_run=true to queue the job as a fresh run",
                run_id=run_id,
            )
        if reopen.refused_status is not None:
            raise cannot_redrive(
                seq,
                "run_not_terminal",
                f"run {run_id} is {reopen.refused_status}, not finished; only a COMPLETED, "
                "FAILED or CANCELLED run can be redriven",
                run_id=run_id,
                status=reopen.refused_status,
            )
        # A stale PENDING snapshot revision only costs the worker a failed write: drop it.
        new_job = {**without_pending(job), "attempt": reopen.attempt}
        try:
            payload = encoded_job(self.services, new_job)
            await self._publish(new_job, payload)
        except BaseException as exc:
            await self._undo(store, run_id, reopen, job)
            if isinstance(exc, ApiError) or not isinstance(exc, Exception):
                raise
            raise ApiError(
                503,
                NATS_UNAVAILABLE,
                f"the job could not be queued ({type(exc).__name__}); the run was left as it "
                "was, retry",
                headers={"Retry-After": "1"},
            ) from exc
        return Redriven(run_id, reopen.attempt, False, seq, run_id)

    async def _undo(self, store: Any, run_id: str, reopen: Reopen, job: dict[str, Any]) -> None:
        try:
            await store.update(run_id, UndoReopen(reopen), "redrive_undone", job)
        except Exception as exc:
            log.error(
                "redrive_not_undone",
                run_id=run_id,
                attempt=reopen.attempt,
                error=f"{type(exc).__name__}: {exc}",
            )

    async def _publish(self, job: dict[str, Any], payload: bytes) -> None:
        """Queue the job; if JetStream answers that it is a duplicate of a message that no
        longer exists (an earlier publish whose reply was lost, consumed meanwhile), queue it
        again under a unique id."""
        ack = await publish_job(self.services, job, payload)
        if not getattr(ack, "duplicate", False):
            return
        settings = self.settings
        try:
            await self.services.nats.js.get_msg(settings.work_stream, ack.seq)
            return
        except NotFoundError:
            pass
        await self.services.nats.js.publish(
            settings.work_subject(job["tag"]),
            payload,
            stream=settings.work_stream,
            headers={MSG_ID_HEADER: f"{message_id(job)}:{uuid.uuid4().hex}"},
        )

    async def _as_new_run(
        self, caller: Caller, entry: dict[str, Any], job: dict[str, Any]
    ) -> Redriven:
        seq, old_run = entry["seq"], job["run_id"]
        store = await self.services.run_store()
        try:
            snapshot, _ = await store.get(old_run)
        except RunNotFound:
            snapshot = None
        if snapshot is not None and caller.sees(snapshot) and not is_terminal(snapshot["status"]):
            raise cannot_redrive(
                seq,
                "run_not_terminal",
                f"run {old_run} is {snapshot['status']}; redrive it as a fresh run once it "
                "has finished",
                run_id=old_run,
                status=snapshot["status"],
            )
        request = run_request(
            job["flow_name"], job.get("params"), job.get("tag"), job.get("tags"), self.settings
        )
        submitter = Caller(
            tenant_id=caller.tenant_id or job.get("tenant_id"),
            api_key_id=caller.api_key_id or job.get("api_key_id"),
        )
        text = job.get("workflow_yaml")
        submitted = await submit_run(
            self.services,
            submitter,
            request,
            workflow_yaml=text.encode("utf-8") if text else None,
        )
        return Redriven(submitted.run_id, 1, True, seq, old_run)
