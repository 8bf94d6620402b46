"""Failed jobs: ask ``pyoco_failure_disposition`` what to do, then do it.

A disposition is applied in a fixed order: the snapshot status (before the queue action, so an
ACKed job never leaves a run that looks alive), the dead letter on ``<dlq prefix>.<tag>``
(contract §7.2 fields plus the original job, bounded; a publish failure is logged as
ERR-PYOCO-0011 and never blocks), then ACK / NAK with delay / TERM.

A terminal ``snapshot_status`` (FAILED) ends the run. ``PENDING`` together with ``nak`` is a
retry: the run goes back to PENDING (event ``retrying``) and its redelivered job runs it
again. Any other combination would leave a run waiting for a job that is gone, so it is
logged and written as FAILED instead.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from ..config import Settings
from ..errors import err_id, msg_id
from ..jobs import without_pending
from ..log import get_logger
from ..model import FAILED, PENDING, Disposition, Failure, is_terminal
from ..nats_client import NatsConnection
from ..run_store import RunNotFound
from .consumer import Delivery
from .protocol import Outcome
from .run_writer import WorkerRunStore
from .snapshots import Finish, Requeue

log = get_logger(__name__)

#: A job up to this size rides whole in its dead letter (YAML runs included), so it can be
#: redriven; a larger or invalid payload is kept as a text preview.
DLQ_JOB_MAX_BYTES = 512 * 1024
DLQ_PREVIEW_BYTES = 64 * 1024
DLQ_PUBLISH_TIMEOUT_SEC = 2.0
#: Delay of the built-in fallback NAK when no plugin decides.
FALLBACK_NAK_DELAY_SEC = 2.0

#: Error number logged for each failure kind (contract §9).
FAILURE_ERRORS = {
    "invalid_job": 12,
    "flow_not_found": 6,
    "policy_violation": 2,
    "execution_error": 7,
    "transient": 3,
}


def fallback_disposition(failure: Failure) -> Disposition:
    """What happens when no plugin decides (e.g. ``-p no:dlq``): the table, minus dead letters."""
    if failure.kind == "transient" and not failure.last_delivery:
        return Disposition("nak", None, None, delay_sec=FALLBACK_NAK_DELAY_SEC)
    if failure.kind in ("invalid_job", "transient"):
        return Disposition("term", FAILED, None)
    return Disposition("ack", FAILED, None)


def checked_disposition(disposition: Disposition) -> Disposition:
    """``disposition``, or a FAILED one if its snapshot status would strand the run."""
    status = disposition.snapshot_status
    if status is None or is_terminal(status):
        return disposition
    if status == PENDING and disposition.action == "nak":
        return disposition
    log.error(
        "failure_disposition_invalid",
        action=disposition.action,
        snapshot_status=status,
        fix="a non-terminal snapshot_status is only valid as PENDING with action 'nak'",
    )
    return dataclasses.replace(disposition, snapshot_status=FAILED)


def dead_letter(
    reason: str, failure: Failure, delivery: Delivery, worker_id: str
) -> dict[str, Any]:
    """The DLQ message for a failed delivery."""
    job = failure.job if isinstance(failure.job, dict) else {}
    number = FAILURE_ERRORS.get(failure.kind, 7)
    entry: dict[str, Any] = {
        "timestamp": time.time(),
        "reason": reason,
        "error": failure.error,
        "run_id": job.get("run_id"),
        "flow_name": job.get("flow_name"),
        "tag": job.get("tag") or delivery.tag,
        "tags": job.get("tags") or [delivery.tag],
        "worker_id": worker_id,
        "num_delivered": delivery.num_delivered,
        "max_deliver": delivery.max_deliver,
        "subject": delivery.msg.subject,
        "stream_seq": delivery.stream_seq,
        "attempt": job.get("attempt", 1),
        "err_id": err_id(number),
        "msg_id": msg_id(number),
    }
    if job.get("tenant_id") is not None:
        entry["tenant_id"] = job["tenant_id"]
    raw = delivery.msg.data or b""
    if failure.job is not None and isinstance(failure.job, dict) and len(raw) <= DLQ_JOB_MAX_BYTES:
        # Without the PENDING snapshot revision: it is stale by now and means nothing to a
        # reader of the dead letter or to a redrive.
        entry["job"] = without_pending(failure.job)
    else:
        entry["payload"] = raw[:DLQ_PREVIEW_BYTES].decode("utf-8", errors="replace")
        entry["payload_bytes"] = len(raw)
        entry["payload_truncated"] = len(raw) > DLQ_PREVIEW_BYTES
    return entry


class Disposer:
    """Applies failure dispositions for one worker host."""

    def __init__(
        self,
        pm: Any,
        settings: Settings,
        nats: NatsConnection,
        store: WorkerRunStore,
        worker_id: str,
    ) -> None:
        self.pm = pm
        self.settings = settings
        self.nats = nats
        self.store = store
        self.worker_id = worker_id

    def decide(self, failure: Failure) -> Disposition:
        try:
            disposition = self.pm.hook.pyoco_failure_disposition(
                failure=failure, settings=self.settings
            )
        except Exception as exc:
            log.error("failure_disposition_hook_failed", error=f"{type(exc).__name__}: {exc}")
            disposition = None
        if disposition is None:
            return fallback_disposition(failure)
        return checked_disposition(disposition)

    async def dispose(
        self, failure: Failure, delivery: Delivery, outcome: Outcome | None = None
    ) -> Disposition:
        """Apply the disposition of ``failure``; returns what was applied."""
        disposition = self.decide(failure)
        number = FAILURE_ERRORS.get(failure.kind, 7)
        emit = log.warning if failure.kind == "transient" else log.error
        emit(
            "job_failed",
            kind=failure.kind,
            error=failure.error,
            num_delivered=failure.num_delivered,
            max_deliver=failure.max_deliver,
            action=disposition.action,
            snapshot_status=disposition.snapshot_status,
            dlq_reason=disposition.dlq_reason,
            err_id=err_id(number),
            msg_id=msg_id(number),
        )
        run_id = failure.job.get("run_id") if isinstance(failure.job, dict) else None
        if disposition.snapshot_status and isinstance(run_id, str):
            change, event = self._snapshot_change(disposition, failure, outcome)
            # An invalid job is not handed to pyoco_enrich_snapshot: plugins may trust jobs.
            job = failure.job if failure.kind != "invalid_job" else None
            try:
                await self.store.update(run_id, change, event, job)
            except RunNotFound:
                log.info("failed_run_has_no_snapshot", run_id=run_id)
            except Exception as exc:
                log.error(
                    "failure_snapshot_not_written",
                    error=f"{type(exc).__name__}: {exc}",
                    err_id=err_id(8),
                    msg_id=msg_id(8),
                )
                if failure.kind != "transient":
                    # The failure could not be recorded: retry the whole job later.
                    transient = Failure(
                        "transient",
                        f"could not record {failure.kind} ({failure.error}): {exc}",
                        failure.job,
                        failure.num_delivered,
                        failure.max_deliver,
                    )
                    return await self.dispose(transient, delivery, outcome)
        if disposition.dlq_reason:
            await self.publish_dead_letter(disposition.dlq_reason, failure, delivery)
        await delivery.settle(disposition.action, disposition.delay_sec)
        return disposition

    def _snapshot_change(
        self, disposition: Disposition, failure: Failure, outcome: Outcome | None
    ) -> tuple[Finish | Requeue, str]:
        """The change function and enrichment event for the disposition's snapshot status."""
        tasks = outcome.tasks if outcome is not None else None
        task_records = outcome.task_records if outcome is not None else None
        if disposition.snapshot_status == PENDING:
            return Requeue(error=failure.error, tasks=tasks, task_records=task_records), "retrying"
        finish = Finish(
            disposition.snapshot_status or FAILED,
            worker_id=self.worker_id if outcome is not None else None,
            error=failure.error,
            tasks=tasks,
            task_records=task_records,
            ended_at=outcome.ended_at if outcome is not None else None,
        )
        return finish, "failed"

    async def publish_dead_letter(self, reason: str, failure: Failure, delivery: Delivery) -> None:
        entry = dead_letter(reason, failure, delivery, self.worker_id)
        data = json.dumps(entry, separators=(",", ":"), ensure_ascii=False, default=repr).encode()
        try:
            await self.nats.js.publish(
                self.settings.dlq_subject(delivery.tag), data, timeout=DLQ_PUBLISH_TIMEOUT_SEC
            )
        except Exception as exc:
            log.error(
                "dlq_publish_failed",
                reason=reason,
                error=f"{type(exc).__name__}: {exc}",
                err_id=err_id(11),
                msg_id=msg_id(11),
            )
