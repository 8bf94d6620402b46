"""``GET /runs/{run_id}/watch``: a run's snapshots as server-sent events, pushed by JetStream.

Each stream owns one KV watch on the run's key (an ephemeral ordered push consumer with
``last per subject`` delivery): JetStream pushes the current snapshot first and then every
new revision — nothing polls. Events:

* ``snapshot`` — ``id:`` is the KV revision, ``data:`` the run as ``GET /runs/{run_id}`` shows
  it (same ``include`` values). The stream ends after the first terminal snapshot.
* ``heartbeat`` — after ``PYOCO_WATCH_HEARTBEAT_INTERVAL_SEC`` without a change (no ``id``,
  so a client's ``Last-Event-ID`` keeps naming its last snapshot).
* ``timeout`` — ``timeout_sec`` (at most ``PYOCO_WATCH_MAX_SEC``) passed; the stream ends.
* ``deleted`` — the run's snapshot was removed; the stream ends.
* ``error`` — NATS failed after the stream had started (the error JSON shape); it ends.
* ``closing`` — the gateway is shutting down; the stream ends (reconnect elsewhere).

``Last-Event-ID: N`` (a revision this gateway or another one sent) resumes: snapshots whose
revision is not above N are skipped, so nothing the client already had is repeated; a client
that already had the terminal snapshot gets an empty stream.

Resources: the KV watch is stopped in the generator's ``finally``, which runs when the stream
ends — after its last event, or when the client went away: that is noticed at the next event
at the latest (the heartbeat, while the run is idle), Falcon then stops iterating and drops
the generator, and asyncio's async-generator finalizer closes it. :class:`WatcherRegistry`
counts the open streams (gauge ``pyoco_watchers_open``) and ends them all on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import nats.errors
from falcon.asgi import SSEvent

from ..errors import err_id, msg_id
from ..log import get_logger
from ..model import is_terminal
from ..nesting import NestingTooDeep, load_stored
from ..run_store import RunNotFound, RunStore
from .error_responses import NATS_UNAVAILABLE, invalid
from .run_view import RUN_INCLUDES, run_view
from .validation import includes

if TYPE_CHECKING:
    from .services import GatewayServices

log = get_logger(__name__)

LAST_EVENT_ID_HEADER = "Last-Event-ID"
#: How long JetStream keeps a watch's consumer after its subscriber went away (the gateway
#: stops the subscription when the stream ends; the server then removes the consumer).
CONSUMER_INACTIVE_SEC = 5.0
#: Bound of stopping a KV watch when a stream ends.
STOP_TIMEOUT_SEC = 2.0
REVISION_PATTERN = re.compile(r"^[0-9]{1,20}$")
_GONE_OPERATIONS = frozenset({"DEL", "PURGE"})


@dataclass(frozen=True)
class WatchQuery:
    """Validated parameters of one watch: ``include`` values, duration, resume point."""

    wanted: frozenset[str]
    timeout_sec: float
    last_event_id: int | None = None


def watch_query(req: Any, max_sec: float) -> WatchQuery:
    """Validate ``include``, ``timeout_sec`` and the ``Last-Event-ID`` header (422 otherwise).

    ``timeout_sec`` must be a positive number; larger values than ``max_sec`` are lowered to
    it, and without one the stream lasts ``max_sec`` at most.
    """
    errors: list[dict[str, str]] = []
    wanted = includes(req, RUN_INCLUDES)
    timeout_sec = max_sec
    values = req.get_param_as_list("timeout_sec") or []
    if len(values) > 1:
        errors.append({"field": "timeout_sec", "message": "must be given at most once"})
    elif values:
        try:
            requested = float(values[0])
        except ValueError:
            requested = math.nan
        if not math.isfinite(requested) or requested <= 0:
            errors.append({"field": "timeout_sec", "message": "must be a number above 0"})
        else:
            timeout_sec = min(requested, max_sec)
    last_event_id = None
    header = req.get_header(LAST_EVENT_ID_HEADER)
    if header is not None and header.strip():
        if REVISION_PATTERN.match(header.strip()):
            last_event_id = int(header)
        else:
            errors.append(
                {"field": LAST_EVENT_ID_HEADER, "message": "must be the id of an earlier event"}
            )
    if errors:
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise invalid(f"invalid watch request: {summary}", errors)
    return WatchQuery(frozenset(wanted), timeout_sec, last_event_id)


class WatcherRegistry:
    """The watch streams this gateway has open: their count, and a way to end them all."""

    def __init__(self) -> None:
        self.opened_total = 0
        self.closing = False
        self._watchers: dict[int, Any] = {}
        self._next = 0

    @property
    def open(self) -> int:
        """How many watch streams are open now."""
        return len(self._watchers)

    def opened(self) -> int:
        """Count a new stream; returns its key for :meth:`attach` and :meth:`closed`."""
        self._next += 1
        self.opened_total += 1
        self._watchers[self._next] = None
        return self._next

    def attach(self, key: int, watcher: Any) -> None:
        """Remember the stream's KV watch, so :meth:`close_all` can stop it."""
        if key in self._watchers:
            self._watchers[key] = watcher

    def closed(self, key: int) -> None:
        self._watchers.pop(key, None)

    async def close_all(self, timeout: float = STOP_TIMEOUT_SEC) -> None:
        """End every open stream (gateway shutdown): each gets a ``closing`` event and ends,
        so its client reconnects elsewhere with ``Last-Event-ID``. New streams end at once."""
        self.closing = True
        watchers = [watcher for watcher in self._watchers.values() if watcher is not None]
        if watchers:
            log.info("watch_streams_closing", open=len(watchers))
            await asyncio.wait(
                [asyncio.ensure_future(_stop_quietly(watcher)) for watcher in watchers],
                timeout=timeout,
            )


async def _stop_quietly(watcher: Any) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(watcher.stop(), STOP_TIMEOUT_SEC)


def _error_event(detail: str) -> SSEvent:
    number = NATS_UNAVAILABLE
    body = {"detail": detail, "err_id": err_id(number), "msg_id": msg_id(number)}
    return SSEvent(event="error", json=body)


def _closing_event() -> SSEvent:
    detail = "the gateway is shutting down; reconnect with Last-Event-ID"
    return SSEvent(event="closing", json={"detail": detail})


async def _view(services: GatewayServices, snapshot: dict[str, Any], wanted: set[str]) -> dict:
    """The snapshot as ``GET /runs/{run_id}`` shows it; without worker liveness when the
    workers bucket cannot be read right now (an event is never lost for it)."""
    try:
        return await run_view(services, snapshot, wanted)
    except Exception as exc:
        log.warning("watch_worker_view_failed", error=f"{type(exc).__name__}: {exc}")
        return snapshot


class RunWatch:
    """The event stream of one watch request (iterate :meth:`events` once)."""

    def __init__(
        self,
        services: GatewayServices,
        store: RunStore,
        run_id: str,
        query: WatchQuery,
        registry: WatcherRegistry,
    ) -> None:
        self.services = services
        self.store = store
        self.run_id = run_id
        self.query = query
        self.registry = registry

    async def events(self) -> AsyncIterator[SSEvent]:
        """Snapshots until the terminal one (or the time bound); heartbeats while idle."""
        key = self.registry.opened()
        watcher = None
        try:
            try:
                watcher = await self.store.kv.watch(
                    self.run_id, inactive_threshold=CONSUMER_INACTIVE_SEC
                )
            except Exception as exc:
                log.warning("watch_start_failed", run_id=self.run_id, error=repr(exc))
                yield _error_event(f"the watch could not start ({type(exc).__name__}); retry")
                return
            self.registry.attach(key, watcher)
            if self.registry.closing:
                yield _closing_event()
                return
            async for event in self._follow(watcher):
                yield event
        finally:
            self.registry.closed(key)
            if watcher is not None:
                await _stop_quietly(watcher)

    async def _follow(self, watcher: Any) -> AsyncIterator[SSEvent]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.query.timeout_sec
        heartbeat = self.services.settings.watch_heartbeat_interval_sec
        last_sent = self.query.last_event_id or 0
        seen = False
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                yield SSEvent(event="timeout", json={"timeout_sec": self.query.timeout_sec})
                return
            try:
                entry = await watcher.updates(timeout=min(heartbeat, remaining))
            except nats.errors.TimeoutError:
                if deadline - loop.time() > 0:
                    yield SSEvent(event="heartbeat", json={"ts": time.time()})
                continue
            except Exception as exc:
                log.warning("watch_failed", run_id=self.run_id, error=repr(exc))
                yield _error_event(f"the watch failed ({type(exc).__name__}); reconnect")
                return
            if entry is None:  # the watch delivered what the bucket held when it started
                if not seen and not await self._exists():
                    yield SSEvent(event="deleted", json={"run_id": self.run_id})
                    return
                continue
            if getattr(entry, "operation", None) in _GONE_OPERATIONS:
                yield SSEvent(event="deleted", json={"run_id": self.run_id})
                return
            if not hasattr(entry, "revision"):  # the watch was stopped: gateway shutdown
                yield _closing_event()
                return
            if entry.value is None:
                continue
            seen = True
            try:
                snapshot = load_stored(
                    entry.value, self.services.settings.max_nesting_depth, "run snapshot"
                )
            except (ValueError, NestingTooDeep):
                log.warning("watch_invalid_snapshot", run_id=self.run_id, rev=entry.revision)
                continue
            terminal = is_terminal(snapshot.get("status"))
            if entry.revision > last_sent:
                last_sent = entry.revision
                view = await _view(self.services, snapshot, set(self.query.wanted))
                yield SSEvent(event="snapshot", json=view, event_id=str(entry.revision))
            if terminal:
                return

    async def _exists(self) -> bool:
        try:
            await self.store.get(self.run_id)
        except RunNotFound:
            return False
        except Exception:
            return True  # cannot tell now: keep watching, the watch itself will say
        return True
