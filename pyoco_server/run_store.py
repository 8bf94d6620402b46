"""Run snapshots in KV ``pyoco_runs``: compare-and-set writes, size cap, enrichment hook.

Every writer (gateway and worker) goes through :class:`RunStore`, so the rules of docs/nats-
resources.md ("Runs") hold everywhere: a terminal snapshot is never replaced by a non-terminal
one (except an explicit reopen for a redrive), a concurrent write is never lost (KV revisions),
every write runs ``pyoco_enrich_snapshot`` and honours ``PYOCO_MAX_RUN_SNAPSHOT_BYTES``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from .config import Settings
from .log import get_logger
from .model import is_terminal
from .nesting import load_stored

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
        # the run tree (worker/children): written only by pyoco-server
        "parent_run_id",
        "root_run_id",
        "child_run_ids",
        "spawn_depth",
        "children_done",
        "waiting_on",
        "resume",
        "cancel_with_parent",
        # schedules (gateway/schedules): which schedule and slot created the run
        "schedule_id",
        "schedule_nominal_at",
    }
)
PREVIEW_CHARS = 1024
#: What survives the last resort of :func:`encode_capped` (with ``tasks`` and ``params``
#: emptied): enough to find, list and account for the run.
MINIMAL_FIELDS = (
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
#: Room (JSON bytes) of each text field in that last resort, halved until the snapshot fits.
LAST_RESORT_TEXT_BYTES = 200

Change = Callable[[dict[str, Any]], dict[str, Any] | None]


class RunNotFound(LookupError):
    """No snapshot exists for the run id."""


def json_copy(value: Any) -> Any:
    """A deep copy of JSON-like data (dicts and lists are copied; anything else is shared).

    Snapshots are JSON documents: this is several times cheaper than ``copy.deepcopy`` on
    every write, and immutable leaves (str, numbers, None, tuples) need no copy.
    """
    if isinstance(value, dict):
        return {key: json_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_copy(item) for item in value]
    return value


def _dumps(snapshot: Any) -> bytes:
    try:
        return json.dumps(
            snapshot, separators=(",", ":"), ensure_ascii=False, default=repr
        ).encode()
    except UnicodeEncodeError:
        # Text with a lone surrogate (a task may return anything): \u escapes encode it.
        return json.dumps(snapshot, separators=(",", ":"), default=repr).encode()


def _preview(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"


def encode_capped(snapshot: dict[str, Any], max_bytes: int) -> bytes:
    """Serialise ``snapshot`` within ``max_bytes``, shedding detail in a fixed order.

    1. drop ``task_records`` (``task_records_truncated=true``, tasks kept);
    2. trim ``error`` and replace ``params`` by a preview (logged as ERR-PYOCO-0010);
    3. keep only the core fields, with ``tasks`` dropped and long texts cut (the run id too,
       if it had to be: never for a uuid), as a last resort.
    The input dict is updated to match what was encoded. Holds for any ``max_bytes`` of at
    least 1 KiB (the smallest ``PYOCO_MAX_RUN_SNAPSHOT_BYTES``).
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
    minimal: dict[str, Any] = {key: snapshot.get(key) for key in MINIMAL_FIELDS if key in snapshot}
    minimal.update(
        params={"_truncated": True},
        tasks={},
        task_records={},
        task_records_truncated=True,
        tasks_truncated=True,
        error=snapshot.get("error") or None,
    )
    # Halve the room of every text field (the status excepted) until the whole fits.
    limit = LAST_RESORT_TEXT_BYTES
    while True:
        fitted = {
            key: _fit(value, limit) if isinstance(value, str) and key != "status" else value
            for key, value in minimal.items()
        }
        data = _dumps(fitted)
        if len(data) <= max_bytes or limit <= 8:
            break
        limit //= 2
    snapshot.clear()
    snapshot.update(fitted)
    return data


def _fit(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` whose JSON encoding takes at most ``max_bytes`` bytes."""
    text = text[:max_bytes]  # every character takes at least one byte
    used = 0
    for index, char in enumerate(text):
        used += len(_dumps(char)) - 2  # without the quotes
        if used > max_bytes:
            return text[:index]
    return text


class RunStore:
    """Reads and writes run snapshots with KV revisions (compare-and-set)."""

    def __init__(self, kv: Any, pm: Any, settings: Settings) -> None:
        self.kv = kv
        self.pm = pm
        self.settings = settings

    def prepare(self, snapshot: dict[str, Any], job: dict[str, Any] | None, event: str) -> bytes:
        """Enrich (plugins), stamp ``updated_at`` and encode within the size cap."""
        for extra in self.pm.hook.pyoco_enrich_snapshot(
            snapshot=json_copy(snapshot), job=job, event=event
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
        snapshot = load_stored(entry.value, self.settings.max_nesting_depth, "run snapshot")
        return snapshot, entry.revision

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
        known: tuple[dict[str, Any], int] | None = None,
    ) -> tuple[dict[str, Any], int]:
        """Apply ``change`` to the latest snapshot and write it with compare-and-set.

        ``change`` receives a copy of the current snapshot and returns the new one, or
        ``None`` to write nothing. On a concurrent write it is called again with the newer
        snapshot. A terminal snapshot is left alone unless the new one is terminal too
        (``change`` decides) or ``reopen`` is set (redrive). Returns the snapshot that is
        current afterwards and its revision.

        ``known`` is a ``(snapshot, revision)`` pair this process wrote or read last (what an
        earlier ``update`` returned): the first attempt starts from it instead of reading the
        snapshot again, saving a round trip. If the run changed meanwhile, the
        compare-and-set fails and the next attempt reads the latest, as without it; a decision
        to write nothing is never taken on ``known`` alone.
        """
        for attempt in range(attempts):
            assumed = attempt == 0 and known is not None
            if assumed:
                current, revision = json_copy(known[0]), known[1]
            else:
                current, revision = await self.get(run_id)
            proposed = change(json_copy(current))
            reopening = proposed is not None and not is_terminal(proposed.get("status"))
            if proposed is None or (
                is_terminal(current.get("status")) and reopening and not reopen
            ):
                if assumed:
                    continue  # confirm on the latest snapshot
                return current, revision
            data = self.prepare(proposed, job, event)
            try:
                new_revision = await self.kv.update(run_id, data, last=revision)
            except KeyWrongLastSequenceError:
                continue
            return proposed, new_revision
        raise RuntimeError(f"run {run_id}: too many concurrent writes")
