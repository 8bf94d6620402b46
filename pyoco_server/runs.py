"""Run snapshots in KV ``pyoco_runs``: compare-and-set writes, size cap, enrichment hook.

Every writer (gateway and worker) goes through :class:`RunStore`, so the rules of contract §5
hold everywhere: a terminal snapshot is never replaced by a non-terminal one (except an
explicit reopen for a redrive), a concurrent write is never lost (KV revisions), every write
runs ``pyoco_enrich_snapshot`` and honours ``PYOCO_MAX_RUN_SNAPSHOT_BYTES``.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import Any

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from .config import Settings
from .log import get_logger
from .model import is_terminal

log = get_logger(__name__)

#: Fields only pyoco-server writes; ``pyoco_enrich_snapshot`` results cannot replace them.
CORE_FIELDS = frozenset(
    {
        "run_id",
        "flow_name",
        "status",
        "params",
        "tasks",
        "task_records",
        "task_records_truncated",
        "tag",
        "tags",
        "worker_id",
        "heartbeat_at",
        "updated_at",
        "start_time",
        "end_time",
        "error",
        "tenant_id",
        "api_key_id",
        "attempt",
        "attempts",
        "job_stream_seq",
        "num_delivered",
    }
)
PREVIEW_CHARS = 1024

Change = Callable[[dict[str, Any]], dict[str, Any] | None]


class RunNotFound(LookupError):
    """No snapshot exists for the run id."""


def _dumps(snapshot: dict[str, Any]) -> bytes:
    return json.dumps(snapshot, separators=(",", ":"), ensure_ascii=False, default=repr).encode()


def _preview(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"


def encode_capped(snapshot: dict[str, Any], max_bytes: int) -> bytes:
    """Serialise ``snapshot`` within ``max_bytes``, shedding detail in a fixed order.

    1. drop ``task_records`` (``task_records_truncated=true``, tasks kept);
    2. trim ``error`` and replace ``params`` by a preview (logged as ERR-PYOCO-0010);
    3. keep only the core fields, with ``tasks`` dropped, as a last resort.
    The input dict is updated to match what was encoded.
    """
    data = _dumps(snapshot)
    if len(data) <= max_bytes:
        return data
    if snapshot.get("task_records"):
        snapshot["task_records"] = {}
        snapshot["task_records_truncated"] = True
        data = _dumps(snapshot)
        if len(data) <= max_bytes:
            return data
    log.warning(
        "snapshot_too_large",
        run_id=snapshot.get("run_id"),
        bytes=len(data),
        limit=max_bytes,
        err_id="ERR-PYOCO-0010",
        msg_id="MSG-PYOCO-0010",
    )
    if snapshot.get("error"):
        snapshot["error"] = _preview(snapshot["error"])
    snapshot["params"] = {"_truncated": True, "preview": _preview(snapshot.get("params"))}
    for key, value in list(snapshot.items()):
        if key not in CORE_FIELDS and len(_dumps({key: value})) > PREVIEW_CHARS:
            snapshot[key] = _preview(value)
    data = _dumps(snapshot)
    if len(data) <= max_bytes:
        return data
    minimal = {
        key: snapshot.get(key)
        for key in (
            "run_id",
            "flow_name",
            "status",
            "tag",
            "worker_id",
            "heartbeat_at",
            "updated_at",
            "start_time",
            "end_time",
            "tenant_id",
            "api_key_id",
            "attempt",
        )
        if key in snapshot
    }
    minimal.update(
        params={"_truncated": True},
        tasks={},
        task_records={},
        task_records_truncated=True,
        tasks_truncated=True,
        error=(snapshot.get("error") or "")[:200] or None,
    )
    for key in ("run_id", "flow_name", "tag"):
        if isinstance(minimal.get(key), str):
            minimal[key] = minimal[key][:200]
    snapshot.clear()
    snapshot.update(minimal)
    return _dumps(snapshot)


class RunStore:
    """Reads and writes run snapshots with KV revisions (compare-and-set)."""

    def __init__(self, kv: Any, pm: Any, settings: Settings) -> None:
        self.kv = kv
        self.pm = pm
        self.settings = settings

    def prepare(self, snapshot: dict[str, Any], job: dict[str, Any] | None, event: str) -> bytes:
        """Enrich (plugins), stamp ``updated_at`` and encode within the size cap."""
        for extra in self.pm.hook.pyoco_enrich_snapshot(
            snapshot=copy.deepcopy(snapshot), job=job, event=event
        ):
            if extra:
                snapshot.update({k: v for k, v in extra.items() if k not in CORE_FIELDS})
        snapshot["updated_at"] = time.time()
        return encode_capped(snapshot, self.settings.max_run_snapshot_bytes)

    async def get(self, run_id: str) -> tuple[dict[str, Any], int]:
        """The snapshot and its KV revision; raises :class:`RunNotFound`."""
        try:
            entry = await self.kv.get(run_id)
        except KeyNotFoundError:
            raise RunNotFound(run_id) from None
        if entry.value is None:
            raise RunNotFound(run_id)
        return json.loads(entry.value), entry.revision

    async def create(
        self, snapshot: dict[str, Any], job: dict[str, Any] | None, event: str = "submitted"
    ) -> int:
        """Write a new run; fails with ``KeyWrongLastSequenceError`` if the id exists."""
        return await self.kv.create(snapshot["run_id"], self.prepare(snapshot, job, event))

    async def delete(self, run_id: str) -> None:
        """Remove a run (used only to undo a submit whose publish failed)."""
        await self.kv.purge(run_id)

    async def update(
        self,
        run_id: str,
        change: Change,
        event: str,
        job: dict[str, Any] | None = None,
        *,
        reopen: bool = False,
        attempts: int = 50,
    ) -> tuple[dict[str, Any], int]:
        """Apply ``change`` to the latest snapshot and write it with compare-and-set.

        ``change`` receives a copy of the current snapshot and returns the new one, or
        ``None`` to write nothing. On a concurrent write it is called again with the newer
        snapshot. A terminal snapshot is left alone unless the new one is terminal too
        (``change`` decides) or ``reopen`` is set (redrive). Returns the snapshot that is
        current afterwards and its revision.
        """
        for _ in range(attempts):
            current, revision = await self.get(run_id)
            proposed = change(copy.deepcopy(current))
            if proposed is None:
                return current, revision
            reopening = not is_terminal(proposed.get("status"))
            if is_terminal(current.get("status")) and reopening and not reopen:
                return current, revision
            data = self.prepare(proposed, job, event)
            try:
                new_revision = await self.kv.update(run_id, data, last=revision)
            except KeyWrongLastSequenceError:
                continue
            return proposed, new_revision
        raise RuntimeError(f"run {run_id}: too many concurrent writes")
