"""Schedules in KV: definitions, firing state and uploaded workflow YAML.

Bucket ``pyoco_schedules`` (``PYOCO_SCHEDULES_KV_BUCKET``), history 1, two keys per schedule:

* ``def.<id>`` — the definition (target, trigger, policies, paused); written on create and
  ``PATCH`` only, so the dispatchers' watch (``def.>``) sees a change per edit, not per firing;
* ``state.<id>`` — the firing state (``cursor``: the last nominal time handled; counters;
  ``last_run_id``; ``buffered``), written with compare-and-set by the gateway that fired.

Bucket ``pyoco_schedule_workflows`` (``PYOCO_SCHEDULE_WORKFLOWS_KV_BUCKET``), key ``<id>``:
the uploaded YAML of a ``POST /schedules/yaml`` schedule, bytes as received. A KV value must
fit in one NATS message (``max_payload``, 1 MiB by default), so ``PYOCO_WORKFLOW_YAML_MAX_BYTES``
(256 KiB by default) must stay below it; the job that carries the YAML to a worker has the same
limit anyway.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError

from ...config import Settings
from ...log import get_logger
from ...stream_reader import kv_current

log = get_logger(__name__)

DEF_PREFIX = "def."
STATE_PREFIX = "state."
#: Compare-and-set attempts of one state change before giving up (another gateway wins).
STATE_ATTEMPTS = 20


class ScheduleNotFound(LookupError):
    """No definition exists for the schedule id."""


def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def new_state(cursor: float) -> dict[str, Any]:
    """The firing state of a schedule that has not fired yet."""
    return {
        "cursor": cursor,
        "fired": 0,
        "skipped": 0,
        "missed": 0,
        "last_run_id": None,
        "last_nominal": None,
        "last_fired_at": None,
        "buffered": None,
        "last_error": None,
        "finished": False,
    }


async def ensure_buckets(js: Any, settings: Settings) -> tuple[Any, Any]:
    """The two schedule buckets, created when missing (only gateways need them)."""
    handles = []
    for bucket in (settings.schedules_kv_bucket, settings.schedule_workflows_kv_bucket):
        try:
            handles.append(await js.key_value(bucket))
        except BucketNotFoundError:
            config = KeyValueConfig(bucket=bucket, history=1, replicas=settings.jetstream_replicas)
            try:
                handles.append(await js.create_key_value(config))
            except Exception:  # created by another gateway meanwhile
                handles.append(await js.key_value(bucket))
            log.info("nats_kv_created", bucket=bucket)
    return handles[0], handles[1]


StateChange = Callable[[dict[str, Any]], dict[str, Any] | None]


class ScheduleStore:
    """Reads and writes schedule definitions, states and workflow YAML."""

    def __init__(self, kv: Any, workflows_kv: Any) -> None:
        self.kv = kv
        self.workflows_kv = workflows_kv

    async def _get(self, key: str) -> tuple[dict[str, Any] | None, int]:
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            return None, 0
        if entry.value is None:
            return None, 0
        try:
            document = json.loads(entry.value)
        except ValueError:
            log.warning("schedule_record_corrupt", key=key)
            return None, entry.revision
        return (document if isinstance(document, dict) else None), entry.revision

    async def get_definition(self, schedule_id: str) -> tuple[dict[str, Any], int]:
        """The definition and its revision; raises :class:`ScheduleNotFound`."""
        document, revision = await self._get(DEF_PREFIX + schedule_id)
        if document is None:
            raise ScheduleNotFound(schedule_id)
        return document, revision

    async def get_state(self, schedule_id: str) -> tuple[dict[str, Any] | None, int]:
        """The firing state and its revision (``(None, 0)`` when missing)."""
        return await self._get(STATE_PREFIX + schedule_id)

    async def create(
        self, definition: dict[str, Any], state: dict[str, Any], workflow_yaml: bytes | None
    ) -> None:
        """Store a new schedule: YAML first, then state, then the definition the dispatchers
        watch, so a dispatcher never sees a definition without the rest."""
        schedule_id = definition["schedule_id"]
        if workflow_yaml is not None:
            await self.workflows_kv.put(schedule_id, workflow_yaml)
        await self.kv.put(STATE_PREFIX + schedule_id, encode(state))
        await self.kv.create(DEF_PREFIX + schedule_id, encode(definition))

    async def update_definition(
        self, schedule_id: str, definition: dict[str, Any], revision: int
    ) -> int:
        """Compare-and-set write of an edited definition (``KeyWrongLastSequenceError`` when it
        changed meanwhile)."""
        return await self.kv.update(DEF_PREFIX + schedule_id, encode(definition), last=revision)

    async def delete(self, schedule_id: str) -> None:
        """Remove a schedule (its runs stay)."""
        await self.kv.purge(DEF_PREFIX + schedule_id)
        await self.kv.purge(STATE_PREFIX + schedule_id)
        with contextlib.suppress(KeyNotFoundError):
            await self.workflows_kv.purge(schedule_id)

    async def change_state(
        self, schedule_id: str, change: StateChange, known: tuple[dict[str, Any], int] | None
    ) -> tuple[dict[str, Any], int] | None:
        """Apply ``change`` to the latest state with compare-and-set; returns the state written
        (or current, when ``change`` answers ``None``) and its revision; ``None`` when the
        schedule is gone. ``known`` (a state and revision this process saw last) saves a read
        when nobody else wrote since."""
        for attempt in range(STATE_ATTEMPTS):
            if attempt == 0 and known is not None:
                current, revision = dict(known[0]), known[1]
            else:
                current, revision = await self.get_state(schedule_id)
                if current is None:
                    return None
            proposed = change(dict(current))
            if proposed is None:
                return current, revision
            try:
                new_revision = await self.kv.update(
                    STATE_PREFIX + schedule_id, encode(proposed), last=revision
                )
            except KeyWrongLastSequenceError:
                continue
            return proposed, new_revision
        raise RuntimeError(f"schedule {schedule_id}: too many concurrent state writes")

    async def workflow_yaml(self, schedule_id: str) -> bytes | None:
        """The stored YAML of a YAML schedule (``None`` when missing)."""
        try:
            entry = await self.workflows_kv.get(schedule_id)
        except KeyNotFoundError:
            return None
        return entry.value

    async def definitions(self) -> list[dict[str, Any]]:
        """Every stored definition (one pass over the bucket's ``def.>`` keys)."""
        found: list[dict[str, Any]] = []
        for key, value in await kv_current(self.kv, DEF_PREFIX + ">"):
            try:
                document = json.loads(value)
            except (TypeError, ValueError):
                log.warning("schedule_record_corrupt", key=key)
                continue
            if isinstance(document, dict):
                found.append(document)
        return found
