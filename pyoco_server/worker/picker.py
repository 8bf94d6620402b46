"""Which tag's job a host takes next, and when: fair, prompt, never more jobs than free slots.

One loop serves every tag of the host (a puller per tag would let the first tag's puller take
every freed slot back, and the other tags would starve):

* **Wake-ups.** A core-NATS subscription on each tag's work subject sees every job the moment
  it is published, and marks the tag *ready*. An idle host therefore asks the right tag at
  once, whatever the number of tags; nothing polls with long timeouts.
* **No-wait takes.** A ready tag is asked with a no-wait pull request
  (:meth:`~pyoco_server.worker.consumer.TagQueue.take`) for at most as many jobs as there are
  free slots: an un-run job stays in the stream for another worker and never burns a delivery
  attempt here.
* **Round robin.** Ready tags are served in turn, one batch each (a share of the free slots),
  and a tag that may have more goes to the back of the line: while a slot frees up, a waiting
  job on any tag is taken before any other tag gets a second one.
* **Overtaken wake-ups.** The server hands a publish to core subscribers before the stream
  has stored it, so a take right after a wake-up can come back empty: it is retried a few
  times within ~15 ms. Only an empty take marks a tag drained.
* **Safety net.** Jobs can become available without a publish (a NAK with delay, an AckWait
  that ran out, a reconnect): every ``recheck_sec`` the idle host marks every tag ready.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from nats.aio.msg import Msg

from ..config import Settings
from ..log import get_logger
from ..nats_client import NatsConnection, ensure_resources
from .consumer import Delivery, TagQueue

log = get_logger(__name__)

#: Waits after consecutive pull errors (NATS down, stream or consumer missing, ...).
PULL_ERROR_DELAYS_SEC = (0.2, 0.5, 1.0, 2.0)
#: A wake-up can overtake the job it announces: the server passes a publish on to core
#: subscribers before the stream has stored it. A take that comes back short this soon after
#: a wake-up is retried after these delays.
WAKE_RETRY_DELAYS_SEC = (0.0005, 0.001, 0.002, 0.004, 0.008)
#: How long after a wake-up a short take counts as such a race.
WAKE_RACE_SEC = 0.05


class JobPicker:
    """Takes jobs for ``tags`` while slots are free and hands each to ``dispatch``.

    The caller calls :meth:`release` once per dispatched job when its slot is free again.
    """

    def __init__(
        self,
        nats: NatsConnection,
        settings: Settings,
        tags: list[str],
        capacity: int,
        dispatch: Callable[[Delivery], None],
        stop: asyncio.Event,
        *,
        recheck_sec: float = 1.0,
    ) -> None:
        self.nats = nats
        self.settings = settings
        self.queues = {tag: TagQueue(nats, settings, tag) for tag in tags}
        self.capacity = capacity
        self.free = capacity
        self.dispatch = dispatch
        self.stop = stop
        self.recheck_sec = recheck_sec
        #: Tags that may have a waiting job, in the order they are served (a dict as an
        #: ordered set).
        self._ready: dict[str, None] = dict.fromkeys(tags)
        self._changed = asyncio.Event()
        self._wakeups: list[Any] = []
        #: Per tag: when the last wake-up arrived, and retries of short takes since then.
        self._woken_at: dict[str, float] = {}
        self._retries: dict[str, int] = {}

    # -- start-up ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Create every tag's consumer and subscribe the wake-ups (before the host registers)."""
        nc = self.nats.nc
        assert nc is not None
        for tag, queue in self.queues.items():
            await queue.open()
            self._wakeups.append(
                await nc.subscribe(self.settings.work_subject(tag), cb=self._waker(tag))
            )

    def _waker(self, tag: str) -> Callable[[Msg], Any]:
        async def woken(_msg: Msg) -> None:
            self._woken_at[tag] = asyncio.get_running_loop().time()
            self._retries[tag] = 0
            self.mark_ready(tag)

        return woken

    # -- state -------------------------------------------------------------------------------

    def mark_ready(self, tag: str) -> None:
        """``tag`` may have a waiting job."""
        if tag not in self._ready:
            self._ready[tag] = None
            self._changed.set()

    def release(self, count: int = 1) -> None:
        """``count`` slots are free again."""
        self.free += count
        self._changed.set()

    def _share(self) -> int:
        """How many jobs to ask the next tag for: an even share of the free slots."""
        return max(1, self.free // (len(self._ready) + 1))

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Take and dispatch jobs until ``stop`` is set; then unsubscribe."""
        loop = asyncio.get_running_loop()
        recheck_at = loop.time() + self.recheck_sec
        errors = 0
        try:
            while not self.stop.is_set():
                if loop.time() >= recheck_at:
                    recheck_at = loop.time() + self.recheck_sec
                    for tag in self.queues:
                        self.mark_ready(tag)
                if self.free <= 0 or not self._ready:
                    await self._wait(max(0.0, recheck_at - loop.time()))
                    continue
                tag = next(iter(self._ready))
                del self._ready[tag]
                most = self._share()
                self.free -= most
                try:
                    messages = await self.queues[tag].take(most)
                except Exception as exc:
                    self.free += most
                    self.mark_ready(tag)
                    errors += 1
                    await self._after_error(tag, exc, errors)
                    continue
                errors = 0
                self.free += most - len(messages)
                if messages:
                    # There may be more (a no-wait take can come back short of a backlog):
                    # back of the line. Only an empty take means the tag is drained.
                    self.mark_ready(tag)
                else:
                    self._retry_if_overtaken(tag)
                for msg in messages:
                    self.dispatch(Delivery.of(msg, tag, self.queues[tag].max_deliver))
        finally:
            await self._close()

    def _retry_if_overtaken(self, tag: str) -> None:
        """Ask ``tag`` again shortly if its take came back empty right after a wake-up."""
        loop = asyncio.get_running_loop()
        attempt = self._retries.get(tag, 0)
        recent = loop.time() - self._woken_at.get(tag, float("-inf")) < WAKE_RACE_SEC
        if recent and attempt < len(WAKE_RETRY_DELAYS_SEC):
            self._retries[tag] = attempt + 1
            loop.call_later(WAKE_RETRY_DELAYS_SEC[attempt], self._retry_first, tag)

    def _retry_first(self, tag: str) -> None:
        """Put ``tag`` back at the head of the line: its turn was taken by the race."""
        if tag not in self._ready:
            self._ready = {tag: None, **self._ready}
            self._changed.set()

    async def _wait(self, timeout: float) -> None:
        """Until a slot frees, a tag wakes up, ``stop`` is set or ``timeout`` passes."""
        self._changed.clear()
        if self.free > 0 and self._ready:
            return
        stop = asyncio.ensure_future(self.stop.wait())
        changed = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait(
                {stop, changed},
                timeout=timeout if self.free > 0 else None,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            stop.cancel()
            changed.cancel()

    async def _after_error(self, tag: str, exc: Exception, errors: int) -> None:
        delay = PULL_ERROR_DELAYS_SEC[min(errors, len(PULL_ERROR_DELAYS_SEC)) - 1]
        log.warning(
            "pull_failed", tag=tag, error=f"{type(exc).__name__}: {exc}", retry_in_sec=delay
        )
        if errors >= 2:
            # Recreate what is missing (stream, consumer) before the next attempt.
            with contextlib.suppress(Exception):
                await ensure_resources(self.nats.js, self.settings)
                await self.queues[tag].open()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stop.wait(), delay)

    async def _close(self) -> None:
        for subscription in self._wakeups:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        self._wakeups.clear()
        for queue in self.queues.values():
            await queue.close()
