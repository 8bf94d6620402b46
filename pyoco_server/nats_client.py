"""Connecting to NATS and creating the JetStream resources pyoco-server uses
(docs/nats-resources.md)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BucketNotFoundError, NotFoundError

from .config import Settings
from .log import get_logger

log = get_logger(__name__)


def nats_servers(url: str) -> list[str]:
    """The server URLs in ``url``: one URL, or several separated by commas (a cluster).

    ``nats://a:4222,nats://b:4222`` lets a client start and fail over on any member.
    """
    return [part.strip() for part in url.split(",") if part.strip()]


async def connect(url: str, name: str, connect_timeout: float = 2.0) -> Client:
    """Connect with unlimited reconnects, so a NATS restart heals without a process restart.

    ``url`` may list several servers separated by commas (see :func:`nats_servers`); the
    client connects to one of them and moves to another when it is lost. The first connection
    must succeed (``nats.errors.NoServersError`` otherwise).
    """

    async def on_error(exc: Exception) -> None:
        log.warning("nats_error", error=f"{type(exc).__name__}: {exc}")

    async def on_disconnect() -> None:
        log.warning("nats_disconnected")

    async def on_reconnect() -> None:
        log.info("nats_reconnected")

    return await nats.connect(
        servers=nats_servers(url),
        name=name,
        connect_timeout=connect_timeout,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        allow_reconnect=True,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )


def work_stream_config(settings: Settings) -> StreamConfig:
    return StreamConfig(
        name=settings.work_stream,
        subjects=[f"{settings.work_subject_prefix}.>"],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        num_replicas=settings.jetstream_replicas,
        duplicate_window=120.0,
    )


def dlq_stream_config(settings: Settings) -> StreamConfig:
    return StreamConfig(
        name=settings.dlq_stream,
        subjects=[f"{settings.dlq_subject_prefix}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=settings.dlq_max_age_sec,
        max_msgs=settings.dlq_max_msgs,
        max_bytes=settings.dlq_max_bytes,
        num_replicas=settings.jetstream_replicas,
    )


def kv_configs(settings: Settings) -> list[KeyValueConfig]:
    replicas = settings.jetstream_replicas
    return [
        KeyValueConfig(bucket=settings.runs_kv_bucket, history=1, replicas=replicas),
        KeyValueConfig(
            bucket=settings.workers_kv_bucket,
            history=1,
            ttl=settings.workers_bucket_ttl_sec,
            replicas=replicas,
        ),
        KeyValueConfig(bucket=settings.auth_kv_bucket, history=1, replicas=replicas),
        KeyValueConfig(bucket=settings.spawn_kv_bucket, history=1, replicas=replicas),
        KeyValueConfig(bucket=settings.worker_flags_kv_bucket, history=1, replicas=replicas),
        KeyValueConfig(bucket=settings.leases_kv_bucket, history=1, replicas=replicas),
        KeyValueConfig(
            bucket=settings.idempotency_kv_bucket,
            history=1,
            ttl=settings.idempotency_ttl_sec,
            replicas=replicas,
        ),
        KeyValueConfig(bucket=settings.plugin_registry_kv_bucket, history=1, replicas=replicas),
        KeyValueConfig(bucket=settings.wheel_history_kv_bucket, history=1, replicas=replicas),
    ]


def _differences(existing: Any, wanted: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    found: dict[str, tuple[Any, Any]] = {}
    for key, value in wanted.items():
        current = getattr(existing, key, None)
        if isinstance(value, float) and isinstance(current, (int, float)):
            if abs(current - value) > 1e-6:
                found[key] = (current, value)
        elif current != value:
            found[key] = (current, value)
    return found


async def _ensure_stream(js: JetStreamContext, config: StreamConfig, checked: list[str]) -> bool:
    try:
        info = await js.stream_info(config.name)
    except NotFoundError:
        await js.add_stream(config)
        log.info("nats_stream_created", stream=config.name)
        return True
    wanted = {key: getattr(config, key) for key in checked}
    for key, (current, value) in _differences(info.config, wanted).items():
        log.warning(
            "nats_resource_setting_differs",
            resource=config.name,
            setting=key,
            existing=str(current),
            configured=str(value),
        )
    return False


async def _ensure_kv(js: JetStreamContext, config: KeyValueConfig) -> bool:
    try:
        kv = await js.key_value(config.bucket)
    except BucketNotFoundError:
        await js.create_key_value(config)
        log.info("nats_kv_created", bucket=config.bucket)
        return True
    status = await kv.status()
    stream = status.stream_info.config
    wanted = {"max_msgs_per_subject": config.history, "max_age": config.ttl or 0.0}
    wanted["num_replicas"] = config.replicas
    current = {
        "max_msgs_per_subject": stream.max_msgs_per_subject,
        "max_age": stream.max_age or 0.0,
        "num_replicas": stream.num_replicas,
    }
    for key, value in wanted.items():
        if abs(float(current[key] or 0) - float(value or 0)) > 1e-6:
            log.warning(
                "nats_resource_setting_differs",
                resource=f"KV {config.bucket}",
                setting=key,
                existing=str(current[key]),
                configured=str(value),
            )
    return False


async def ensure_resources(js: JetStreamContext, settings: Settings) -> list[str]:
    """Create missing streams and KV buckets; warn about settings that differ.

    Idempotent: existing resources are used as they are. Returns the names it created.
    """
    created: list[str] = []
    if await _ensure_stream(
        js, work_stream_config(settings), ["subjects", "retention", "num_replicas"]
    ):
        created.append(settings.work_stream)
    if await _ensure_stream(
        js,
        dlq_stream_config(settings),
        ["subjects", "max_age", "max_msgs", "max_bytes", "num_replicas"],
    ):
        created.append(settings.dlq_stream)
    for config in kv_configs(settings):
        if await _ensure_kv(js, config):
            created.append(config.bucket)
    return created


class NatsUnavailable(RuntimeError):
    """NATS (or JetStream) cannot be reached right now."""


class NatsConnection:
    """A process's NATS connection: connects in the background and heals after outages.

    ``start()`` returns at once; the first connection and resource bootstrap are retried until
    they succeed or ``stop()`` is called. ``js`` and :meth:`kv` raise :class:`NatsUnavailable`
    while not connected, so callers can answer 503 instead of hanging. ``request_timeout`` bounds
    every JetStream API request made through :attr:`js` (and the KV handles it returns).
    """

    def __init__(
        self,
        settings: Settings,
        name: str,
        retry_interval: float = 0.5,
        request_timeout: float = 5.0,
    ) -> None:
        self.settings = settings
        self.name = name
        self.retry_interval = retry_interval
        self.request_timeout = request_timeout
        self.nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._kv: dict[str, Any] = {}
        self._stop: asyncio.Event | None = None
        self._ready: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Begin connecting in the background."""
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._connect_loop())

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until connected and bootstrapped; False on timeout."""
        assert self._ready is not None, "start() first"
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def _connect_loop(self) -> None:
        assert self._stop is not None and self._ready is not None
        url = self.settings.nats_url or "nats://127.0.0.1:4222"
        while not self._stop.is_set():
            try:
                if self.nc is None:
                    self.nc = await connect(url, self.name)
                self._js = self.nc.jetstream(timeout=self.request_timeout)
                await ensure_resources(self._js, self.settings)
                self._ready.set()
                log.info("nats_ready", server=self.nc.connected_url.netloc)
                return
            except Exception as exc:
                log.warning("nats_connect_retry", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.retry_interval)

    @property
    def connected(self) -> bool:
        return bool(self._ready and self._ready.is_set() and self.nc and self.nc.is_connected)

    @property
    def js(self) -> JetStreamContext:
        if not self.connected or self._js is None:
            raise NatsUnavailable("NATS is not connected")
        return self._js

    async def kv(self, bucket: str) -> Any:
        """The KV handle of ``bucket`` (cached)."""
        handle = self._kv.get(bucket)
        if handle is None:
            handle = await self.js.key_value(bucket)
            self._kv[bucket] = handle
        if not self.connected:
            raise NatsUnavailable("NATS is not connected")
        return handle

    async def stop(self) -> None:
        """Stop connecting and close the connection (bounded)."""
        if self._stop is not None:
            self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(self._task, 5)
        if self.nc is not None and not self.nc.is_closed:
            try:
                await asyncio.wait_for(self.nc.drain(), 5)
            except Exception:
                with contextlib.suppress(Exception):
                    await self.nc.close()
        self.nc = None
