"""The schedules part of a gateway: buckets, dispatcher, repair pass and metrics.

Built by :func:`~pyoco_server.gateway.app.create_app` beside the gateway's services, started
and stopped with them.
"""

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
    """One per gateway application."""

    def __init__(self, services: Any) -> None:
        self.services = services
        self.settings = services.settings
        self.metrics = ScheduleMetrics()
        self.loaded = asyncio.Event()
        self._buckets: tuple[Any, Any] | None = None
        self.dispatcher = Dispatcher(services, self.metrics, self.buckets, self.loaded)
        self.repair = Repair(services, self.dispatcher)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

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

    def register_metrics(self, registry: Any) -> None:
        """Add the schedule figures to the gateway's ``/metrics`` registry."""
        for collector in self.metrics.collectors():
            registry.register(collector)

    async def start(self) -> None:
        """Start the watch, the dispatch loop and the repair pass (none with
        ``PYOCO_SCHEDULES_ENABLED=false``: that gateway serves the API only)."""
        if not self.settings.schedules_enabled:
            return
        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._follow()),
            loop.create_task(self.dispatcher.run(self._stop)),
            loop.create_task(self._repair()),
        ]

    async def stop(self) -> None:
        """Stop the background loops (bounded)."""
        self._stop.set()
        if self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait(self._tasks, timeout=5)

    async def _follow(self) -> None:
        while not self._stop.is_set() and not self.services.nats.connected:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.5)
        await self.dispatcher.follow(self._stop)

    async def _repair(self) -> None:
        interval = self.settings.reconcile_interval_sec
        while not self._stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval)
            if (
                self._stop.is_set()
                or not self.services.nats.connected
                or self.dispatcher.store is None
            ):
                continue
            try:
                await self.repair.repair_once()
            except Exception as exc:
                log.warning("schedule_repair_failed", error=f"{type(exc).__name__}: {exc}")
