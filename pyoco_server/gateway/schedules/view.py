"""The HTTP shape of a schedule: the 0.7.0 fields plus trigger, policies and counters."""

from __future__ import annotations

from typing import Any

from .timing import TriggerError, fire_times, iso, next_fire

#: ``GET /schedules/{id}`` lists this many upcoming fire times.
NEXT_FIRE_TIMES = 10


def status_of(definition: dict[str, Any], state: dict[str, Any] | None) -> str:
    """``ACTIVE``, ``PAUSED`` or ``COMPLETED`` (no fire time left)."""
    if state is not None and state.get("finished"):
        return "COMPLETED"
    return "PAUSED" if definition.get("paused") else "ACTIVE"


def schedule_view(
    pm: Any, definition: dict[str, Any], state: dict[str, Any] | None, *, detail: bool = False
) -> dict[str, Any]:
    """The answer for one schedule; ``detail`` adds the next :data:`NEXT_FIRE_TIMES` times."""
    spec = definition["spec"]
    state = state or {}
    status = status_of(definition, state)
    cursor = float(state.get("cursor") or definition.get("created_at") or 0.0)
    next_run_at = None
    if status != "COMPLETED":
        try:
            next_run_at = next_fire(pm, spec, cursor)
        except TriggerError:
            next_run_at = None
    view: dict[str, Any] = {
        "schedule_id": definition["schedule_id"],
        "flow_name": definition["flow_name"],
        "tag": definition["tag"],
        "tags": definition.get("tags"),
        "params": definition.get("params") or {},
        "status": status,
        "schedule_type": spec.get("kind"),
        "workflow_yaml_sha256": definition.get("workflow_yaml_sha256"),
        "workflow_yaml_bytes": definition.get("workflow_yaml_bytes"),
        "tenant_id": definition.get("tenant_id"),
        "api_key_id": definition.get("api_key_id"),
        "created_at": definition.get("created_at"),
        "updated_at": definition.get("updated_at"),
        "run_at": spec.get("run_at"),
        "interval_seconds": spec.get("interval_seconds"),
        "start_at": spec.get("start_at"),
        "cron": spec.get("cron"),
        "timezone": spec.get("timezone") or ("UTC" if spec.get("kind") == "cron" else None),
        "end_at": spec.get("end_at"),
        "trigger": spec,
        "paused": bool(definition.get("paused")),
        "next_run_at": next_run_at,
        "last_submitted_at": state.get("last_fired_at"),
        "last_run_id": state.get("last_run_id"),
        "dispatch_count": int(state.get("fired") or 0),
        "last_error": state.get("last_error"),
        "counters": {
            "fired": int(state.get("fired") or 0),
            "skipped": int(state.get("skipped") or 0),
            "missed": int(state.get("missed") or 0),
        },
        "buffered_slot": state.get("buffered"),
        **definition.get("policies", {}),
    }
    if detail:
        upcoming: list[float] = []
        if status != "COMPLETED":
            try:
                upcoming = fire_times(pm, spec, cursor, limit=NEXT_FIRE_TIMES)
            except TriggerError:
                upcoming = []
        view["next_fire_times"] = [iso(moment) for moment in upcoming]
        view["next_fire_epochs"] = upcoming
    return view
