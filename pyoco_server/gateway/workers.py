"""Worker liveness records (KV ``pyoco_workers``) as the gateway reports them.

A worker writes ``{worker_id, instance_id, state, tags, current_run_id, heartbeat_at,
started_at, hostname, pid, concurrency}`` under its worker id every heartbeat. A record whose
heartbeat is older than ``PYOCO_WORKERS_KV_TTL_SEC`` is reported ``DISCONNECTED`` (the worker
stopped heartbeating without saying ``STOPPED``). Dead and stopped workers stay listed for
``PYOCO_WORKERS_RETENTION_SEC`` more: the bucket keeps records for the sum of both
(:attr:`Settings.workers_bucket_ttl_sec`), and the gateway hides older ones itself too, so an
existing bucket with a longer TTL shows the same list.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from nats.js.errors import InvalidKeyError, KeyNotFoundError

from ..config import Settings
from ..stream_reader import bucket_current, kv_stream_name

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
    """The record as reported: ``state`` DISCONNECTED when stale, an ``alive`` flag and the
    ``heartbeat_age_sec`` (``None`` when the record has no readable heartbeat)."""
    now = time.time() if now is None else now
    view = dict(record)
    heartbeat = epoch_seconds(record.get("heartbeat_at"))
    stale = heartbeat is None or now - heartbeat > ttl_sec
    state = record.get("state")
    if state != STOPPED and stale:
        state = DISCONNECTED
    view["state"] = state
    view["alive"] = state in (IDLE, RUNNING)
    view["heartbeat_age_sec"] = None if heartbeat is None else round(max(now - heartbeat, 0), 3)
    view.setdefault("tags", [])
    view.setdefault("current_run_id", None)
    view.setdefault("heartbeat_at", None)
    return view


def aged_out(view: dict[str, Any], settings: Settings) -> bool:
    """True for a worker silent for longer than the liveness TTL plus the retention (a record
    without a readable heartbeat stays listed, as DISCONNECTED, until the bucket drops it)."""
    age = view.get("heartbeat_age_sec")
    return age is not None and age > settings.workers_bucket_ttl_sec


async def list_workers(
    js: Any,
    settings: Settings,
    *,
    states: frozenset[str] | None = None,
    include_stopped: bool = True,
) -> list[dict[str, Any]]:
    """Every listed worker, by worker id (empty bucket → ``[]``): records silent for longer
    than the TTL plus the retention are left out; ``states`` keeps only those states and
    ``include_stopped=False`` drops STOPPED workers."""
    bucket = settings.workers_kv_bucket
    info = await js.stream_info(kv_stream_name(bucket))
    if not info.state.messages:
        return []
    records: dict[str, dict[str, Any]] = {}
    entries = await bucket_current(js, bucket, fetch_timeout=settings.http_nats_timeout_sec)
    for worker_id, data in entries:
        value = _decode(data)
        if value is not None:
            value.setdefault("worker_id", worker_id)
            records[worker_id] = value
    now = time.time()
    ttl = settings.workers_kv_ttl_sec
    views = [worker_view(records[key], ttl, now) for key in sorted(records)]
    return [
        view
        for view in views
        if not aged_out(view, settings)
        and (states is None or view["state"] in states)
        and (include_stopped or view["state"] != STOPPED)
    ]


def serving(workers: list[dict[str, Any]], tag: str) -> list[dict[str, Any]]:
    """The live workers among ``workers`` that pull jobs of ``tag``."""
    return [w for w in workers if w.get("alive") and tag in (w.get("tags") or ())]


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
