"""Operators' ``hidden`` flags of workers, in KV ``PYOCO_WORKER_FLAGS_KV_BUCKET``.

The flag lives in its own bucket, keyed by worker id, written only by gateways — never in the
liveness record the worker rewrites on every heartbeat. So a worker's heartbeats, a restart
under the same id, or its record expiring and being created again cannot drop the flag, and
no read-modify-write of the worker's record can race with the worker. Hiding writes
``{"hidden": true, "updated_at": <epoch>}``; unhiding deletes the key, so the bucket only
holds hidden workers. Concurrent PATCHes of one worker are last-writer-wins, which is what
setting a flag means.
"""

from __future__ import annotations

import json
import time
from typing import Any

from nats.js.errors import NotFoundError

from ...config import Settings
from ...stream_reader import bucket_current, kv_stream_name


async def hidden_workers(js: Any, settings: Settings) -> dict[str, float]:
    """The hidden workers' ids with the time they were hidden (one read of the bucket's
    stream, O(hidden workers))."""
    bucket = settings.worker_flags_kv_bucket
    try:
        info = await js.stream_info(kv_stream_name(bucket))
    except NotFoundError:  # the bucket was removed: nothing is hidden until it is back
        return {}
    if not info.state.messages:
        return {}
    hidden: dict[str, float] = {}
    entries = await bucket_current(js, bucket, fetch_timeout=settings.http_nats_timeout_sec)
    for worker_id, data in entries:
        flag = _decode(data)
        if flag is not None and flag.get("hidden") is True:
            updated = flag.get("updated_at")
            hidden[worker_id] = float(updated) if isinstance(updated, (int, float)) else 0.0
    return hidden


async def set_hidden(kv: Any, worker_id: str, hidden: bool) -> float:
    """Hide (or unhide) a worker; returns the time of the change (epoch seconds)."""
    now = time.time()
    if hidden:
        document = {"hidden": True, "updated_at": now}
        await kv.put(worker_id, json.dumps(document, separators=(",", ":")).encode())
    else:
        await kv.delete(worker_id)
    return now


def _decode(data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
