"""When runs end, seen from a KV watch on the runs bucket (no polling); usable without pytest."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from ..model import is_terminal

#: Bytes only a terminal snapshot's JSON can hold: other writes are not parsed at all, so the
#: watcher costs little CPU beside the processes a benchmark measures.
TERMINAL_MARKERS = (b'"COMPLETED"', b'"FAILED"', b'"CANCELLED"')


class TerminalRuns:
    """The runs of a bucket that ended: when each was first seen terminal (``at``, from
    :func:`time.perf_counter`) and with which status (``status``)."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.status: dict[str, str] = {}
        self._watcher: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, kv: Any) -> None:
        """Follow every key of ``kv`` (the runs bucket), starting with what it holds."""
        self._watcher = await kv.watchall()
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        async for entry in self._watcher:
            if entry is None or not entry.value or entry.key in self.at:
                continue
            if not any(marker in entry.value for marker in TERMINAL_MARKERS):
                continue
            status = json.loads(entry.value).get("status")
            if is_terminal(status):
                self.at[entry.key] = time.perf_counter()
                self.status[entry.key] = status

    def terminal(self) -> int:
        """How many runs ended so far."""
        return len(self.at)

    async def wait_terminal(self, count: int, timeout: float) -> None:
        """Until ``count`` runs ended; ``TimeoutError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.terminal() < count:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"only {self.terminal()} of {count} runs terminal")
            await asyncio.sleep(0.005)

    async def wait(self, run_ids: list[str], timeout: float) -> float:
        """When the last of ``run_ids`` ended (every one must be COMPLETED)."""
        deadline = time.monotonic() + timeout
        while any(run_id not in self.at for run_id in run_ids):
            if time.monotonic() > deadline:
                missing = sum(1 for run_id in run_ids if run_id not in self.at)
                raise TimeoutError(f"{missing} runs did not finish in {timeout}s")
            await asyncio.sleep(0.005)
        failed = [run_id for run_id in run_ids if self.status[run_id] != "COMPLETED"]
        if failed:
            raise AssertionError(f"{len(failed)} runs did not complete, e.g. {failed[0]}")
        return max(self.at[run_id] for run_id in run_ids)

    async def stop(self) -> None:
        """Stop the watch (bounded)."""
        if self._watcher is not None:
            await self._watcher.stop()
        if self._task is not None:
            await asyncio.wait([self._task], timeout=5)
