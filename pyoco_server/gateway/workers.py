"""Worker liveness records (KV ``pyoco_workers``) as the gateway reports them.

A worker writes ``{worker_id, instance_id, state, tags, current_run_id, heartbeat_at,
started_at, hostname, pid, concurrency}`` under its worker id every heartbeat; the key expires
``PYOCO_WORKERS_KV_TTL_SEC`` after the last write. A record whose heartbeat is older than the
TTL is reported ``DISCONNECTED`` (the worker stopped heartbeating without saying ``STOPPED``).
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from nats.js.errors import InvalidKeyError, KeyNotFoundError

from ..config import Settings
from ..stream_reader import StreamRecord, kv_stream_name, kv_subject_prefix, read_stream

IDLE = "IDLE"
RUNNING = "RUNNING"
STOPPED = "STOPPED"
DISCONNECTED = "DISCONNECTED"
WORKER_STATES = (IDLE, RUNNING, STOPPED, DISCONNECTED)


def epoch_seconds(value: Any) -> float | None:
    """A heartbeat timestamp as epoch seconds: numbers as they are, ISO-8601 text parsed."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def worker_view(record: dict[str, Any], ttl_sec: float, now: float | None = None) -> dict[str, Any]:
    """The record as reported: ``state`` DISCONNECTED when stale, plus an ``alive`` flag."""
    now = time.time() if now is None else now
    view = dict(record)
    heartbeat = epoch_seconds(record.get("heartbeat_at"))
    stale = heartbeat is None or now - heartbeat > ttl_sec
    state = record.get("state")
    if state != STOPPED and stale:
        state = DISCONNECTED
    view["state"] = state
    view["alive"] = state in (IDLE, RUNNING)
    view.setdefault("tags", [])
    view.setdefault("current_run_id", None)
    view.setdefault("heartbeat_at", None)
    return view


async def list_workers(js: Any, settings: Settings) -> list[dict[str, Any]]:
    """Every worker record in the liveness bucket, by worker id (empty bucket → ``[]``)."""
    bucket = settings.workers_kv_bucket
    info = await js.stream_info(kv_stream_name(bucket))
    if not info.state.messages:
        return []
    prefix = kv_subject_prefix(bucket)
    records: dict[str, dict[str, Any]] = {}

    def collect(batch: list[StreamRecord]) -> None:
        for record in batch:
            worker_id = record.subject[len(prefix) :]
            value = None if record.deleted else _decode(record.data)
            if value is None:
                records.pop(worker_id, None)
            else:
                value.setdefault("worker_id", worker_id)
                records[worker_id] = value

    await read_stream(
        js,
        kv_stream_name(bucket),
        prefix + ">",
        1,
        collect,
        fetch_timeout=settings.http_nats_timeout_sec,
    )
    now = time.time()
    ttl = settings.workers_kv_ttl_sec
    return [worker_view(records[key], ttl, now) for key in sorted(records)]


async def get_worker(kv: Any, worker_id: str) -> dict[str, Any] | None:
    """One worker's record, or ``None`` when it has none (expired, deleted or never written)."""
    try:
        entry = await kv.get(worker_id)
    except (KeyNotFoundError, InvalidKeyError):
        return None
    return _decode(entry.value) if entry.value else None


def _decode(data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
