"""The gateway's background loops beside the reconciler: retention sweeping, the
``pyoco_run_finished`` deliveries and the queue depth samples of the charts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

#: How long shutdown waits for the loops to notice the stop event.
STOP_TIMEOUT_SEC = 5.0

Loop = Callable[[asyncio.Event], Awaitable[None]]


class BackgroundLoops:
    """Runs each ``loop(stop)`` as a task from :meth:`start` until :meth:`stop` sets the
    event; every loop waits on it with a bounded wait, so none needs a cancellation."""

    def __init__(self, *loops: Loop) -> None:
        self.loops = loops
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(run(self._stop)) for run in self.loops]

    async def stop(self) -> None:
        self._stop.set()
        if self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_SEC)
