"""Pulling jobs: one durable pull consumer per tag, shared by every worker serving the tag.

Each tag has a :class:`TagPuller`. Before it fetches, a puller reserves free execution slots
(:class:`Slots`), so a host never holds more jobs than it can run: an un-run job stays in the
stream for another worker instead of waiting here while its AckWait ticks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from ..config import Settings
from ..log import get_logger
from ..nats_client import NatsConnection, ensure_resources

log = get_logger(__name__)

#: Waits after consecutive pull errors (NATS down, stream missing, ...).
PULL_ERROR_DELAYS_SEC = (0.2, 0.5, 1.0, 2.0)
#: Pause of a puller of several tags after an empty fetch, so the others get their turn.
TURN_YIELD_SEC = 0.02


def consumer_config(settings: Settings, tag: str) -> ConsumerConfig:
    name = settings.consumer_name(tag)
    return ConsumerConfig(
        name=name,
        durable_name=name,
        filter_subject=settings.work_subject(tag),
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.consumer_ack_wait_sec,
        max_deliver=settings.consumer_max_deliver,
        max_ack_pending=settings.consumer_max_ack_pending,
    )


async def ensure_consumer(js: Any, settings: Settings, tag: str) -> int:
    """Create the tag's durable consumer if missing (warn about differing settings).

    Returns the consumer's MaxDeliver as the server has it (an existing consumer is used as
    it is, so that is what decides the last delivery).
    """
    wanted = consumer_config(settings, tag)
    try:
        info = await js.consumer_info(settings.work_stream, wanted.durable_name)
    except NotFoundError:
        try:
            info = await js.add_consumer(settings.work_stream, config=wanted)
            log.info("nats_consumer_created", consumer=wanted.durable_name, tag=tag)
        except Exception:
            # Another worker may have created it at the same moment.
            info = await js.consumer_info(settings.work_stream, wanted.durable_name)
    current = info.config
    for key in ("ack_wait", "max_deliver", "max_ack_pending", "filter_subject"):
        have, want = getattr(current, key), getattr(wanted, key)
        if have != want and not (
            isinstance(want, float) and have is not None and abs(float(have) - want) < 1e-6
        ):
            log.warning(
                "nats_resource_setting_differs",
                resource=f"consumer {wanted.durable_name}",
                setting=key,
                existing=str(have),
                configured=str(want),
            )
    return int(current.max_deliver or settings.consumer_max_deliver)


@dataclass
class Delivery:
    """One delivered job message and what the worker knows about its delivery."""

    msg: Msg
    tag: str
    num_delivered: int
    max_deliver: int

    @classmethod
    def of(cls, msg: Msg, tag: str, max_deliver: int) -> Delivery:
        try:
            num_delivered = msg.metadata.num_delivered or 1
        except Exception:
            num_delivered = 1
        return cls(msg, tag, num_delivered, max_deliver)

    @property
    def stream_seq(self) -> int | None:
        try:
            return self.msg.metadata.sequence.stream
        except Exception:
            return None

    async def settle(self, action: str, delay_sec: float | None = None) -> None:
        """ACK, NAK (optionally delayed) or TERM the message; errors are logged, not raised."""
        try:
            if action == "ack":
                await self.msg.ack()
            elif action == "nak":
                await self.msg.nak(delay=delay_sec)
            elif action == "term":
                await self.msg.term()
            else:
                raise ValueError(f"unknown queue action {action!r}")
        except Exception as exc:
            log.warning("queue_action_failed", action=action, error=f"{type(exc).__name__}: {exc}")


class Slots:
    """Free execution capacity of the host, reserved by pullers before they fetch."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.free = capacity
        self._released = asyncio.Event()

    async def reserve(self, most: int, stop: asyncio.Event, poll: float = 0.5) -> int:
        """Take up to ``most`` free slots, waiting for at least one; 0 once ``stop`` is set."""
        while not stop.is_set():
            if self.free > 0:
                taken = min(most, self.free)
                self.free -= taken
                return taken
            self._released.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._released.wait(), poll)
        return 0

    def release(self, count: int = 1) -> None:
        if count > 0:
            self.free += count
            self._released.set()


class TagPuller:
    """The pull loop of one tag: reserve slots, fetch, hand each job to ``dispatch``."""

    def __init__(
        self,
        nats: NatsConnection,
        settings: Settings,
        tag: str,
        slots: Slots,
        dispatch: Callable[[Delivery], None],
        stop: asyncio.Event,
        *,
        share: int = 1,
        poll_timeout: float = 1.0,
    ) -> None:
        self.nats = nats
        self.settings = settings
        self.tag = tag
        self.slots = slots
        self.dispatch = dispatch
        self.stop = stop
        self.share = share
        self.poll_timeout = poll_timeout
        self.max_deliver = settings.consumer_max_deliver
        self._subscription: Any = None

    async def _subscribe(self) -> Any:
        js = self.nats.js
        self.max_deliver = await ensure_consumer(js, self.settings, self.tag)
        return await js.pull_subscribe_bind(
            consumer=self.settings.consumer_name(self.tag), stream=self.settings.work_stream
        )

    async def _heal(self) -> None:
        """After repeated errors: recreate missing resources and subscribe again."""
        old, self._subscription = self._subscription, None
        if old is not None:
            with contextlib.suppress(Exception):
                await old.unsubscribe()
        with contextlib.suppress(Exception):
            await ensure_resources(self.nats.js, self.settings)

    def _batch(self) -> int:
        """How many slots to ask for: all free ones for a single tag, a share with several."""
        if self.share > 1:
            return max(1, self.slots.free // self.share)
        return self.slots.capacity

    async def run(self) -> None:
        """Pull until ``stop`` is set."""
        errors = 0
        while not self.stop.is_set():
            reserved = await self.slots.reserve(self._batch(), self.stop)
            if not reserved:
                return
            try:
                if self._subscription is None:
                    self._subscription = await self._subscribe()
                messages = await self._subscription.fetch(reserved, timeout=self.poll_timeout)
                errors = 0
            except asyncio.TimeoutError:  # nothing to do (nats' TimeoutError subclasses it)
                self.slots.release(reserved)
                if self.share > 1:
                    # Yield the slots to the other tags' pullers, which wait for a release:
                    # re-reserving at once would starve them when slots are scarce.
                    await asyncio.sleep(TURN_YIELD_SEC)
                continue
            except Exception as exc:
                self.slots.release(reserved)
                errors += 1
                delay = PULL_ERROR_DELAYS_SEC[min(errors, len(PULL_ERROR_DELAYS_SEC)) - 1]
                log.warning(
                    "pull_failed",
                    tag=self.tag,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_sec=delay,
                )
                if errors >= 2:
                    await self._heal()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), delay)
                continue
            self.slots.release(reserved - len(messages))
            for msg in messages:
                delivery = Delivery.of(msg, self.tag, self.max_deliver)
                if self.stop.is_set():
                    # Fetched while shutting down: hand it straight back to the queue.
                    await delivery.settle("nak")
                    self.slots.release()
                    continue
                self.dispatch(delivery)
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
