"""The ``updated_at`` ordering of the run index, and the local calendar day of a write.

The run index orders runs by the stream sequence of their latest write, which is update order
as JetStream saw it. Delta listings (``GET /runs?updated_after=``) compare the snapshots' own
``updated_at`` clocks, which writers on different hosts stamp, so they need an ordering by that
value (then by run id, to break ties) to stop exactly at the bound: the index stores it as a
column with indexes of its own (:meth:`~..run_index.RunIndex.select_delta`). The index also
counts runs by local day of ``updated_at`` and status (``pyoco_runs_today_total``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

#: The position of a run in this ordering: ``(updated_at, run_id)``.
UpdatedKey = tuple[float, str]
#: A local calendar day: ``(year, month, day)``.
Day = tuple[int, int, int]


def updated_at_of(summary: dict[str, Any]) -> float:
    """A summary's ``updated_at`` as a finite number (0.0 when missing or not a number)."""
    value = summary.get("updated_at")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    value = float(value)
    return value if math.isfinite(value) else 0.0


def local_day(epoch: float) -> Day:
    """The server's local calendar day of an epoch timestamp."""
    parts = time.localtime(epoch)
    return parts.tm_year, parts.tm_mon, parts.tm_mday


def day_number(day: Day) -> int:
    """A day as the integer ``YYYYMMDD`` (the index's column value)."""
    year, month, mday = day
    return year * 10_000 + month * 100 + mday


#: Local midnight and daylight-saving changes fall on quarter hours in every time zone, so all
#: instants of one quarter hour share a local day: :class:`LocalDays` caches days per quarter
#: hour instead of converting every write's timestamp.
QUARTER_HOUR_SEC = 900
#: Quarter hours remembered before the cache starts again (about 100 days' worth).
DAY_CACHE_ENTRIES = 10_000


class LocalDays:
    """:func:`local_day` (or ``day_of``) with a cache per quarter hour; call it with an epoch."""

    def __init__(self, day_of: Callable[[float], Day] = local_day) -> None:
        self.day_of = day_of
        self._cache: dict[int, Day] = {}

    def __call__(self, epoch: float) -> Day:
        quarter = int(epoch // QUARTER_HOUR_SEC)
        day = self._cache.get(quarter)
        if day is None:
            if len(self._cache) >= DAY_CACHE_ENTRIES:
                self._cache.clear()
            day = self._cache[quarter] = self.day_of(quarter * QUARTER_HOUR_SEC)
        return day
