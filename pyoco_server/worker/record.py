"""The worker's liveness record in KV ``pyoco_workers`` (key = worker id).

The bucket has a TTL (``PYOCO_WORKERS_KV_TTL_SEC``) and the record is rewritten every
``PYOCO_WORKER_HEARTBEAT_INTERVAL_SEC`` (always below the TTL), so a worker that vanished
without saying so disappears from the bucket; readers treat an old ``heartbeat_at`` as
DISCONNECTED. State changes (IDLE ⇄ RUNNING) are written promptly but coalesced, so a busy host
does not write its record once per run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from ..log import get_logger

log = get_logger(__name__)

IDLE = "IDLE"
RUNNING = "RUNNING"
STOPPED = "STOPPED"

#: Minimum time between two writes caused by state changes.
RECORD_MIN_GAP_SEC = 0.25


class WorkerRecord:
    """What a worker host tells the world about itself."""

    def __init__(
        self,
        worker_id: str,
        tags: list[str],
        concurrency: int,
        execution_pids: Callable[[], list[int]] = list,
    ) -> None:
        self.worker_id = worker_id
        self.instance_id = uuid.uuid4().hex
        self.tags = list(tags)
        self.concurrency = concurrency
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self.started_at = time.time()
        self.stopping = False
        self.execution_pids = execution_pids
        self._current: dict[str, None] = {}
        self._changed = asyncio.Event()

    @property
    def current_run_ids(self) -> list[str]:
        return list(self._current)

    def run_started(self, run_id: str) -> None:
        self._current[run_id] = None
        self._changed.set()

    def run_finished(self, run_id: str) -> None:
        self._current.pop(run_id, None)
        self._changed.set()

    def wake(self) -> None:
        """Make :meth:`keep_fresh` look at its stop event now."""
        self._changed.set()

    def as_dict(self, state: str | None = None) -> dict[str, Any]:
        current = self.current_run_ids
        return {
            "worker_id": self.worker_id,
            "instance_id": self.instance_id,
            "state": state or (RUNNING if current else IDLE),
            "tags": self.tags,
            "current_run_id": current[0] if current else None,
            "current_run_ids": current,
            "heartbeat_at": time.time(),
            "started_at": self.started_at,
            "hostname": self.hostname,
            "pid": self.pid,
            "concurrency": self.concurrency,
            "execution_pids": self.execution_pids(),
            "stopping": self.stopping,
        }

    async def write(self, kv: Any, state: str | None = None) -> None:
        data = json.dumps(self.as_dict(state), separators=(",", ":")).encode()
        await kv.put(self.worker_id, data)

    async def keep_fresh(
        self, kv_of: Callable[[], Awaitable[Any]], stop: asyncio.Event, interval: float
    ) -> None:
        """Rewrite the record every ``interval`` and soon after each state change."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            self._changed.clear()
            try:
                await self.write(await kv_of())
            except Exception as exc:
                log.warning("worker_record_write_failed", error=f"{type(exc).__name__}: {exc}")
            written = loop.time()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), interval)
            gap = RECORD_MIN_GAP_SEC - (loop.time() - written)
            if gap > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), gap)
