"""Creating a schedule: validate, check the tenant's limit, store definition + state (+ YAML)."""

from __future__ import annotations

import hashlib
import itertools
import time
import uuid
from typing import Any

from ...log import get_logger
from ..error_responses import ApiError
from ..tenancy import Caller
from ..validation import RunRequest
from .spec import Problems, parse_policies, parse_trigger
from .store import new_state
from .timing import TriggerError, fire_times
from .view import NEXT_FIRE_TIMES

log = get_logger(__name__)

#: Error number of a refused creation because the tenant has too many schedules.
SCHEDULE_LIMIT = 47


def build_definition(
    services: Any,
    caller: Caller,
    request: RunRequest,
    body: dict[str, Any],
    *,
    workflow_yaml: bytes | None = None,
    now: float | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The definition and initial state of a new schedule; 422 for anything invalid."""
    settings = services.settings
    now = time.time() if now is None else now
    problems = Problems()
    spec = parse_trigger(body, problems, now, settings.schedule_min_interval_sec)
    policies = parse_policies(body, problems)
    problems.raise_if_any()
    # A one-shot time a little in the past (client clock skew) still fires, at once.
    cursor = now
    if spec["kind"] == "once" and spec["run_at"] is not None:
        if spec["run_at"] <= now - settings.schedule_misfire_grace_sec:
            problems.add("run_at", "is in the past")
        cursor = min(now, round(spec["run_at"], 3) - 0.001)
    try:
        upcoming = fire_times(services.pm, spec, cursor, limit=NEXT_FIRE_TIMES)
    except TriggerError as exc:
        problems.add("trigger" if "trigger" in body else spec["kind"], str(exc))
        upcoming = []
    gaps = [later - earlier for earlier, later in itertools.pairwise(upcoming)]
    if gaps and min(gaps) < settings.schedule_min_interval_sec - 1e-6:
        problems.add(
            spec["kind"] if spec["kind"] != "once" else "trigger",
            f"fires {min(gaps):g} s apart; the minimum is "
            f"{settings.schedule_min_interval_sec:g} s (PYOCO_SCHEDULE_MIN_INTERVAL_SEC)",
        )
    elif gaps and policies.jitter_sec >= min(gaps):
        problems.add("jitter_sec", f"must be below the time between fires ({min(gaps):g} s)")
    if not upcoming and spec["kind"] != "once":
        problems.add(spec["kind"], "never fires (check start_at and end_at)")
    problems.raise_if_any()
    definition: dict[str, Any] = {
        "schedule_id": uuid.uuid4().hex,
        "tenant_id": caller.tenant_id,
        "api_key_id": caller.api_key_id,
        "created_at": now,
        "updated_at": now,
        "flow_name": request.flow_name,
        "tag": request.tag,
        "tags": request.tags,
        "params": request.params,
        "spec": spec,
        "policies": policies.as_dict(),
        "paused": bool(body.get("paused", False)),
    }
    if workflow_yaml is not None:
        definition["workflow_yaml_sha256"] = hashlib.sha256(workflow_yaml).hexdigest()
        definition["workflow_yaml_bytes"] = len(workflow_yaml)
    return definition, new_state(cursor)


async def check_limit(services: Any, schedules: Any, store: Any, tenant_id: str | None) -> None:
    """409 when the tenant already has ``PYOCO_SCHEDULES_MAX_PER_TENANT`` schedules.

    Two concurrent creations may both pass (the count is read, not reserved): the limit is a
    guard against runaway clients, not an exact quota.
    """
    limit = services.settings.schedules_max_per_tenant
    if schedules.loaded.is_set():  # the dispatcher follows every definition: count in memory
        known = schedules.dispatcher.definitions.values()
    else:  # this gateway does not fire (or is still loading): read the bucket
        known = await store.definitions()
    count = sum(1 for d in known if d.get("tenant_id") == tenant_id)
    if count >= limit:
        raise ApiError(
            409,
            SCHEDULE_LIMIT,
            f"this tenant has {count} schedules; the limit is {limit} "
            "(PYOCO_SCHEDULES_MAX_PER_TENANT): delete some first",
        )
