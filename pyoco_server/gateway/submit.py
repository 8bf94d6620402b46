"""Submitting a run atomically: PENDING snapshot, then the job; never one without the other.

1. the PENDING snapshot is created in KV (through :class:`~pyoco_server.run_store.RunStore`, so
   plugins enrich it and the size cap holds); if that times out it may still have been
   stored, so it is removed as in step 3;
2. the job is published to ``pyoco.work.<tag>`` with ``Nats-Msg-Id`` (a retried publish of the
   same run attempt is dropped by JetStream's duplicate window) and the expected stream name;
3. if the publish fails for any reason, the snapshot is removed again and the client gets 503;
   if even that fails, ERR-PYOCO-0004 is logged with the run id. A publish that timed out
   *after* JetStream stored the job leaves a job whose snapshot is gone: workers must drop
   a job whose run does not exist.

With an ``Idempotency-Key`` the submit runs under a claim (see :mod:`.idempotency`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from typing import Any

from ..jobs import (
    MSG_ID_HEADER,
    build_job,
    encode_job,
    encoded_with_pending,
    message_id,
    pending_snapshot,
)
from ..log import get_logger
from ..model import PENDING
from ..run_store import RunNotFound, RunStore
from .error_responses import BODY_TOO_LARGE, ApiError, nats_unavailable
from .idempotency import Replay
from .services import GatewayServices
from .tenancy import Caller
from .validation import RunRequest

log = get_logger(__name__)


@dataclass(frozen=True)
class Submitted:
    """The answer to a submit: the run, its status, and whether it is a replay."""

    run_id: str
    status: str = PENDING
    replayed: bool = False


async def _remove_orphan(store: RunStore, run_id: str) -> None:
    try:
        await store.delete(run_id)
    except Exception as exc:
        log.error(
            "orphan_snapshot_not_removed",
            run_id=run_id,
            err_id="ERR-PYOCO-0004",
            msg_id="MSG-PYOCO-0004",
            exc_info=exc,
        )


def encoded_job(services: GatewayServices, job: dict[str, Any]) -> bytes:
    """The job message, or 413 when NATS would refuse a message that large."""
    payload = encode_job(job)
    max_payload = services.nats.nc.max_payload if services.nats.nc else 0
    if max_payload and len(payload) > max_payload:
        raise ApiError(
            413,
            BODY_TOO_LARGE,
            f"the job would be {len(payload)} bytes; NATS accepts at most {max_payload}",
        )
    return payload


async def publish_job(services: GatewayServices, job: dict[str, Any], payload: bytes) -> Any:
    """Queue ``job`` on ``pyoco.work.<tag>`` with its ``Nats-Msg-Id``; returns the PubAck."""
    settings = services.settings
    return await services.nats.js.publish(
        settings.work_subject(job["tag"]),
        payload,
        stream=settings.work_stream,
        headers={MSG_ID_HEADER: message_id(job)},
    )


def _with_pending_payload(
    services: GatewayServices,
    job: dict[str, Any],
    snapshot: dict[str, Any],
    revision: int,
    payload: bytes,
) -> bytes:
    """The job's message with :func:`~pyoco_server.jobs.with_pending`, unless that would make
    it larger than NATS accepts (``payload``, checked already, is used then)."""
    extended = encoded_with_pending(payload, job, snapshot, revision)
    max_payload = services.nats.nc.max_payload if services.nats.nc else 0
    return payload if max_payload and len(extended) > max_payload else extended


async def publish_run(services: GatewayServices, job: dict[str, Any]) -> None:
    """Store the PENDING snapshot of ``job`` and queue it; undo the snapshot on failure."""
    payload = encoded_job(services, job)
    store = await services.run_store()
    snapshot = pending_snapshot(job)
    try:
        revision = await store.create(snapshot, job)
    except asyncio.TimeoutError:
        # The create may have been stored although its answer was lost: undo it too.
        await _remove_orphan(store, job["run_id"])
        raise
    # The job tells the worker the snapshot it creates here, saving the worker a read.
    payload = _with_pending_payload(services, job, snapshot, revision, payload)
    try:
        await publish_job(services, job, payload)
    except Exception as exc:
        await _remove_orphan(store, job["run_id"])
        raise nats_unavailable(
            f"the run could not be queued ({type(exc).__name__}); nothing was stored, retry"
        ) from exc
    log.debug("run_submitted", run_id=job["run_id"], flow_name=job["flow_name"], tag=job["tag"])


async def submit_run(
    services: GatewayServices,
    caller: Caller,
    request: RunRequest,
    *,
    idempotency_key: str | None = None,
    workflow_yaml: bytes | None = None,
    fingerprint: str | None = None,
) -> Submitted:
    """Create a run for ``request`` (once per ``idempotency_key``) and return its id."""

    def job_for(run_id: str) -> dict[str, Any]:
        return build_job(
            run_id,
            request.flow_name,
            request.tag,
            request.tags,
            request.params,
            tenant_id=caller.tenant_id,
            api_key_id=caller.api_key_id,
            workflow_yaml=workflow_yaml,
        )

    if idempotency_key is None:
        job = job_for(str(uuid.uuid4()))
        await publish_run(services, job)
        return Submitted(job["run_id"])
    keys = await services.idempotency()
    outcome = await keys.claim(
        caller.tenant_id, idempotency_key, fingerprint or request.fingerprint()
    )
    if isinstance(outcome, Replay):
        return Submitted(outcome.run_id, await _current_status(services, outcome.run_id), True)
    try:
        await publish_run(services, job_for(outcome.run_id))
    except BaseException:
        with contextlib.suppress(Exception):
            await keys.release(outcome)
        raise
    try:
        await keys.complete(outcome)
    except Exception as exc:
        log.warning("idempotency_record_not_completed", run_id=outcome.run_id, exc_info=exc)
    return Submitted(outcome.run_id)


async def _current_status(services: GatewayServices, run_id: str) -> str:
    store = await services.run_store()
    try:
        snapshot, _ = await store.get(run_id)
    except RunNotFound:
        return PENDING
    return snapshot.get("status") or PENDING
