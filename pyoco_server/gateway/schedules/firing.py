"""Firing one slot of a schedule: exactly one run per (schedule, nominal time).

1. Gates, checked again at every firing: the creating API key is not revoked, and a YAML
   schedule's workflow still passes every ``pyoco_check_workflow_yaml`` hook.
2. The overlap policy, when the schedule's previous run is still active: ``allow`` fires,
   ``skip`` does not, ``buffer_one`` keeps this slot to fire when the previous run ends (one
   at most: later slots are skipped), ``cancel_previous`` cancels the previous run through
   the ordinary cancel (:func:`~pyoco_server.gateway.cancel.cancel_run`) and fires.
3. The run is created with the deterministic id :func:`~.timing.run_id_for` by an atomic KV
   *create*: of two gateways (or a retry after a crash) firing the same slot, one creates the
   run and the other gets "exists" and moves on.
4. The job is published with ``Nats-Msg-Id = <run_id>:1``. A gateway that dies (or whose
   publish fails) after 3 leaves a PENDING run without a job: :mod:`.repair` publishes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from ...api_keys import RECORD_PREFIX, ApiKeyRecord, RecordCache
from ...errors import PolicyViolation, err_id, msg_id
from ...jobs import build_job, pending_snapshot
from ...log import get_logger
from ...model import WorkflowContext, is_terminal
from ...run_store import RunNotFound
from ...workflow import check_workflow_yaml
from ..cancel import cancel_run
from ..error_responses import ApiError
from ..submit import encoded_job, publish_job
from .metrics import ScheduleMetrics
from .store import ScheduleStore
from .timing import run_id_for

log = get_logger(__name__)

#: Published run ids remembered for the repair pass (about 10 minutes at 200 firings/s).
MAX_REMEMBERED_PUBLISHED = 120_000
#: Error number of a slot refused at firing time (ERR-PYOCO-0048, logged).
FIRING_REFUSED = 48

FIRED = "fired"
TAKEN = "taken"
SKIPPED = "skipped"
BUFFERED = "buffered"


@dataclass
class Outcome:
    """What became of one slot: ``fired`` (this gateway created its run), ``taken`` (the run
    existed already), ``skipped`` (with ``reason``) or ``buffered``."""

    kind: str
    nominal: float
    run_id: str | None = None
    reason: str | None = None
    error: str | None = None


def job_for(definition: dict[str, Any], nominal: float, workflow_yaml: bytes | None):
    """The job of a schedule's run for the slot ``nominal``."""
    tag = definition["tag"]
    job = build_job(
        run_id_for(definition["schedule_id"], nominal),
        definition["flow_name"],
        tag,
        list(definition.get("tags") or [tag]),
        dict(definition.get("params") or {}),
        tenant_id=definition.get("tenant_id"),
        api_key_id=definition.get("api_key_id"),
        workflow_yaml=workflow_yaml,
    )
    job["schedule_id"] = definition["schedule_id"]
    job["schedule_nominal_at"] = nominal
    return job


def schedule_snapshot(job: dict[str, Any]) -> dict[str, Any]:
    """The PENDING snapshot of a schedule's run: the ordinary one plus ``schedule_id`` and
    ``schedule_nominal_at``."""
    snapshot = pending_snapshot(job)
    snapshot["schedule_id"] = job["schedule_id"]
    snapshot["schedule_nominal_at"] = job["schedule_nominal_at"]
    return snapshot


class KeyCheck:
    """Whether an API key is still valid, read from the auth bucket (cached for
    ``PYOCO_AUTH_CACHE_TTL_SEC``, as the gateway's own verification)."""

    def __init__(self, services: Any) -> None:
        self.services = services
        self.cache = RecordCache(services.settings.auth_cache_ttl_sec)

    async def revoked(self, key_id: str) -> bool:
        cached = self.cache.get(key_id)
        if cached is not None:
            record = cached.record
        else:
            kv = await self.services.nats.kv(self.services.settings.auth_kv_bucket)
            try:
                entry = await kv.get(RECORD_PREFIX + key_id)
                record = ApiKeyRecord.decode(entry.value)
            except KeyNotFoundError:
                record = None
            self.cache.put(key_id, record)
        return record is None or record.revoked


class Firer:
    """Fires slots for the dispatcher (and backfills)."""

    def __init__(self, services: Any, store: ScheduleStore, metrics: ScheduleMetrics) -> None:
        self.services = services
        self.metrics = metrics
        self.settings = services.settings
        self.store = store
        self.keys = KeyCheck(services)
        self._workflows: dict[str, bytes] = {}
        #: Run ids whose job this gateway published (the repair pass leaves them alone).
        self.published: OrderedDict[str, None] = OrderedDict()

    def forget(self, schedule_id: str) -> None:
        """Drop what is cached for a deleted schedule."""
        self._workflows.pop(schedule_id, None)

    async def _workflow(self, definition: dict[str, Any]) -> bytes:
        schedule_id = definition["schedule_id"]
        raw = self._workflows.get(schedule_id)
        if raw is None:
            raw = await self.store.workflow_yaml(schedule_id)
            if raw is None:
                raise PolicyViolation("workflow_missing", "the schedule's stored YAML is gone")
            self._workflows[schedule_id] = raw
        return raw

    async def gate(self, definition: dict[str, Any]) -> tuple[str | None, str | None, bytes | None]:
        """``(reason, error, workflow_yaml)``: a skip reason when the slot must not fire."""
        key_id = definition.get("api_key_id")
        auth_on = self.settings.http_auth_mode == "api_key"
        if auth_on and key_id and await self.keys.revoked(key_id):
            return "key_revoked", f"the creating API key {key_id} is revoked", None
        if not definition.get("workflow_yaml_sha256"):
            return None, None, None
        try:
            raw = await self._workflow(definition)
            check_workflow_yaml(
                self.services.pm,
                raw,
                WorkflowContext(
                    settings=self.settings,
                    flow_name=definition["flow_name"],
                    tag=definition["tag"],
                    tenant_id=definition.get("tenant_id"),
                    where="gateway",
                ),
            )
        except PolicyViolation as exc:
            return "policy_violation", f"{exc.reason}: {exc.detail}", None
        return None, None, raw

    async def previous_active(self, last_run_id: str | None) -> bool:
        """Whether the schedule's previous run exists and is not terminal."""
        if not last_run_id:
            return False
        store = await self.services.run_store()
        try:
            snapshot, _ = await store.get(last_run_id)
        except RunNotFound:
            return False
        return not is_terminal(snapshot.get("status"))

    async def overlap(
        self, definition: dict[str, Any], state: dict[str, Any] | None, nominal: float
    ) -> Outcome | None:
        """Apply the overlap policy; an :class:`Outcome` when the slot must not fire now."""
        policy = definition["policies"]["overlap"]
        if policy == "allow" or state is None:
            return None
        if policy == "buffer_one" and state.get("buffered") is not None:
            # A slot is already waiting: it fires first, when the previous run ends.
            return Outcome(SKIPPED, nominal, reason="buffer_full")
        last = state.get("last_run_id")
        if not await self.previous_active(last):
            return None
        if policy == "skip":
            return Outcome(SKIPPED, nominal, reason="overlap")
        if policy == "buffer_one":
            return Outcome(BUFFERED, nominal)
        store = await self.services.run_store()
        with contextlib.suppress(RunNotFound):
            await cancel_run(store, last, f"schedule:{definition['schedule_id']}")
        return None

    async def fire(
        self,
        definition: dict[str, Any],
        nominal: float,
        *,
        state: dict[str, Any] | None = None,
        due_at: float | None = None,
        check_overlap: bool = True,
    ) -> Outcome:
        """Fire the slot ``nominal`` of ``definition`` (see the module for the steps)."""
        reason, error, workflow_yaml = await self.gate(definition)
        if reason is not None:
            log.warning(
                "schedule_firing_refused",
                schedule_id=definition["schedule_id"],
                reason=reason,
                error=error,
                err_id=err_id(FIRING_REFUSED),
                msg_id=msg_id(FIRING_REFUSED),
            )
            return Outcome(SKIPPED, nominal, reason=reason, error=error)
        if check_overlap:
            held = await self.overlap(definition, state, nominal)
            if held is not None:
                return held
        job = job_for(definition, nominal, workflow_yaml)
        try:
            payload = encoded_job(self.services, job)
        except ApiError as exc:
            return Outcome(SKIPPED, nominal, reason="job_too_large", error=exc.detail)
        store = await self.services.run_store()
        try:
            await store.create(schedule_snapshot(job), job)
        except KeyWrongLastSequenceError:
            return Outcome(TAKEN, nominal, run_id=job["run_id"])
        self.metrics.firings.inc()
        if due_at is not None:
            self.metrics.lateness.observe(max(0.0, time.time() - due_at))
        try:
            await publish_job(self.services, job, payload)
        except (asyncio.TimeoutError, Exception) as exc:
            # The run exists: the repair pass publishes its job (same Nats-Msg-Id).
            log.warning(
                "schedule_job_not_published",
                run_id=job["run_id"],
                error=f"{type(exc).__name__}: {exc}",
            )
        else:
            self.published[job["run_id"]] = None
            while len(self.published) > MAX_REMEMBERED_PUBLISHED:
                self.published.popitem(last=False)
        return Outcome(FIRED, nominal, run_id=job["run_id"])


def outcome_change(
    cursor: float, missed: int, outcomes: list[Outcome], finished: bool
) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    """The state change that records one look (or backfill): the cursor moves forward only,
    missed slots are counted by whoever moves it, and every outcome of this gateway counts
    (``taken`` slots are another gateway's to count)."""
    mine = [outcome for outcome in outcomes if outcome.kind != TAKEN]

    def change(state: dict[str, Any]) -> dict[str, Any] | None:
        advanced = cursor > float(state.get("cursor") or 0.0)
        newly_finished = finished and not state.get("finished")
        if not mine and not newly_finished and not advanced:
            return None
        if advanced:
            state["cursor"] = cursor
            state["missed"] = int(state.get("missed") or 0) + missed
        for outcome in mine:
            if outcome.kind == FIRED:
                state["fired"] = int(state.get("fired") or 0) + 1
                if outcome.nominal >= float(state.get("last_nominal") or 0.0):
                    state["last_run_id"] = outcome.run_id
                    state["last_nominal"] = outcome.nominal
                    state["last_fired_at"] = time.time()
                if state.get("buffered") == outcome.nominal:
                    state["buffered"] = None
            elif outcome.kind == BUFFERED:
                if state.get("buffered") is None:
                    state["buffered"] = outcome.nominal
            else:
                state["skipped"] = int(state.get("skipped") or 0) + 1
                if outcome.error:
                    state["last_error"] = outcome.error
        if finished and not state.get("buffered"):
            state["finished"] = True
        return state

    return change
