"""Expire terminal runs older than ``PYOCO_RUN_RETENTION_SEC`` (0: keep them forever).

One gateway at a time sweeps (a :class:`~.lease.Lease` in ``PYOCO_LEASES_KV_BUCKET``, named
after the runs bucket): every :data:`SWEEP_INTERVAL_SEC` it takes the oldest expired runs from
its own run index — terminal runs whose last write is older than the retention; non-terminal
runs are never candidates, whatever their age — and purges each from KV with a
compare-and-set on the revision it saw. A run written meanwhile (say, reopened by a redrive)
fails the compare-and-set and stays. The purge marker carries a per-message TTL
(:data:`MARKER_TTL_SEC`, ``Nats-TTL``), so markers do not pile up in the stream.

Every gateway's index applies the markers like any other write, so the runs leave every
``GET /runs``, ``/runs/counts`` and metrics. A gateway that was stopped longer than a marker
lives never sees it: the gateways that do not sweep therefore also drop, from their own index
only, terminal runs older than the retention plus :data:`MARKER_TTL_SEC` — by then the sweeper
has purged them from KV (or, if sweeping failed meanwhile, will: the sweeping gateway never
drops a run from its index before the run is purged from KV).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import TYPE_CHECKING

from ...log import get_logger
from ...stream_reader import kv_stream_name, kv_subject_prefix
from .lease import Lease

if TYPE_CHECKING:
    from ..services import GatewayServices

log = get_logger(__name__)

#: Seconds between two sweeps when the last one found no backlog.
SWEEP_INTERVAL_SEC = 5.0
#: Runs one sweep takes from the index at most (then the index is asked again).
SWEEP_BATCH = 1000
#: Runs purged at once (concurrent compare-and-set publishes): one step of a sweep.
SWEEP_STEP = 16
#: Share of the time a sweep may spend purging: after each step it pauses
#: ``(1 - SWEEP_DUTY) / SWEEP_DUTY`` times as long as the step took (at least
#: :data:`STEP_PAUSE_MIN_SEC`), so a backlog costs submits at most about this share of the
#: gateway's and NATS's time, spread evenly rather than in bursts, and drains at about this
#: share of the rate an unpaced sweep would reach.
SWEEP_DUTY = 0.1
STEP_PAUSE_MIN_SEC = 0.005
#: How long a purge marker stays in the runs stream (then the server removes it).
MARKER_TTL_SEC = 3600
#: How long the sweeping gateway's lease lasts unless renewed (renewed on every sweep).
LEASE_SEC = 30.0


class RetentionSweeper:
    """The retention loop of one gateway (see the module's docstring)."""

    def __init__(self, services: GatewayServices, interval: float = SWEEP_INTERVAL_SEC) -> None:
        self.services = services
        self.settings = services.settings
        self.interval = interval
        bucket = self.settings.runs_kv_bucket
        self.lease = Lease(
            lambda: services.nats.kv(self.settings.leases_kv_bucket),
            f"retention-{bucket}",
            f"gateway-{uuid.uuid4().hex}",
            LEASE_SEC,
        )
        self.stream = kv_stream_name(bucket)
        self.prefix = kv_subject_prefix(bucket)
        self._marker_ttl: int | None = None
        #: The last sweep found a full batch of expired runs (more are probably waiting).
        self.backlog = False

    async def sweep_once(self, stop: asyncio.Event | None = None) -> int:
        """One sweep: up to :data:`SWEEP_BATCH` runs, :data:`SWEEP_STEP` at a time with a
        pause after each step (:data:`SWEEP_DUTY`; cut short when ``stop`` is set, which also
        ends the sweep); returns the number of runs this gateway purged from KV."""
        retention = self.settings.run_retention_sec
        if not retention:
            return 0
        now = time.time()
        if not await self.lease.hold():
            cutoff = now - retention - MARKER_TTL_SEC
            await self.services.query_index("expire", cutoff)
            return 0
        candidates = await self.services.query_index("expired", now - retention, SWEEP_BATCH)
        self.backlog = False
        if not candidates:
            return 0
        self.backlog = len(candidates) >= SWEEP_BATCH
        ttl = await self._ensure_marker_ttl()
        stop = stop or asyncio.Event()
        purged = 0
        renewed = time.monotonic()
        for start in range(0, len(candidates), SWEEP_STEP):
            began = time.monotonic()
            if began - renewed > LEASE_SEC / 3:
                # a paced sweep under load can outlast the lease: renew it, or stop if lost
                if not await self.lease.hold():
                    break
                renewed = began
            group = candidates[start : start + SWEEP_STEP]
            results = await asyncio.gather(
                *(self._purge(run_id, revision, ttl) for run_id, revision in group),
                return_exceptions=True,
            )
            purged += sum(1 for result in results if result is True)
            failures = [r for r in results if isinstance(r, BaseException)]
            if failures:
                log.warning(
                    "retention_purge_failed",
                    failed=len(failures),
                    error=f"{type(failures[0]).__name__}: {failures[0]}",
                )
            took = time.monotonic() - began
            pause = max(STEP_PAUSE_MIN_SEC, took * (1 - SWEEP_DUTY) / SWEEP_DUTY)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
            if stop.is_set():
                break
        if purged:
            log.info("retention_swept", purged=purged, retention_sec=retention)
        return purged

    async def _purge(self, run_id: str, revision: int, ttl: int | None) -> bool:
        """Purge ``run_id`` if its latest revision is still ``revision``."""
        headers = {
            "KV-Operation": "PURGE",
            "Nats-Rollup": "sub",
            "Nats-Expected-Last-Subject-Sequence": str(revision),
        }
        if ttl:
            headers["Nats-TTL"] = f"{ttl}s"
        try:
            await self.services.nats.js.publish(
                self.prefix + run_id, b"", stream=self.stream, headers=headers
            )
        except Exception as exc:
            if "wrong last sequence" in str(exc).lower():
                return False  # written meanwhile: no longer what was judged expired
            raise
        return True

    async def _ensure_marker_ttl(self) -> int | None:
        """The TTL to put on purge markers, after allowing per-message TTLs on the runs stream
        if it was created without them (``None`` if the server refuses: markers then stay)."""
        if self._marker_ttl is None:
            js = self.services.nats.js
            info = await js.stream_info(self.stream)
            if not info.config.allow_msg_ttl:
                try:
                    info.config.allow_msg_ttl = True
                    await js.update_stream(info.config)
                except Exception as exc:
                    log.warning("retention_marker_ttl_unavailable", error=str(exc))
                    self._marker_ttl = 0
                    return None
            self._marker_ttl = MARKER_TTL_SEC
        return self._marker_ttl or None

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep every ``interval`` while connected, until ``stop``; gives the lease up at the
        end so another gateway takes over at once."""
        while not stop.is_set():
            self.backlog = False
            if self.services.nats.connected:
                try:
                    await self.sweep_once(stop)
                except Exception as exc:
                    log.warning("retention_sweep_failed", error=f"{type(exc).__name__}: {exc}")
            # A full batch means a backlog (a first start, a shorter retention): go on at once
            # (each step of a sweep already paused); otherwise wait for the next interval.
            pause = STEP_PAUSE_MIN_SEC if self.backlog else self.interval
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.lease.release(), 2.0)
