"""Validating a schedule request: trigger, policies and edits (``POST``/``PATCH``).

The trigger is exactly one of ``run_at`` (one-shot), ``interval_seconds`` (with optional
``start_at``), ``cron`` (with ``timezone``) or ``trigger`` (an object ``{"kind": ..., ...}``
for a kind a ``pyoco_next_fire_time`` plugin adds). Times are ISO 8601 texts with an offset
(``Z`` accepted) or epoch seconds; they are stored as UTC epoch seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ...builtin.schedule_times import LATEST, parse_cron, zone
from ..error_responses import invalid

CATCHUP_POLICIES = ("latest", "all", "skip")
OVERLAP_POLICIES = ("allow", "skip", "buffer_one", "cancel_previous")
TRIGGER_FIELDS = ("run_at", "interval_seconds", "cron", "trigger")
#: Catch-up window bounds and default (seconds): 10 s to one year, 24 h by default.
CATCHUP_WINDOW_MIN = 10.0
CATCHUP_WINDOW_MAX = 366 * 86400.0
CATCHUP_WINDOW_DEFAULT = 86400.0
#: ``catchup: all`` fires at most this many missed slots (the rest are counted as missed).
MAX_CATCHUP_DEFAULT = 100
MAX_CATCHUP_LIMIT = 1000
MAX_JITTER_SEC = 3600.0
#: Editable through ``PATCH /schedules/{id}``.
PATCH_FIELDS = (
    "paused",
    "resume_from",
    "catchup",
    "catchup_window_sec",
    "max_catchup",
    "overlap",
    "jitter_sec",
    "end_at",
)


class Problems:
    """Collects field errors; :meth:`raise_if_any` answers them as one 422."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, name: str, message: str) -> None:
        self.items.append({"field": name, "message": message})

    def raise_if_any(self) -> None:
        if self.items:
            first = self.items[0]
            raise invalid(f"{first['field']}: {first['message']}", self.items)


def parse_instant(value: Any, name: str, problems: Problems) -> float | None:
    """An ISO 8601 text with offset, or epoch seconds, as UTC epoch seconds (``None``: absent)."""
    if value is None:
        return None
    if isinstance(value, bool):
        problems.add(name, "must be an ISO 8601 date-time with offset or epoch seconds")
        return None
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or not 0 <= value <= LATEST:
            problems.add(name, "must be an epoch time between 0 and the end of year 9999")
            return None
        return float(value)
    if not isinstance(value, str) or not value.strip():
        problems.add(name, "must be an ISO 8601 date-time with offset or epoch seconds")
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        problems.add(name, f"{value[:64]!r} is not an ISO 8601 date-time")
        return None
    if parsed.tzinfo is None:
        problems.add(name, "must include a UTC offset (for example 2026-01-01T09:00:00+09:00)")
        return None
    try:
        moment = parsed.timestamp()
    except (OverflowError, ValueError):
        moment = -1.0
    if not 0 <= moment <= LATEST:
        problems.add(name, "must lie between 1970 and the end of year 9999 (UTC)")
        return None
    return moment


def _number(
    body: dict[str, Any], name: str, problems: Problems, low: float, high: float
) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        problems.add(name, "must be a number")
        return None
    if not low <= value <= high:
        problems.add(name, f"must be between {low:g} and {high:g}")
        return None
    return float(value)


def _choice(body: dict[str, Any], name: str, choices: tuple[str, ...], problems: Problems):
    value = body.get(name)
    if value is None:
        return None
    if value not in choices:
        problems.add(name, "must be one of " + ", ".join(choices))
        return None
    return value


@dataclass(frozen=True)
class Policies:
    """What a schedule does after downtime and when its previous run is still active."""

    catchup: str = "latest"
    catchup_window_sec: float = CATCHUP_WINDOW_DEFAULT
    max_catchup: int = MAX_CATCHUP_DEFAULT
    overlap: str = "allow"
    jitter_sec: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "catchup": self.catchup,
            "catchup_window_sec": self.catchup_window_sec,
            "max_catchup": self.max_catchup,
            "overlap": self.overlap,
            "jitter_sec": self.jitter_sec,
        }


def parse_policies(body: dict[str, Any], problems: Problems, base: Policies | None = None):
    """The policies of ``body`` over ``base`` (defaults when ``None``)."""
    base = base or Policies()
    catchup = _choice(body, "catchup", CATCHUP_POLICIES, problems)
    overlap = _choice(body, "overlap", OVERLAP_POLICIES, problems)
    window = _number(body, "catchup_window_sec", problems, CATCHUP_WINDOW_MIN, CATCHUP_WINDOW_MAX)
    cap = _number(body, "max_catchup", problems, 1, MAX_CATCHUP_LIMIT)
    if cap is not None and cap != int(cap):
        problems.add("max_catchup", "must be an integer")
    jitter = _number(body, "jitter_sec", problems, 0, MAX_JITTER_SEC)
    return Policies(
        catchup=catchup or base.catchup,
        catchup_window_sec=base.catchup_window_sec if window is None else window,
        max_catchup=base.max_catchup if cap is None else int(cap),
        overlap=overlap or base.overlap,
        jitter_sec=base.jitter_sec if jitter is None else jitter,
    )


def parse_trigger(
    body: dict[str, Any], problems: Problems, now: float, min_interval: float
) -> dict[str, Any]:
    """The trigger spec of ``body`` (``kind`` plus its fields, ``end_at``)."""
    given = [name for name in TRIGGER_FIELDS if body.get(name) is not None]
    if len(given) != 1:
        problems.add(
            "run_at",
            "give exactly one of run_at, interval_seconds, cron or trigger"
            + (f" (got {', '.join(given)})" if given else ""),
        )
        return {}
    spec: dict[str, Any]
    which = given[0]
    if which == "run_at":
        spec = {"kind": "once", "run_at": parse_instant(body["run_at"], "run_at", problems)}
    elif which == "interval_seconds":
        interval = body["interval_seconds"]
        if isinstance(interval, bool) or not isinstance(interval, (int, float)):
            problems.add("interval_seconds", "must be a number > 0")
            return {}
        if not math.isfinite(interval) or interval < min_interval:
            problems.add(
                "interval_seconds",
                f"must be at least {min_interval:g} (PYOCO_SCHEDULE_MIN_INTERVAL_SEC)",
            )
            return {}
        start = parse_instant(body.get("start_at"), "start_at", problems)
        spec = {
            "kind": "interval",
            "interval_seconds": float(interval),
            # As in 0.7.0: without start_at, the first firing is one interval from now.
            "start_at": round(start if start is not None else now + interval, 3),
        }
    elif which == "cron":
        try:
            expression = parse_cron(body["cron"])
            timezone_name = body.get("timezone") or "UTC"
            zone(timezone_name)
        except ValueError as exc:
            problems.add("cron" if "cron" in str(exc) else "timezone", str(exc))
            return {}
        spec = {"kind": "cron", "cron": expression, "timezone": timezone_name}
    else:
        trigger = body["trigger"]
        if not isinstance(trigger, dict) or not isinstance(trigger.get("kind"), str):
            problems.add("trigger", "must be an object with a 'kind' text")
            return {}
        spec = dict(trigger)
    if body.get("timezone") is not None and which != "cron":
        spec.setdefault("timezone", body["timezone"])
    spec["end_at"] = parse_instant(body.get("end_at"), "end_at", problems)
    return spec
