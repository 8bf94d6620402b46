"""What a schedule fires when its dispatcher looks at it: a pure function of (cursor, now).

The *cursor* is the last nominal time the schedule handled (fired, skipped or counted as
missed). Every nominal time in ``(cursor, now]`` is due:

* slots at most ``PYOCO_SCHEDULE_MISFIRE_GRACE_SEC`` old are **on time** and all fire (this
  absorbs ordinary dispatcher lag without calling it downtime);
* older slots are **late** (the gateways were down or paused) and the catch-up policy
  decides: ``latest`` fires only the newest late slot, and only when no on-time slot fires
  (one run for the whole gap); ``all`` fires the newest ``max_catchup`` late slots inside the
  catch-up window; ``skip`` fires none. Every late slot that does not fire is counted as
  *missed*; slots older than the window always are.

Nothing here reads a clock: the dispatcher passes ``now``, tests pass any time they like.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .spec import Policies
from .timing import fire_times

#: Most on-time slots fired in one look (a 1 s interval and a 10 s grace give about 10).
MAX_ON_TIME = 1000
#: Missed slots are counted exactly up to this many per look (``missed_capped`` beyond).
MAX_COUNTED = 10_000


@dataclass
class Plan:
    """The outcome of one look at a schedule."""

    fire: list[float] = field(default_factory=list)
    late_fired: int = 0
    missed: int = 0
    missed_capped: bool = False
    cursor: float = 0.0


def count_slots(pm: Any, spec: dict[str, Any], low: float, high: float) -> tuple[int, bool]:
    """How many nominal times lie in ``(low, high]``; ``(count, capped)``.

    Arithmetic for intervals; an enumeration capped at :data:`MAX_COUNTED` otherwise.
    """
    if high <= low:
        return 0, False
    if spec.get("kind") == "interval":
        interval = float(spec["interval_seconds"])
        start = float(spec["start_at"])
        end = spec.get("end_at")
        top = min(high, float(end)) if end is not None else high
        if top < start:
            return 0, False

        def upto(moment: float) -> int:  # slots at or before ``moment``
            return 0 if moment < start else math.floor((moment - start) / interval + 1e-9) + 1

        return max(0, upto(top) - upto(low)), False
    found = fire_times(pm, spec, low, until=high, limit=MAX_COUNTED + 1)
    return min(len(found), MAX_COUNTED), len(found) > MAX_COUNTED


def newest_slots(pm: Any, spec: dict[str, Any], low: float, high: float, count: int) -> list[float]:
    """Up to ``count`` newest nominal times in ``(low, high]``, oldest first.

    The hook only walks forward, so the search starts just before ``high`` and widens (x8)
    until it holds ``count`` slots or reaches ``low``: dense and sparse triggers both cost
    O(count) hook calls, never a walk over a whole outage.
    """
    if high <= low or count <= 0:
        return []
    width = 1.0
    budget = 8 * count + 8
    while True:
        start = max(low, high - width)
        found = fire_times(pm, spec, start, until=high, limit=budget)
        while len(found) >= budget:  # denser than expected: walk on, keeping the newest
            found = found[-count:] + fire_times(pm, spec, found[-1], until=high, limit=budget)
        if len(found) >= count or start <= low:
            return found[-count:]
        width *= 8


def plan(
    pm: Any,
    spec: dict[str, Any],
    policies: Policies,
    cursor: float,
    now: float,
    grace: float,
) -> Plan:
    """What to fire at ``now`` for a schedule whose cursor is ``cursor``."""
    result = Plan(cursor=max(cursor, now))
    if now <= cursor:
        result.cursor = cursor
        return result
    on_time_low = max(cursor, now - grace)
    result.fire = newest_slots(pm, spec, on_time_low, now, MAX_ON_TIME)
    late_high = on_time_low
    late_total, capped = count_slots(pm, spec, cursor, late_high)
    late_fire: list[float] = []
    if late_total:
        window_low = max(cursor, now - policies.catchup_window_sec)
        if policies.catchup == "all":
            late_fire = newest_slots(pm, spec, window_low, late_high, policies.max_catchup)
        elif policies.catchup == "latest" and not result.fire:
            late_fire = newest_slots(pm, spec, window_low, late_high, 1)
    result.fire = late_fire + result.fire
    result.late_fired = len(late_fire)
    result.missed = max(0, late_total - len(late_fire))
    result.missed_capped = capped
    return result
