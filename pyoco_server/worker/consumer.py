"""The tags' work queues: one durable pull consumer per tag, shared by every worker serving it.

:class:`TagQueue` takes jobs from one tag's consumer with *no-wait* pull requests: the server
answers at once with the jobs it has (up to the number asked for) and never keeps a request
open, so a job is delivered only to a host that asked for it with a free execution slot, and
never to a request the host has given up on (which would cost the job a delivery attempt).
Which tag to ask, and when, is decided by :class:`~pyoco_server.worker.picker.JobPicker`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from ..config import Settings
from ..log import get_logger
from ..nats_client import NatsConnection

log = get_logger(__name__)

#: How long a no-wait pull request may take to be answered before it counts as failed.
TAKE_TIMEOUT_SEC = 2.0
#: Status codes that end a no-wait pull request normally (no messages / request expired).
_END_STATUSES = {"404", "408"}
#: A heartbeat status: not an answer.
_HEARTBEAT_STATUS = "100"


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


class PullRequestFailed(RuntimeError):
    """The server answered a pull request with an error status (consumer or stream gone, ...)."""


class TagQueue:
    """One tag's durable consumer: :meth:`take` up to *n* waiting jobs without waiting.

    :meth:`open` creates the consumer if needed (at start, before the worker registers, so
    a client that sees the worker can rely on every tag being served).
    """

    def __init__(self, nats: NatsConnection, settings: Settings, tag: str) -> None:
        self.nats = nats
        self.settings = settings
        self.tag = tag
        self.max_deliver = settings.consumer_max_deliver
        self._inbox = ""
        self._subscription: Any = None
        self._received: asyncio.Queue[Msg] = asyncio.Queue()

    @property
    def _next_subject(self) -> str:
        prefix = getattr(self.nats.js, "_prefix", "$JS.API")
        consumer = self.settings.consumer_name(self.tag)
        return f"{prefix}.CONSUMER.MSG.NEXT.{self.settings.work_stream}.{consumer}"

    async def open(self) -> None:
        """Create the consumer if missing and subscribe the inbox its deliveries go to."""
        self.max_deliver = await ensure_consumer(self.nats.js, self.settings, self.tag)
        if self._subscription is None:
            nc = self.nats.nc
            assert nc is not None
            self._inbox = nc.new_inbox()
            self._subscription = await nc.subscribe(self._inbox, cb=self._deliver)

    async def _deliver(self, msg: Msg) -> None:
        self._received.put_nowait(msg)

    async def take(self, most: int) -> list[Msg]:
        """Up to ``most`` jobs waiting on the tag (none: an empty list), without waiting.

        Raises :class:`PullRequestFailed` for an error status and :class:`asyncio.TimeoutError`
        when the server did not answer within :data:`TAKE_TIMEOUT_SEC`.
        """
        messages: list[Msg] = []
        # A late answer to a request that timed out: its jobs were delivered, so run them.
        while not self._received.empty() and len(messages) < most:
            msg = self._received.get_nowait()
            if _status(msg) is None:
                messages.append(msg)
        if len(messages) >= most:
            return messages
        nc = self.nats.nc
        assert nc is not None
        request = {"batch": most - len(messages), "no_wait": True}
        await nc.publish(self._next_subject, json.dumps(request).encode(), reply=self._inbox)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TAKE_TIMEOUT_SEC
        while len(messages) < most:
            try:
                msg = await asyncio.wait_for(self._received.get(), deadline - loop.time())
            except asyncio.TimeoutError:
                if messages:
                    return messages
                raise
            status = _status(msg)
            if status is None:
                messages.append(msg)
            elif status in _END_STATUSES:
                break
            elif status != _HEARTBEAT_STATUS:
                description = (msg.headers or {}).get("Description", "")
                raise PullRequestFailed(f"tag {self.tag!r}: status {status} {description}".strip())
        return messages

    async def close(self) -> None:
        if self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            try:
                await subscription.unsubscribe()
            except Exception as exc:
                log.debug("unsubscribe_failed", error=f"{type(exc).__name__}: {exc}")


def _status(msg: Msg) -> str | None:
    """The status code of a status message (no data, ``Status`` header), else ``None``."""
    if msg.data or not msg.headers:
        return None
    return msg.headers.get("Status")
