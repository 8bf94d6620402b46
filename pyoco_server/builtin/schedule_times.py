"""Built-in plugin ``schedule_times``: the next fire time of ``once``, ``interval`` and ``cron``
schedules (hook ``pyoco_next_fire_time``).

* ``once``: ``run_at``, then never again.
* ``interval``: ``start_at + k * interval_seconds`` (k >= 0): exact durations, whatever the
  time zone or its DST changes.
* ``cron``: 5 fields (minute hour day month weekday) or 6 (seconds first), matched in the
  schedule's IANA ``timezone`` by the ``cronsim`` library. Daylight-saving changes follow the
  documented rules of Debian cron: a job at a *fixed* local time (5 fields, neither minute nor
  hour starting with ``*``) whose time is skipped runs once at the transition, and one whose
  time is repeated runs once (the first time); jobs with a wildcard minute or hour run by the
  clock as it is (a skipped time does not exist, a repeated one happens twice: they keep their
  real-time rhythm).

Every answer is rounded to milliseconds, so every gateway derives the same run id from it.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from ..hookspecs import hookimpl

#: Candidates examined per call at most (an expression that matches almost never is refused).
MAX_CANDIDATES = 10_000
ONE_MINUTE = timedelta(minutes=1)
#: The latest time accepted (the end of year 9999, UTC) and the shortest interval (1 ms:
#: fire times are kept to the millisecond).
LATEST = 253402300799.0
MIN_INTERVAL = 0.001


def zone(name: Any) -> ZoneInfo:
    """The IANA time zone ``name``; ``ValueError`` naming it when unknown."""
    if not isinstance(name, str) or not name:
        raise ValueError("timezone must be an IANA time zone name such as 'Europe/Berlin'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as 'UTC')") from None


def parse_cron(expression: Any) -> str:
    """The normalised cron ``expression`` (5 or 6 fields); ``ValueError`` when invalid."""
    if not isinstance(expression, str) or len(expression.split()) not in (5, 6):
        raise ValueError("cron must have 5 fields (minute hour day month weekday) or 6")
    normalised = " ".join(expression.split())
    try:
        CronSim(normalised, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise ValueError(f"invalid cron expression {normalised!r}: {exc}") from None
    return normalised


def is_fixed_time(expression: str) -> bool:
    """Whether Debian cron's DST special handling applies: 5 fields, and neither the minute
    nor the hour field starts with ``*``."""
    parts = expression.split()
    return len(parts) == 5 and not parts[0].startswith("*") and not parts[1].startswith("*")


def _instants(wall: datetime, tz: ZoneInfo) -> list[float]:
    """The UTC instants of a naive local ``wall`` time: none (skipped), one, or two
    (repeated: first and second pass)."""
    found = []
    for fold in (0, 1):
        instant = wall.replace(tzinfo=tz, fold=fold).timestamp()
        back = datetime.fromtimestamp(instant, tz).replace(tzinfo=None)
        if back == wall and instant not in found:
            found.append(instant)
    return sorted(found)


def _transition_instant(wall: datetime, tz: ZoneInfo) -> float:
    """For a skipped ``wall`` time: the instant of the transition, that is the first valid
    local minute after it (tzdata transitions fall on whole minutes)."""
    probe = wall.replace(second=0)
    for _ in range(24 * 60):
        probe += ONE_MINUTE
        instants = _instants(probe, tz)
        if instants:
            return instants[0]
    raise ValueError("no valid local time within a day of a skipped time")


def _cron_next(expression: str, tz: ZoneInfo, after: float) -> float:
    fixed = is_fixed_time(expression)
    local_after = datetime.fromtimestamp(after, tz)
    wall_after = local_after.replace(tzinfo=None)
    repeated = len(_instants(wall_after, tz)) == 2
    second_pass = repeated and local_after.fold == 1
    best = math.inf
    for count, candidate in enumerate(CronSim(expression, wall_after)):
        if count > MAX_CANDIDATES:
            break
        instants = _instants(candidate, tz)
        if not instants:
            if fixed:  # a skipped local time: once, at the transition
                best = _transition_instant(candidate, tz)
                break
            continue  # a wildcard time that does not exist today
        if len(instants) == 2:
            if fixed:
                if second_pass and candidate.date() == wall_after.date():
                    continue  # a repeated time runs once: it ran in the first pass
                instants = instants[:1]
            elif second_pass and candidate.date() == wall_after.date():
                instants = instants[1:]
        later = [instant for instant in instants if instant > after]
        if later:
            best = later[0]
            break
    if repeated and not fixed and not second_pass:
        # In the first pass of a repeated hour: its second pass may come before later walls.
        start = wall_after.replace(second=0, microsecond=0)
        while len(_instants(start - ONE_MINUTE, tz)) == 2:
            start -= ONE_MINUTE
        first = next(iter(CronSim(expression, start - timedelta(seconds=1))))
        instants = _instants(first, tz)
        if len(instants) == 2 and after < instants[1] < best:
            best = instants[1]
    if math.isinf(best):
        raise ValueError(f"cron {expression!r} has no fire time after {local_after.isoformat()}")
    return round(best, 3)


def _interval_next(interval: float, start: float, after: float) -> float:
    if after < start:
        return round(start, 3)
    steps = math.floor((after - start) / interval) + 1
    candidate = round(start + steps * interval, 3)
    while candidate <= after:
        steps += 1
        candidate = round(start + steps * interval, 3)
    return candidate


def _number(spec: dict[str, Any], key: str, low: float = 0.0, high: float = LATEST) -> float:
    value = spec.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key} must be a number")
    if not low <= value <= high:
        raise ValueError(f"{key} must be between {low:g} and {high:g}")
    return float(value)


@hookimpl(trylast=True)
def pyoco_next_fire_time(spec: dict[str, Any], after: float) -> float | None:
    """The next fire time of a ``once``, ``interval`` or ``cron`` spec (see the module)."""
    kind = spec.get("kind")
    if kind == "once":
        nxt = round(_number(spec, "run_at"), 3)
        nxt = nxt if nxt > after else math.inf
    elif kind == "interval":
        interval = _number(spec, "interval_seconds", low=MIN_INTERVAL)
        nxt = _interval_next(interval, _number(spec, "start_at"), after)
    elif kind == "cron":
        nxt = _cron_next(parse_cron(spec.get("cron")), zone(spec.get("timezone") or "UTC"), after)
    else:
        return None
    end = spec.get("end_at")
    if (end is not None and nxt > float(end)) or nxt > LATEST:
        return math.inf
    return nxt
