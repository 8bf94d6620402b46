"""A second ordering of the run index: by ``updated_at`` (then run id), per tenant, plus the
number of runs per status updated on each local calendar day.

The run index orders runs by the stream sequence of their latest write, which is update order
as JetStream saw it. Delta listings (``GET /runs?updated_after=``) compare the snapshots' own
``updated_at`` clocks, which writers on different hosts stamp, so they need an ordering by that
value to stop exactly at the bound; this view keeps it beside the sequence ordering. The index
calls :meth:`UpdatedOrder.add` and :meth:`UpdatedOrder.discard` on every write (O(log n)).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from sortedcontainers import SortedList

#: The position of a run in this ordering: ``(updated_at, run_id)``.
UpdatedKey = tuple[float, str]


def updated_at_of(summary: dict[str, Any]) -> float:
    """A summary's ``updated_at`` as a finite number (0.0 when missing or not a number)."""
    value = summary.get("updated_at")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    value = float(value)
    return value if math.isfinite(value) else 0.0


def local_day(epoch: float) -> tuple[int, int, int]:
    """The server's local calendar day of an epoch timestamp, as ``(year, month, day)``."""
    parts = time.localtime(epoch)
    return parts.tm_year, parts.tm_mon, parts.tm_mday


#: Local midnight and daylight-saving changes fall on quarter hours in every time zone, so all
#: instants of one quarter hour share a local day: :class:`UpdatedOrder` caches days per
#: quarter hour instead of converting every write's timestamp.
QUARTER_HOUR_SEC = 900
#: Quarter hours remembered before the cache starts again (about 100 days' worth).
DAY_CACHE_ENTRIES = 10_000


class UpdatedOrder:
    """Runs ordered by ``(updated_at, run_id)`` — overall and per tenant — and counts of all
    runs by local day of ``updated_at`` and status."""

    def __init__(self, day_of: Callable[[float], tuple[int, int, int]] = local_day) -> None:
        self._day_of = day_of
        self._all: SortedList = SortedList()
        self._by_tenant: dict[str, SortedList] = {}
        self._days: dict[tuple[int, int, int], Counter[str]] = {}
        self._day_cache: dict[int, tuple[int, int, int]] = {}

    def _day(self, epoch: float) -> tuple[int, int, int]:
        quarter = int(epoch // QUARTER_HOUR_SEC)
        day = self._day_cache.get(quarter)
        if day is None:
            if len(self._day_cache) >= DAY_CACHE_ENTRIES:
                self._day_cache.clear()
            day = self._day_cache[quarter] = self._day_of(quarter * QUARTER_HOUR_SEC)
        return day

    def add(self, run_id: str, tenant_id: str | None, summary: dict[str, Any]) -> None:
        """Record a run's (new) summary; call :meth:`discard` for its old one first."""
        key = (updated_at_of(summary), run_id)
        self._all.add(key)
        if tenant_id is not None:
            self._by_tenant.setdefault(tenant_id, SortedList()).add(key)
        day = self._day(key[0])
        counts = self._days.get(day)
        if counts is None:
            counts = self._days[day] = Counter()
        counts[summary.get("status") or ""] += 1

    def discard(self, run_id: str, tenant_id: str | None, summary: dict[str, Any]) -> None:
        """Forget the summary recorded by :meth:`add` (same arguments)."""
        key = (updated_at_of(summary), run_id)
        self._all.discard(key)
        if tenant_id is not None:
            keys = self._by_tenant.get(tenant_id)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_tenant[tenant_id]
        day = self._day(key[0])
        counts = self._days.get(day)
        if counts is not None:
            counts[summary.get("status") or ""] -= 1
            if not +counts:
                del self._days[day]

    def newest_first(
        self,
        tenant_id: str | None,
        *,
        after: float | None = None,
        before: UpdatedKey | None = None,
    ) -> Iterator[UpdatedKey]:
        """Keys newest first: only ``updated_at > after`` and only keys below ``before``
        (both exclusive); ``tenant_id=None`` walks every run. Costs O(log n + keys walked)."""
        keys = self._all if tenant_id is None else self._by_tenant.get(tenant_id)
        if not keys:
            return iter(())
        minimum = None if after is None else (math.nextafter(after, math.inf),)
        return keys.irange(minimum=minimum, maximum=before, inclusive=(True, False), reverse=True)

    def updated_on(self, day: tuple[int, int, int]) -> dict[str, int]:
        """How many runs, by status, have their latest write on ``day`` (a :func:`local_day`)."""
        counts = self._days.get(day) or Counter()
        return {status: n for status, n in counts.items() if n > 0 and status}
