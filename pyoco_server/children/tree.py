"""Creating children, queueing them over the parallel limit, resuming parents (host and
gateway alike).

The *continuation* of a parent (KV bucket ``PYOCO_SPAWN_KV_BUCKET``, key = parent run id) keeps
what a resumption needs and the snapshot must not carry: the parent's job (a YAML run's job
holds its YAML, which never goes into the runs bucket), the recorded outputs of its finished
tasks and the children still waiting in line for a free place under
``PYOCO_SPAWN_MAX_PARALLEL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from ..config import Settings
from ..jobs import MSG_ID_HEADER, build_job, encode_job, message_id, pending_snapshot
from ..log import get_logger
from ..model import PENDING, is_terminal
from ..run_store import RunNotFound, RunStore

log = get_logger(__name__)

#: JetStream's duplicate window of the work stream: a child still PENDING and younger than
#: this is published again with the same ``Nats-Msg-Id`` (a crash may have come between its
#: KV create and its publish; JetStream drops the copy if it was published).
REPUBLISH_WINDOW_SEC = 110.0
PUBLISH_RETRY_DELAYS_SEC = (0.2, 0.5, 1.0)
#: Job field of an approved bundle run: who approved it (the worker records the approval when
#: it claims the job before the approving gateway wrote it).
APPROVED_BY = "approved_by"
#: Snapshot fields of a child that describe its place in the tree.
TREE_FIELDS = ("parent_run_id", "root_run_id", "spawn_depth", "cancel_with_parent")


class Continuations:
    """The continuation records (see the module docstring), with KV revisions."""

    def __init__(self, kv: Any) -> None:
        self.kv = kv

    async def get(self, parent_id: str) -> tuple[dict[str, Any] | None, int | None]:
        try:
            entry = await self.kv.get(parent_id)
        except KeyNotFoundError:
            return None, None
        if entry.value is None:
            return None, None
        return json.loads(entry.value), entry.revision

    async def put(self, parent_id: str, record: dict[str, Any]) -> None:
        await self.kv.put(parent_id, json.dumps(record, separators=(",", ":")).encode())

    async def update(self, parent_id: str, record: dict[str, Any], revision: int) -> bool:
        """Compare-and-set; ``False`` when someone wrote in between."""
        try:
            await self.kv.update(
                parent_id, json.dumps(record, separators=(",", ":")).encode(), last=revision
            )
        except KeyWrongLastSequenceError:
            return False
        return True

    async def delete(self, parent_id: str) -> None:
        with contextlib.suppress(KeyNotFoundError):
            await self.kv.purge(parent_id)


def job_for_execution(job: dict[str, Any]) -> dict[str, Any]:
    """``job`` without what the host attached for one execution."""
    return {key: value for key, value in job.items() if key != "spawn_context"}


def child_job(parent_job: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """The job of a spawned child: the parent's tenant, its place in the tree."""
    tag = request.get("tag") or parent_job.get("tag")
    yaml_text = request.get("workflow_yaml")
    job = build_job(
        request["run_id"],
        request["flow_name"],
        tag,
        [tag],
        request.get("params") or {},
        tenant_id=parent_job.get("tenant_id"),
        api_key_id=parent_job.get("api_key_id"),
        workflow_yaml=yaml_text.encode("utf-8") if isinstance(yaml_text, str) else None,
    )
    job["parent_run_id"] = parent_job["run_id"]
    job["root_run_id"] = parent_job.get("root_run_id") or parent_job["run_id"]
    job["spawn_depth"] = int(parent_job.get("spawn_depth") or 0) + 1
    job["cancel_with_parent"] = bool(request.get("cancel_with_parent", True))
    for key in ("bundle_workflows", "bundle_sha256"):
        if key in parent_job:
            job[key] = parent_job[key]
    return job


async def publish(nats: Any, settings: Settings, job: dict[str, Any], msg_id: str) -> None:
    """Queue ``job`` with ``msg_id``, retrying briefly; raises the last error."""
    payload = encode_job(job)
    for delay in (*PUBLISH_RETRY_DELAYS_SEC, None):
        try:
            await nats.js.publish(
                settings.work_subject(job["tag"]),
                payload,
                stream=settings.work_stream,
                headers={MSG_ID_HEADER: msg_id},
            )
            return
        except Exception:
            if delay is None:
                raise
            await asyncio.sleep(delay)


async def ensure_child(
    nats: Any, settings: Settings, store: RunStore, parent_job: dict[str, Any], request: dict
) -> bool:
    """Create and queue the child of ``request`` unless it exists; ``True`` when created.

    An existing child is left alone (a redelivered or resumed parent re-attaches to it),
    except that one still PENDING and recent is published again (deduplicated by JetStream).
    """
    job = child_job(parent_job, request)
    snapshot = pending_snapshot(job)
    for key in TREE_FIELDS:
        snapshot[key] = job[key]
    snapshot["spawned_by_task"] = request.get("task")
    try:
        await store.create(snapshot, job, "submitted")
        created = True
    except KeyWrongLastSequenceError:
        created = False
        try:
            existing, _ = await store.get(job["run_id"])
        except RunNotFound:
            existing = {}
        young = time.time() - float(existing.get("submitted_at") or 0) < REPUBLISH_WINDOW_SEC
        if existing.get("status") != PENDING or not young:
            return False
    await publish(nats, settings, job, message_id(job))
    if created:
        log.info("child_run_created", run_id=job["run_id"], parent_run_id=parent_job["run_id"])
    return created


async def publish_resume(
    nats: Any, settings: Settings, continuations: Continuations, parent_id: str, resume: int
) -> bool:
    """Queue the resumption ``resume`` of a parent; ``False`` when its continuation is gone."""
    record, _ = await continuations.get(parent_id)
    if record is None or not isinstance(record.get("job"), dict):
        log.error("continuation_missing", run_id=parent_id)
        return False
    job = dict(record["job"])
    job["resume"] = resume
    await publish(nats, settings, job, f"{message_id(job)}:r{resume}")
    log.info("parent_run_resumed", run_id=parent_id, resume=resume)
    return True


async def release_queued(
    nats: Any,
    settings: Settings,
    store: RunStore,
    continuations: Continuations,
    parent_id: str,
) -> int:
    """Start queued children of a waiting parent while it has free places; how many."""
    started = 0
    for _ in range(20):
        record, revision = await continuations.get(parent_id)
        queue = list((record or {}).get("queue") or [])
        if record is None or revision is None or not queue:
            return started
        try:
            parent, _ = await store.get(parent_id)
        except RunNotFound:
            return started
        if is_terminal(parent.get("status")) or parent.get("cancel_requested_at"):
            return started
        done = parent.get("children_done") or {}
        queued_ids = {request["run_id"] for request in queue}
        active = [
            child
            for child in parent.get("child_run_ids") or []
            if child not in queued_ids and child not in done
        ]
        free = settings.spawn_max_parallel - len(active)
        if free <= 0:
            return started
        taking, rest = queue[:free], queue[free:]
        for request in taking:
            await ensure_child(nats, settings, store, record["job"], request)
        if await continuations.update(parent_id, {**record, "queue": rest}, revision):
            return started + len(taking)
        started += len(taking)
    return started


def child_summary(snapshot: dict[str, Any]) -> dict[str, Any]:
    """What :func:`~.api.wait` returns for a terminal child."""
    records = snapshot.get("task_records") or {}
    return {
        "run_id": snapshot.get("run_id"),
        "flow_name": snapshot.get("flow_name"),
        "status": snapshot.get("status"),
        "error": snapshot.get("error"),
        "results": {
            name: record.get("output")
            for name, record in records.items()
            if isinstance(record, dict) and record.get("state") == "SUCCEEDED"
        },
    }
