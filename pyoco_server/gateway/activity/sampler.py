"""Sample the work queue's depth per tag into the run index, once every few seconds.

One ``stream_info`` (subjects with messages) and one ``consumers_info`` (tags with a durable
consumer, so a queue that emptied is sampled as 0) per sample: O(tags), whatever the load.
Each gateway keeps its own samples (a gateway started an hour ago shows an hour of history).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from ...log import get_logger

if TYPE_CHECKING:
    from ..services import GatewayServices

log = get_logger(__name__)

#: Seconds between two samples (the last one of each minute is kept).
SAMPLE_INTERVAL_SEC = 15.0
#: Minutes of activity kept (a day, plus an hour of slack).
KEEP_MINUTES = 25 * 60


async def queue_depths(services: GatewayServices) -> dict[str, int]:
    """Messages waiting per tag in the work queue now (tags with a consumer included)."""
    settings = services.settings
    js = services.nats.js
    prefix = settings.work_subject_prefix + "."
    work, consumers = await asyncio.gather(
        js.stream_info(settings.work_stream, subjects_filter=prefix + ">"),
        js.consumers_info(settings.work_stream),
    )
    depths = {
        subject[len(prefix) :]: count
        for subject, count in (work.state.subjects or {}).items()
        if subject.startswith(prefix)
    }
    for consumer in consumers:
        subject = consumer.config.filter_subject or ""
        if subject.startswith(prefix) and consumer.config.durable_name:
            depths.setdefault(subject[len(prefix) :], 0)
    return depths


class QueueDepthSampler:
    """The sampling loop of one gateway."""

    def __init__(self, services: GatewayServices, interval: float = SAMPLE_INTERVAL_SEC) -> None:
        self.services = services
        self.interval = interval
        self._last_sample = 0.0

    async def sample_once(self) -> dict[str, int]:
        """Take one sample and forget figures older than :data:`KEEP_MINUTES`."""
        depths = await queue_depths(self.services)
        self._last_sample = time.monotonic()
        minute = int(time.time() // 60)
        await self.services.call_index("record_queue_depth", minute, depths)
        await self.services.call_index("forget_activity_before", minute - KEEP_MINUTES)
        return depths

    async def sample_if_older_than(self, seconds: float) -> None:
        """Sample now unless the last sample is at most ``seconds`` old (a chart being looked
        at shows the queues as they are, not as they were up to an interval ago)."""
        if time.monotonic() - self._last_sample > seconds:
            await self.sample_once()

    async def run(self, stop: asyncio.Event) -> None:
        """Sample every ``interval`` while connected, until ``stop``."""
        while not stop.is_set():
            if self.services.nats.connected:
                try:
                    await self.sample_once()
                except Exception as exc:
                    log.warning("queue_depth_sample_failed", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
