"""Job messages on ``pyoco.work.<tag>`` (docs/nats-resources.md): building, encoding and
validating."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from .config import TAG_PATTERN
from .model import PENDING

#: Header that makes JetStream drop a duplicate publish within the stream's duplicate window.
MSG_ID_HEADER = "Nats-Msg-Id"
#: Optional job field: the KV revision of the PENDING snapshot the gateway created for the job,
#: and the fields that snapshot has beyond :func:`pending_snapshot` (plugin fields). With it a
#: worker claims the run without reading the snapshot first (docs/worker.md, "Claim").
PENDING_FIELD = "pending_snapshot"


class InvalidJob(ValueError):
    """A job message that is not JSON, not an object, or lacks ``run_id``/``flow_name``."""


def build_job(
    run_id: str,
    flow_name: str,
    tag: str,
    tags: list[str],
    params: dict[str, Any],
    *,
    submitted_at: float | None = None,
    tenant_id: str | None = None,
    api_key_id: str | None = None,
    workflow_yaml: bytes | None = None,
    attempt: int = 1,
) -> dict[str, Any]:
    """The job message for a new run (YAML runs carry the YAML text and its fingerprint)."""
    job: dict[str, Any] = {
        "run_id": run_id,
        "flow_name": flow_name,
        "tag": tag,
        "tags": tags,
        "params": params,
        "submitted_at": time.time() if submitted_at is None else submitted_at,
        "attempt": attempt,
    }
    if tenant_id is not None:
        job["tenant_id"] = tenant_id
        job["api_key_id"] = api_key_id
    if workflow_yaml is not None:
        job["workflow_yaml"] = workflow_yaml.decode("utf-8")
        job["workflow_yaml_sha256"] = hashlib.sha256(workflow_yaml).hexdigest()
        job["workflow_yaml_bytes"] = len(workflow_yaml)
    return job


def encode_job(job: dict[str, Any]) -> bytes:
    return json.dumps(job, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def message_id(job: dict[str, Any]) -> str:
    """The ``Nats-Msg-Id`` of a job: one per run attempt, so a retried publish is deduplicated."""
    return f"{job['run_id']}:{job.get('attempt', 1)}"


def decode_job(data: bytes) -> dict[str, Any]:
    """Parse and validate a job message; raise :class:`InvalidJob` with the reason."""
    try:
        job = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidJob(f"job is not JSON: {exc}") from None
    except RecursionError:
        raise InvalidJob("job nests too deeply to be decoded") from None
    if not isinstance(job, dict):
        raise InvalidJob(f"job is a JSON {type(job).__name__}, not an object")
    for key in ("run_id", "flow_name"):
        if not isinstance(job.get(key), str) or not job[key]:
            raise InvalidJob(f"job has no {key}")
    if not isinstance(job.get("params", {}), dict):
        raise InvalidJob("job params is not an object")
    tag = job.get("tag")
    if tag is not None and (not isinstance(tag, str) or not TAG_PATTERN.match(tag)):
        raise InvalidJob("job tag is invalid")
    if "workflow_yaml" in job and not isinstance(job["workflow_yaml"], str):
        raise InvalidJob("job workflow_yaml is not text")
    return job


def pending_snapshot(job: dict[str, Any]) -> dict[str, Any]:
    """The PENDING snapshot the gateway writes before it publishes ``job``."""
    now = job["submitted_at"]
    snapshot: dict[str, Any] = {
        "run_id": job["run_id"],
        "flow_name": job["flow_name"],
        "status": PENDING,
        "params": job["params"],
        "tag": job["tag"],
        "tags": job["tags"],
        "tasks": {},
        "task_records": {},
        "task_records_truncated": False,
        "worker_id": None,
        "submitted_at": now,
        "heartbeat_at": now,
        "updated_at": now,
        "start_time": None,
        "end_time": None,
        "error": None,
        "attempt": job.get("attempt", 1),
    }
    if "tenant_id" in job:
        snapshot["tenant_id"] = job["tenant_id"]
        snapshot["api_key_id"] = job.get("api_key_id")
    return snapshot


def pending_info(
    job: dict[str, Any], stored: dict[str, Any], revision: int
) -> dict[str, Any] | None:
    """The value of :data:`PENDING_FIELD` for the PENDING snapshot ``stored`` at ``revision``.

    ``stored`` is the snapshot as written (enriched by plugins, maybe capped). When it lacks a
    field :func:`pending_snapshot` would give (the size cap shed it), the snapshot cannot be
    rebuilt from the job: ``None``.
    """
    base = pending_snapshot(job)
    if any(key not in stored for key in base):
        return None
    extra = {
        key: value
        for key, value in stored.items()
        if key != "updated_at" and (key not in base or base[key] != value)
    }
    return {"revision": revision, "extra": extra}


def with_pending(job: dict[str, Any], stored: dict[str, Any], revision: int) -> dict[str, Any]:
    """``job`` plus :data:`PENDING_FIELD` (see :func:`pending_info`; unchanged without one)."""
    info = pending_info(job, stored, revision)
    return job if info is None else {**job, PENDING_FIELD: info}


def encoded_with_pending(
    payload: bytes, job: dict[str, Any], stored: dict[str, Any], revision: int
) -> bytes:
    """:func:`encode_job` of :func:`with_pending` from the job's ``payload`` already encoded:
    only the added field is encoded (a YAML run's job carries the whole workflow file)."""
    info = pending_info(job, stored, revision)
    if info is None or PENDING_FIELD in job:
        return payload
    return payload[:-1] + b',"' + PENDING_FIELD.encode() + b'":' + encode_job(info) + b"}"


def without_pending(job: dict[str, Any]) -> dict[str, Any]:
    """``job`` without :data:`PENDING_FIELD` (for a job queued again for an existing run)."""
    return {key: value for key, value in job.items() if key != PENDING_FIELD}


def pending_from_job(job: dict[str, Any]) -> tuple[dict[str, Any], int] | None:
    """The PENDING snapshot the gateway created for ``job`` and its revision, rebuilt from
    :data:`PENDING_FIELD`; ``None`` when the job does not carry a usable one.

    The pair is only a starting point for a compare-and-set: if the run changed since (a
    cancel, a redelivery of a job that already ran), the write fails and the latest snapshot
    is read as usual.
    """
    info = job.get(PENDING_FIELD)
    if not isinstance(info, dict):
        return None
    revision, extra = info.get("revision"), info.get("extra")
    if type(revision) is not int or revision < 1 or not isinstance(extra, dict):
        return None
    if not isinstance(job.get("tag"), str) or not isinstance(job.get("tags"), list):
        return None
    if "submitted_at" not in job:
        return None
    snapshot = pending_snapshot({"params": {}, **job})
    snapshot.update(extra)
    return snapshot, revision
