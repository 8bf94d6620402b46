"""Soak: many runs on two worker hosts that are restarted every few seconds.

Every restart alternates between a graceful stop (SIGTERM with a short grace period: running
flows finish or are handed back) and a crash (SIGKILL: the runs come back after AckWait), and
a replacement host with the same id starts at once. At the end there must be exactly one
terminal, COMPLETED snapshot per submitted run and nothing left in the queue.

CI runs ``PYOCO_SOAK_RUNS`` = 400 (about 15 s on 2 cores); the issue's figure is 2,000::

    PYOCO_SOAK_RUNS=2000 .venv/bin/python -m pytest tests/faults/test_fault_soak.py -s
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time

import pytest
from faultkit import stored_snapshots
from worker_support import WorkerProcess, make_job, open_store, queue_is_empty, submit, wait_until

from pyoco_server.testing import isolated_settings
from pyoco_server.testing.terminal_runs import TerminalRuns

RUNS = int(os.environ.get("PYOCO_SOAK_RUNS", "400"))
RESTART_EVERY_SEC = float(os.environ.get("PYOCO_SOAK_RESTART_SEC", "2.0"))
ACKS = {"consumer_ack_wait_sec": 3.0, "ack_progress_interval_sec": 0.5}


class Restarter:
    """Restarts the worker hosts in turn until stopped; counts graceful stops and crashes."""

    def __init__(self, settings, log_dir, ids: list[str]) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.workers = {worker_id: self.start(worker_id) for worker_id in ids}
        self.graceful = 0
        self.crashes = 0

    def start(self, worker_id: str) -> WorkerProcess:
        return WorkerProcess(
            self.settings,
            self.log_dir,
            "--concurrency",
            "2",
            "--grace-period",
            "0.5",
            worker_id=worker_id,
        )

    async def run(self, stop: asyncio.Event) -> None:
        turn = 0
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), RESTART_EVERY_SEC)
            if stop.is_set():
                return
            worker_id = sorted(self.workers)[turn % len(self.workers)]
            old = self.workers[worker_id]
            if turn % 2 == 0:
                old.signal(signal.SIGTERM)
                self.graceful += 1
            else:
                old.process.kill()
                self.crashes += 1
            await asyncio.to_thread(old.wait, 30)
            old.stop()
            old.log_path.rename(self.log_dir / f"{worker_id}-{turn}.log")  # keep every life's log
            self.workers[worker_id] = self.start(worker_id)
            turn += 1

    def redelivered_executions(self) -> int:
        """Runs started again after a redelivery, from every worker log of the soak."""
        count = 0
        for path in self.log_dir.glob("soak-*.log"):
            for line in path.read_text(errors="replace").splitlines():
                if not line.startswith("{"):
                    continue
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    count += event.get("event") == "run_started" and event["num_delivered"] > 1
        return count

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_soak_with_restarting_workers_finishes_every_run_exactly_once(
    nc, nats_server, tmp_path
):
    settings = isolated_settings(nats_server.url, **ACKS)
    js, store = await open_store(nc, settings)
    restarter = Restarter(settings, tmp_path, ["soak-a", "soak-b"])
    watch = TerminalRuns()
    stop = asyncio.Event()
    restarts = None
    try:
        for worker in restarter.workers.values():
            await worker.wait_ready(js, settings)
        kv = await js.key_value(settings.runs_kv_bucket)
        await watch.start(kv)
        started = time.monotonic()
        restarts = asyncio.get_running_loop().create_task(restarter.run(stop))
        jobs = [make_job("nap", {"seconds": 0.05}) for _ in range(RUNS)]
        for first in range(0, RUNS, 50):
            await asyncio.gather(
                *(submit(js, store, settings, j) for j in jobs[first : first + 50])
            )
        await watch.wait_terminal(RUNS, timeout=60 + RUNS * 0.2)
        elapsed = time.monotonic() - started
        stop.set()
        await restarts

        statuses = [(await store.get(job["run_id"]))[0]["status"] for job in jobs]
        assert statuses == ["COMPLETED"] * RUNS
        assert await stored_snapshots(js, settings) == RUNS
        assert watch.terminal() == RUNS
        await wait_until(lambda: queue_is_empty(js, settings), 30, "the queue to be empty")
        print(
            f"\nsoak: {RUNS} runs, {RUNS} terminal snapshots in {elapsed:.1f}s; "
            f"{restarter.graceful} graceful restarts, {restarter.crashes} crashes, "
            f"{restarter.redelivered_executions()} executions after a redelivery"
        )
        assert restarter.graceful + restarter.crashes >= 2, "no restart happened under load"
    finally:
        stop.set()
        if restarts is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(restarts, 60)
        await watch.stop()
        restarter.stop()
