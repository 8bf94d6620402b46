"""The worker's liveness record in KV ``pyoco_workers`` (key = worker id).

The record is rewritten every ``PYOCO_WORKER_HEARTBEAT_INTERVAL_SEC`` (always below
``PYOCO_WORKERS_KV_TTL_SEC``); readers treat a ``heartbeat_at`` older than that TTL as
DISCONNECTED, and the bucket drops a record ``PYOCO_WORKERS_RETENTION_SEC`` later. State
changes (IDLE ⇄ RUNNING) are written promptly but coalesced, so a busy host does not write its
record once per run.

The record is also the worker's claim on its id. At start-up :meth:`WorkerRecord.claim`
creates the key (KV create) or takes over a record whose owner is gone — STOPPED, silent for
longer than the TTL, or a process of this host that no longer exists — with compare-and-set; a
record of a live instance makes the start fail with :class:`WorkerIdInUse`
(ERR-PYOCO-0031). Every later write is a compare-and-set on the revision this instance wrote
last, so an instance whose id was taken over (it stalled past the TTL and another process
claimed the id) notices on its next write (:class:`ClaimLost`) instead of overwriting the new
owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from ..errors import PyocoServerError, err_id, msg_id
from ..log import get_logger

log = get_logger(__name__)

IDLE = "IDLE"
RUNNING = "RUNNING"
STOPPED = "STOPPED"

#: Minimum time between two writes caused by state changes.
RECORD_MIN_GAP_SEC = 0.25
#: Compare-and-set attempts when claiming the worker id races with other writers.
CLAIM_ATTEMPTS = 5


class WorkerIdInUse(PyocoServerError):
    """Another live process holds this worker id (ERR-PYOCO-0031)."""

    number = 31

    def __init__(self, worker_id: str, holder: dict[str, Any], ttl_sec: float) -> None:
        self.worker_id = worker_id
        self.holder = holder
        age = _heartbeat_age(holder)
        seen = f"{age:.1f} s ago" if age is not None else "at an unknown time"
        super().__init__(
            f"worker id {worker_id!r} is in use by a live worker (pid {holder.get('pid')} on "
            f"{holder.get('hostname')}, instance {holder.get('instance_id')}, last heartbeat "
            f"{seen}); stop that worker or choose another --worker-id. A worker that died "
            f"releases its id {ttl_sec:g} s after its last heartbeat (PYOCO_WORKERS_KV_TTL_SEC)"
        )


class ClaimLost(RuntimeError):
    """Another instance took this worker id over; this instance must stop."""

    def __init__(self, holder: dict[str, Any] | None) -> None:
        self.holder = holder or {}
        super().__init__(
            f"worker id taken over by instance {self.holder.get('instance_id')} "
            f"(pid {self.holder.get('pid')} on {self.holder.get('hostname')})"
        )


def _heartbeat_age(record: dict[str, Any], now: float | None = None) -> float | None:
    heartbeat = record.get("heartbeat_at")
    if isinstance(heartbeat, bool) or not isinstance(heartbeat, (int, float)):
        return None
    return (time.time() if now is None else now) - float(heartbeat)


def _process_exists(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def claimable(record: dict[str, Any] | None, ttl_sec: float, hostname: str) -> bool:
    """True when the owner of ``record`` is gone, so its worker id may be taken over.

    Gone means: no readable record, state STOPPED, no heartbeat within ``ttl_sec``, or a
    process of this very host that does not exist any more (or is this process: a restart
    that kept the pid, as in a container) — so a crashed worker restarted on the same host
    does not wait for the TTL.
    """
    if not record or record.get("state") == STOPPED:
        return True
    age = _heartbeat_age(record)
    if age is None or age > ttl_sec:
        return True
    if record.get("hostname") == hostname:
        pid = record.get("pid")
        return pid == os.getpid() or not _process_exists(pid)
    return False


def _decode(data: bytes | None) -> dict[str, Any] | None:
    try:
        value = json.loads(data or b"")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class WorkerRecord:
    """What a worker host tells the world about itself."""

    def __init__(
        self,
        worker_id: str,
        tags: list[str],
        concurrency: int,
        execution_pids: Callable[[], list[int]] = list,
        extra: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.instance_id = uuid.uuid4().hex
        self.tags = list(tags)
        self.concurrency = concurrency
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self.started_at = time.time()
        self.stopping = False
        self.execution_pids = execution_pids
        #: More fields for the record (``plugins`` and ``plugin_sync`` with --plugin-sync).
        self.extra = extra
        self._current: dict[str, None] = {}
        self._changed = asyncio.Event()
        #: KV revision of this instance's latest write; ``None`` until claimed, or once lost.
        self.revision: int | None = None

    @property
    def current_run_ids(self) -> list[str]:
        return list(self._current)

    def run_started(self, run_id: str) -> None:
        self._current[run_id] = None
        self._changed.set()

    def run_finished(self, run_id: str) -> None:
        self._current.pop(run_id, None)
        self._changed.set()

    def wake(self) -> None:
        """Make :meth:`keep_fresh` look at its stop event now."""
        self._changed.set()

    def as_dict(self, state: str | None = None) -> dict[str, Any]:
        current = self.current_run_ids
        return {
            "worker_id": self.worker_id,
            "instance_id": self.instance_id,
            "state": state or (RUNNING if current else IDLE),
            "tags": self.tags,
            "current_run_id": current[0] if current else None,
            "current_run_ids": current,
            "heartbeat_at": time.time(),
            "started_at": self.started_at,
            "hostname": self.hostname,
            "pid": self.pid,
            "concurrency": self.concurrency,
            "execution_pids": self.execution_pids(),
            "stopping": self.stopping,
            **(self.extra() if self.extra is not None else {}),
        }

    def _encode(self, state: str | None = None) -> bytes:
        return json.dumps(self.as_dict(state), separators=(",", ":")).encode()

    async def claim(self, kv: Any, ttl_sec: float) -> None:
        """Take this worker id for this instance; raise :class:`WorkerIdInUse` if a live
        instance holds it."""
        for _ in range(CLAIM_ATTEMPTS):
            try:
                self.revision = await kv.create(self.worker_id, self._encode())
                return
            except KeyWrongLastSequenceError:
                pass
            try:
                entry = await kv.get(self.worker_id)
            except KeyNotFoundError:
                continue  # expired or deleted meanwhile: create again
            holder = _decode(entry.value)
            if not claimable(holder, ttl_sec, self.hostname):
                raise WorkerIdInUse(self.worker_id, holder or {}, ttl_sec)
            try:
                self.revision = await kv.update(self.worker_id, self._encode(), last=entry.revision)
            except KeyWrongLastSequenceError:
                continue  # another process wrote meanwhile: look again
            log.info(
                "worker_id_taken_over",
                previous_instance=(holder or {}).get("instance_id"),
                previous_pid=(holder or {}).get("pid"),
                previous_state=(holder or {}).get("state"),
            )
            return
        raise RuntimeError(f"worker id {self.worker_id!r}: too many concurrent claims")

    async def write(self, kv: Any, state: str | None = None) -> None:
        """Rewrite the record (compare-and-set); raises :class:`ClaimLost` when another
        instance owns the id now. Does nothing before :meth:`claim` or after the claim was
        lost."""
        if self.revision is None:
            return
        data = self._encode(state)
        try:
            self.revision = await kv.update(self.worker_id, data, last=self.revision)
            return
        except KeyWrongLastSequenceError:
            pass
        # Someone wrote after us, our previous write landed without its reply, or the record
        # expired (NATS was unreachable for longer than the bucket keeps records).
        try:
            entry = await kv.get(self.worker_id)
        except KeyNotFoundError:
            try:
                self.revision = await kv.create(self.worker_id, data)
                return
            except KeyWrongLastSequenceError:
                entry = await kv.get(self.worker_id)
        holder = _decode(entry.value)
        if holder is not None and holder.get("instance_id") == self.instance_id:
            self.revision = await kv.update(self.worker_id, data, last=entry.revision)
            return
        self.revision = None
        raise ClaimLost(holder)

    async def keep_fresh(
        self,
        kv_of: Callable[[], Awaitable[Any]],
        stop: asyncio.Event,
        interval: float,
        on_lost: Callable[[ClaimLost], None] | None = None,
    ) -> None:
        """Rewrite the record every ``interval`` and soon after each state change; call
        ``on_lost`` (and stop writing) if another instance took the worker id over."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            self._changed.clear()
            try:
                await self.write(await kv_of())
            except ClaimLost as lost:
                log.error(
                    "worker_id_claim_lost",
                    error=str(lost),
                    err_id=err_id(31),
                    msg_id=msg_id(31),
                )
                if on_lost is not None:
                    on_lost(lost)
                return
            except Exception as exc:
                log.warning("worker_record_write_failed", error=f"{type(exc).__name__}: {exc}")
            written = loop.time()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), interval)
            gap = RECORD_MIN_GAP_SEC - (loop.time() - written)
            if gap > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), gap)
