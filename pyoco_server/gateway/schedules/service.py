"""The schedules part of a gateway: buckets, dispatcher, repair pass and metrics."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ...log import get_logger
from ...nats_client import NatsUnavailable
from .dispatcher import Dispatcher
from .metrics import ScheduleMetrics
from .repair import Repair
from .store import ScheduleStore, ensure_buckets

log = get_logger(__name__)


class SchedulesService:
    """One per gateway application (``services.schedules``)."""

    def __init__(self, services: Any) -> None:
        self.services = services
        self.settings = services.settings
        self.metrics = ScheduleMetrics()
        self.loaded = asyncio.Event()
        self._buckets: tuple[Any, Any] | None = None
        self.dispatcher = Dispatcher(services, self.metrics)
        self.repair = Repair(services, self.dispatcher)

    async def buckets(self) -> tuple[Any, Any]:
        """The schedules and workflows buckets (created on first use)."""
        if self._buckets is None:
            self._buckets = await ensure_buckets(self.services.nats.js, self.settings)
        return self._buckets

    async def store(self) -> ScheduleStore:
        """The schedule store (raises ``NatsUnavailable`` while NATS is down)."""
        kv, workflows = await self.buckets()
        if not self.services.nats.connected:
            raise NatsUnavailable("NATS is not connected")
        return ScheduleStore(kv, workflows)

    def tasks(self, stop: asyncio.Event) -> list[Any]:
        """The background coroutines: the watch, the dispatch loop and the repair pass
        (none with ``PYOCO_SCHEDULES_ENABLED=false``: that gateway serves the API only)."""
        if not self.settings.schedules_enabled:
            return []
        return [self._follow(stop), self.dispatcher.run(stop), self._repair(stop)]

    async def _follow(self, stop: asyncio.Event) -> None:
        while not stop.is_set() and not self.services.nats.connected:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
        await self.dispatcher.follow(stop)

    async def _repair(self, stop: asyncio.Event) -> None:
        interval = self.settings.reconcile_interval_sec
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            if stop.is_set() or not self.services.nats.connected or self.dispatcher.store is None:
                continue
            try:
                await self.repair.repair_once()
            except Exception as exc:
                log.warning("schedule_repair_failed", error=f"{type(exc).__name__}: {exc}")
