"""The worker host (``pyoco-worker``): execution pool, pullers, heartbeats, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..errors import ConfigError
from ..log import get_logger
from ..nats_client import NatsConnection
from ..run_store import RunStore
from .child import settings_to_wire
from .children.coordinator import ChildCoordinator
from .consumer import Delivery
from .dispositions import Disposer
from .heartbeats import Heartbeats
from .picker import JobPicker
from .plugin_sync.options import PluginSyncOptions
from .pool import ExecutionPool
from .registration import STOPPED, ClaimLost, WorkerRecord
from .run_writer import WorkerRunStore
from .runner import JobRunner

if TYPE_CHECKING:
    from .plugin_sync.service import PluginSyncService

log = get_logger(__name__)

WORKER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_=.-]*(?<!\.)\Z")
#: Bounded waits of the shutdown steps after the grace period.
REQUEUE_TIMEOUT_SEC = 10.0
CLOSE_TIMEOUT_SEC = 5.0


def default_worker_id() -> str:
    """``<hostname>-<pid>``, reduced to the characters a KV key accepts."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "worker"
    return f"{host}-{os.getpid()}"


def validate_worker_id(worker_id: str, source: str = "--worker-id") -> str:
    if not WORKER_ID_PATTERN.match(worker_id):
        raise ConfigError(source, worker_id, "letters, digits, '_', '-', '=' or '.' only")
    return worker_id


@dataclass
class PluginSelection:
    """Which plugins to load (``--plugins`` / ``-p``), passed on to execution processes."""

    allow: list[str] | None = None
    disable: list[str] = field(default_factory=list)
    also: list[str] = field(default_factory=list)


@dataclass
class WorkerOptions:
    """How one worker host runs (from the command line)."""

    tags: list[str]
    worker_id: str = field(default_factory=default_worker_id)
    concurrency: int = 1
    grace_period_sec: float = 30.0
    flow_resolver: str | None = None
    plugins: PluginSelection = field(default_factory=PluginSelection)
    run_once: bool = False
    poll_timeout_sec: float = 1.0
    work_dir: str | None = None
    plugin_sync: PluginSyncOptions | None = None


class WorkerHost:
    """Pulls jobs for its tags and runs up to ``concurrency`` flows at once until stopped.

    :meth:`run` returns the exit code. SIGTERM/SIGINT stop pulling, let running flows finish
    within the grace period, hard-stop and NAK the rest, and write the worker record STOPPED;
    a second signal skips what is left of the grace period.
    """

    def __init__(self, settings: Settings, options: WorkerOptions, pm: Any) -> None:
        self.settings = settings
        self.options = options
        self.pm = pm
        self.nats = NatsConnection(settings, name=f"pyoco-worker:{options.worker_id}")
        self.plugin_sync: PluginSyncService | None = None
        if options.plugin_sync is not None:
            # Imported only here: syncing needs cryptography (~9 MiB) that a worker without
            # --plugin-sync never loads.
            from .plugin_sync.service import PluginSyncService

            self.plugin_sync = PluginSyncService(
                settings, options.plugin_sync, options.worker_id, options.tags, self._wake_record
            )
        self.record = WorkerRecord(
            options.worker_id,
            options.tags,
            options.concurrency,
            self._execution_pids,
            self.plugin_sync.record_fields if self.plugin_sync else None,
        )
        self._stop_pulling = asyncio.Event()
        self._shutdown = asyncio.Event()
        self._force = asyncio.Event()
        self._stop_loops = asyncio.Event()
        self._handlers: set[asyncio.Task[None]] = set()
        self._work_dir_created = False
        self.pool: ExecutionPool | None = None
        self.runner: JobRunner | None = None
        self.claim_lost = False

    # -- signals -----------------------------------------------------------------------------

    def request_stop(self, reason: str = "requested") -> None:
        """Begin a graceful shutdown; a second request skips the rest of the grace period."""
        if self._shutdown.is_set():
            log.warning("worker_stop_forced", reason=reason)
            self._force.set()
            return
        log.info("worker_stopping", reason=reason, grace_period_sec=self.options.grace_period_sec)
        self.record.stopping = True
        self._stop_pulling.set()
        self._shutdown.set()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

    # -- start-up ----------------------------------------------------------------------------

    def _work_dir(self) -> str:
        if self.options.work_dir:
            # One subdirectory per worker, so hosts sharing --work-dir never touch each other.
            path = os.path.join(os.path.abspath(self.options.work_dir), self.options.worker_id)
            os.makedirs(path, exist_ok=True)
            return path
        self._work_dir_created = True
        return tempfile.mkdtemp(prefix="pyoco-worker-")

    def _pool_config(self, work_dir: str) -> dict[str, Any]:
        plugins = self.options.plugins
        config = {
            "settings": settings_to_wire(self.settings),
            "plugins": {"allow": plugins.allow, "disable": plugins.disable, "also": plugins.also},
            "flow_resolver": self.options.flow_resolver,
            "work_dir": work_dir,
            "worker_id": self.options.worker_id,
        }
        return self.plugin_sync.pool_config(config) if self.plugin_sync else config

    def _wake_record(self) -> None:
        if hasattr(self, "record"):
            self.record.wake()

    async def _wait_for_nats(self) -> bool:
        await self.nats.start()
        while not self._shutdown.is_set():
            if await self.nats.wait_ready(timeout=1.0):
                return True
            log.info("waiting_for_nats")
        return False

    # -- life --------------------------------------------------------------------------------

    async def run(self) -> int:
        self._install_signal_handlers()
        work_dir = self._work_dir()
        size = 1 if self.options.run_once else self.options.concurrency
        self.pool = ExecutionPool(size, self._pool_config(work_dir))
        loops: list[asyncio.Task[Any]] = []
        try:
            await self.pool.start()  # a bad --flow-resolver fails here, before NATS
            if not await self._wait_for_nats():
                return 0
            # Every tag's consumer exists before the worker shows in /workers.
            picker = self._picker(size)
            await picker.open()
            # A second process with this worker id stops here (ERR-PYOCO-0031, exit 1).
            await self.record.claim(await self._workers_kv(), self.settings.workers_kv_ttl_sec)
            runs_kv = await self.nats.kv(self.settings.runs_kv_bucket)
            store = WorkerRunStore(
                RunStore(runs_kv, self.pm, self.settings), self.nats, self.settings
            )
            heartbeats = Heartbeats(self.settings, self.options.worker_id, store)
            self.runner = JobRunner(
                worker_id=self.options.worker_id,
                store=store,
                pool=self.pool,
                heartbeats=heartbeats,
                disposer=Disposer(self.pm, self.settings, self.nats, store, self.options.worker_id),
                record=self.record,
                children=ChildCoordinator(
                    self.nats, self.settings, store.store, self.options.worker_id
                ),
            )
            loop = asyncio.get_running_loop()
            loops = [
                loop.create_task(heartbeats.heartbeat_loop(self._stop_loops)),
                loop.create_task(heartbeats.ack_progress_loop(self._stop_loops)),
                loop.create_task(
                    self.record.keep_fresh(
                        self._workers_kv,
                        self._stop_loops,
                        self.settings.worker_heartbeat_interval_sec,
                        self._claim_lost,
                    )
                ),
            ]
            if self.plugin_sync is not None:
                loops.append(
                    loop.create_task(self.plugin_sync.run(self.nats, self._stop_loops, self.pool))
                )
            pullers = {loop.create_task(picker.run())}
            log.info(
                "worker_started",
                worker_id=self.options.worker_id,
                tags=self.options.tags,
                concurrency=size,
                execution_pids=self.pool.pids,
            )
            if self.options.run_once:
                await self._run_once(pullers)
            else:
                await self._shutdown.wait()
            await self._stop(pullers, heartbeats)
            return 1 if self.claim_lost else 0
        finally:
            self._stop_loops.set()
            self.record.wake()
            await _wait_quietly(set(loops), CLOSE_TIMEOUT_SEC)
            await self._close(work_dir)

    def _claim_lost(self, lost: ClaimLost) -> None:
        """Another process took this worker id over: stop as for SIGTERM, then exit 1."""
        self.claim_lost = True
        self.request_stop("worker id taken over by another instance")

    def _execution_pids(self) -> list[int]:
        return self.pool.pids if self.pool is not None else []

    async def _workers_kv(self) -> Any:
        return await self.nats.kv(self.settings.workers_kv_bucket)

    def _picker(self, size: int) -> JobPicker:
        picker: JobPicker

        def dispatch(delivery: Delivery) -> None:
            assert self.runner is not None
            # With one slot, the slot is free again once the job's outcome is known (its
            # execution process is idle): the next job is claimed while this one's result is
            # written. With several, the other slots already overlap that, and releasing
            # early only adds jobs in flight competing for the CPU (measured slower at 4).
            early = picker.release if size == 1 else None
            task = asyncio.get_running_loop().create_task(self.runner.handle(delivery, early))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
            if early is None:
                task.add_done_callback(lambda _: picker.release())
            if self.options.run_once:
                self._stop_pulling.set()

        picker = JobPicker(
            self.nats,
            self.settings,
            self.options.tags,
            size,
            dispatch,
            self._stop_pulling,
            recheck_sec=self.options.poll_timeout_sec,
        )
        return picker

    async def _run_once(self, pullers: set[asyncio.Task[None]]) -> None:
        """Take at most one job (waiting up to the poll timeout), run it, then stop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.poll_timeout_sec + 1.0
        while not self._stop_pulling.is_set() and not self._shutdown.is_set():
            if loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
        self._stop_pulling.set()
        await _wait_quietly(pullers, self.options.poll_timeout_sec + 2.0)
        handlers = set(self._handlers)
        while handlers and not self._shutdown.is_set():
            _done, handlers = await asyncio.wait(handlers, timeout=0.2)
        if not self._shutdown.is_set():
            self._shutdown.set()

    async def _stop(self, pullers: set[asyncio.Task[None]], heartbeats: Heartbeats) -> None:
        self._stop_pulling.set()
        await _wait_quietly(pullers, self.options.poll_timeout_sec + 2.0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.grace_period_sec
        if self._handlers:
            log.info(
                "worker_draining",
                running=len(self._handlers),
                grace_period_sec=self.options.grace_period_sec,
            )
        while self._handlers and loop.time() < deadline and not self._force.is_set():
            await asyncio.wait(
                set(self._handlers), timeout=min(0.2, max(0.0, deadline - loop.time()))
            )
        if self._handlers and self.runner is not None:
            log.warning("worker_grace_period_over", interrupted=len(self._handlers))
            if self.pool is not None:
                self.pool.stop_replacing()
            self.runner.abort_all()
            await _wait_quietly(set(self._handlers), REQUEUE_TIMEOUT_SEC)
        await heartbeats.drain(CLOSE_TIMEOUT_SEC)

    async def _close(self, work_dir: str) -> None:
        if self.pool is not None:
            await self.pool.stop(CLOSE_TIMEOUT_SEC)
        if self.nats.connected and self.record.revision is not None:
            try:
                await asyncio.wait_for(
                    self.record.write(await self._workers_kv(), STOPPED), CLOSE_TIMEOUT_SEC
                )
                log.info("worker_stopped", worker_id=self.options.worker_id)
            except Exception as exc:
                log.warning("worker_record_write_failed", error=f"{type(exc).__name__}: {exc}")
        await self.nats.stop()
        self._remove_signal_handlers()
        if self._work_dir_created:
            shutil.rmtree(work_dir, ignore_errors=True)


async def _wait_quietly(tasks: set[asyncio.Task[Any]], timeout: float) -> None:
    """Wait for ``tasks`` up to ``timeout`` without raising."""
    if tasks:
        with contextlib.suppress(Exception):
            await asyncio.wait(tasks, timeout=timeout)
