"""Give the 0.5.1 baseline worker Python 3.12's ``asyncio.wait_for`` on CPython 3.11.

pyoco-server 0.5.1's worker cancels its heartbeat task after every run and awaits it. On 3.11,
``asyncio.wait_for`` (used by nats-py for every request) can swallow a cancellation that
arrives as its inner await completes (CPython gh-86296, fixed in 3.12 by rewriting
``wait_for`` on top of ``asyncio.timeout``). The heartbeat task then never ends and the worker
wedges after a few runs, so a side-by-side drain on this machine's 3.11 measures nothing.

This file is put on the baseline's ``PYTHONPATH`` only by benchmarks/worker_defaults.py. It
replaces ``asyncio.wait_for`` with the 3.12 semantics (``asyncio.timeout`` exists since 3.11)
and touches nothing else, so 0.5.1 runs as it would on 3.12.
"""

import asyncio
import sys

if sys.version_info < (3, 12):

    async def _wait_for_312(awaitable, timeout):  # type: ignore[no-untyped-def]
        if timeout is not None and timeout <= 0:
            task = asyncio.ensure_future(awaitable)
            if task.done():
                return task.result()
            task.cancel()
            try:
                await task
            except asyncio.CancelledError as exc:
                raise TimeoutError from exc
            raise TimeoutError
        async with asyncio.timeout(timeout):
            return await awaitable

    asyncio.wait_for = _wait_for_312
    asyncio.tasks.wait_for = _wait_for_312
