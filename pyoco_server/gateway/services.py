"""What the gateway's resources share: settings, plugins, NATS and the stores built on it."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ..config import Settings
from ..nats_client import NatsConnection
from ..run_store import RunStore
from .error_responses import nats_unavailable
from .idempotency import IdempotencyStore
from .run_index import RunIndex, RunIndexFeed
from .run_index_files import open_index
from .workers import list_workers

#: How long start-up waits for NATS before serving anyway (requests then get 503 until ready).
STARTUP_NATS_WAIT_SEC = 5.0
#: How long :meth:`GatewayServices.workers` reuses a read of the workers bucket.
WORKERS_CACHE_SEC = 1.0


class GatewayServices:
    """One per application: the NATS connection, the run index and handles to the buckets.

    The reconciler and the watch streams' registry are built beside it by
    :func:`~pyoco_server.gateway.app.create_app`, which hands them what they use."""

    def __init__(self, settings: Settings, pm: Any) -> None:
        self.settings = settings
        self.pm = pm
        self.nats = NatsConnection(
            settings,
            name="pyoco-server:http",
            request_timeout=settings.http_nats_timeout_sec,
        )
        self.index = open_index(settings)
        self.index_feed = RunIndexFeed(self.nats, settings, self.index)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._workers_cache: tuple[float, list[dict[str, Any]]] | None = None

    async def start(self) -> None:
        """Connect to NATS (in the background; waits a little for it) and start following the
        runs bucket."""
        self._stop = asyncio.Event()
        await self.nats.start()
        await self.nats.wait_ready(timeout=STARTUP_NATS_WAIT_SEC)
        self._tasks = [asyncio.get_running_loop().create_task(self.index_feed.run(self._stop))]

    async def stop(self) -> None:
        """Stop the background loops and close the NATS connection (bounded)."""
        self._stop.set()
        if self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait(self._tasks, timeout=5)
        await self.nats.stop()
        self.index_feed.close()

    async def fresh_index(self) -> RunIndex:
        """The run index, caught up with every write committed before this call.

        Bounded: answers 503 when NATS is down or the index cannot catch up in time (for
        example while a large bucket is still being replayed after start-up).
        """
        try:
            await asyncio.wait_for(self.index_feed.sync(), self.settings.http_nats_timeout_sec * 2)
        except asyncio.TimeoutError as exc:
            raise nats_unavailable(
                "the run index is still catching up with NATS; retry shortly"
            ) from exc
        return self.index

    async def query_index(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call the run index's ``method`` on the index's own thread, after catching up with
        every write committed before this call (see :meth:`fresh_index`)."""
        index = await self.fresh_index()
        return await self.index_feed.call(getattr(index, method), *args, **kwargs)

    async def call_index(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call the run index's ``method`` on the index's own thread, without catching up
        (for writes of the gateway's own figures)."""
        return await self.index_feed.call(getattr(self.index, method), *args, **kwargs)

    async def run_store(self) -> RunStore:
        """The run store (raises ``NatsUnavailable`` while NATS is down)."""
        return RunStore(await self.nats.kv(self.settings.runs_kv_bucket), self.pm, self.settings)

    async def workers_kv(self) -> Any:
        """The worker liveness bucket."""
        return await self.nats.kv(self.settings.workers_kv_bucket)

    async def workers(self) -> list[dict[str, Any]]:
        """Every listed worker (see :func:`~.workers.list_workers`), read at most once per
        :data:`WORKERS_CACHE_SEC`."""
        now = asyncio.get_running_loop().time()
        cached = self._workers_cache
        if cached is not None and now - cached[0] < WORKERS_CACHE_SEC:
            return cached[1]
        workers = await list_workers(self.nats.js, self.settings)
        self._workers_cache = (now, workers)
        return workers

    async def idempotency(self) -> IdempotencyStore:
        """The ``Idempotency-Key`` store."""
        return IdempotencyStore(await self.nats.kv(self.settings.idempotency_kv_bucket))
