"""Deliver terminal snapshots to ``pyoco_run_finished`` from a durable consumer on the runs
stream.

The runs bucket's stream holds every snapshot write until the run's next write replaces it.
A durable pull consumer (:data:`CONSUMER`, explicit acks, shared by every gateway on the
bucket) reads the writes in order; a terminal one is handed to each implementation of the hook,
then acknowledged. So the call survives a worker's kill -9 (the snapshot is already stored)
and a gateway's (an unacknowledged write is delivered again after :data:`ACK_WAIT_SEC`), and
several gateways split the writes between them instead of each calling the hook.

Plugins never hold up or lose a run: each implementation runs on a thread of its own, its
exception is logged (ERR-PYOCO-0050) and the write acknowledged anyway; one still running
after :data:`HOOK_TIMEOUT_SEC` is logged and left behind. Nothing here writes to the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from ...log import get_logger
from ...model import is_terminal
from ...stream_reader import KV_OPERATION_HEADER, kv_stream_name, kv_subject_prefix

if TYPE_CHECKING:
    from ..services import GatewayServices

log = get_logger(__name__)

CONSUMER = "pyoco_run_finished"
HOOK = "pyoco_run_finished"
#: How long an unacknowledged write waits before it is delivered again (to any gateway).
ACK_WAIT_SEC = 120.0
#: How long one implementation may take before the write is acknowledged without it.
HOOK_TIMEOUT_SEC = 60.0
#: Writes fetched per request, and concurrent hook calls at most.
BATCH = 32
FETCH_TIMEOUT_SEC = 1.0


class RunFinishedFeed:
    """One gateway's reader of the shared consumer (started only when a plugin implements the
    hook)."""

    def __init__(self, services: GatewayServices) -> None:
        self.services = services
        self.settings = services.settings
        self.stream = kv_stream_name(self.settings.runs_kv_bucket)
        self.subject = kv_subject_prefix(self.settings.runs_kv_bucket) + ">"
        self._threads = ThreadPoolExecutor(max_workers=BATCH, thread_name_prefix="run-finished")
        self._subscription: Any = None

    @property
    def implementations(self) -> list[Any]:
        """The hook's implementations (empty: nothing to deliver to)."""
        return list(getattr(self.services.pm.hook, HOOK).get_hookimpls())

    async def _subscribe(self) -> Any:
        js = self.services.nats.js
        config = ConsumerConfig(
            durable_name=CONSUMER,
            deliver_policy=DeliverPolicy.NEW,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT_SEC,
            max_deliver=-1,
            max_ack_pending=1000,
            filter_subject=self.subject,
        )
        with contextlib.suppress(Exception):  # it exists already: use it as it is
            await js.add_consumer(self.stream, config)
        return await js.pull_subscribe_bind(consumer=CONSUMER, stream=self.stream)

    async def deliver(self, message: Any) -> None:
        """Call the hook for ``message`` if it is a terminal snapshot; then acknowledge it."""
        headers = message.headers or {}
        snapshot = None
        if headers.get(KV_OPERATION_HEADER, "PUT") == "PUT":
            with contextlib.suppress(ValueError):
                snapshot = json.loads(message.data)
        if isinstance(snapshot, dict) and is_terminal(snapshot.get("status")):
            await asyncio.gather(*(self._call(impl, snapshot) for impl in self.implementations))
        await message.ack()

    async def _call(self, impl: Any, snapshot: dict[str, Any]) -> None:
        arguments = {"snapshot": json.loads(json.dumps(snapshot)), "settings": self.settings}
        wanted = {name: arguments[name] for name in impl.argnames if name in arguments}
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(self._threads, lambda: impl.function(**wanted))
        context = {"run_id": snapshot.get("run_id"), "attempt": snapshot.get("attempt")}
        try:
            await asyncio.wait_for(asyncio.shield(call), HOOK_TIMEOUT_SEC)
        except asyncio.TimeoutError:
            log.error(
                "run_finished_hook_timeout",
                plugin=impl.plugin_name,
                timeout_sec=HOOK_TIMEOUT_SEC,
                err_id="ERR-PYOCO-0050",
                msg_id="MSG-PYOCO-0050",
                **context,
            )
        except Exception as exc:
            log.error(
                "run_finished_hook_failed",
                plugin=impl.plugin_name,
                error=f"{type(exc).__name__}: {exc}",
                err_id="ERR-PYOCO-0050",
                msg_id="MSG-PYOCO-0050",
                **context,
            )

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and deliver until ``stop`` (bounded waits); re-subscribes after NATS
        outages."""
        if not self.implementations:
            return
        while not stop.is_set():
            if not self.services.nats.connected:  # the connection heals by itself
                self._subscription = None
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                continue
            try:
                if self._subscription is None:
                    self._subscription = await self._subscribe()
                try:
                    messages = await self._subscription.fetch(BATCH, timeout=FETCH_TIMEOUT_SEC)
                except NatsTimeoutError:
                    continue
                await asyncio.gather(*(self.deliver(message) for message in messages))
            except Exception as exc:
                log.warning("run_finished_feed_failed", error=f"{type(exc).__name__}: {exc}")
                self._subscription = None
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
        await self.close()

    async def close(self) -> None:
        """Stop reading (the consumer stays for the next start) and leave the hook threads."""
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None
        self._threads.shutdown(wait=False)
