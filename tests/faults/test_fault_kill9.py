"""kill -9 of a worker host mid-run, under load: every run ends terminal, none is lost.

100 runs, two worker hosts; one of them is killed with SIGKILL twice (restarted in between)
while it is executing. Each run appends a line to its own marker file when it starts, so the
test can count how often every run really executed. The work queue is at-least-once: a run
the killed host was executing is redelivered after AckWait and runs again elsewhere. How many
ran twice is printed (``pytest -s``) and bounded: only the runs the killed host held can.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from faultkit import stored_snapshots
from worker_support import (
    WorkerProcess,
    make_job,
    open_store,
    queue_is_empty,
    submit,
    wait_until,
    worker_record,
)

from pyoco_server.testing import isolated_settings
from pyoco_server.testing.terminal_runs import TerminalRuns

RUNS = 100
CONCURRENCY = 2
#: Short AckWait so a killed host's runs come back quickly; ``in_progress`` keeps live runs.
ACKS = {"consumer_ack_wait_sec": 4.0, "ack_progress_interval_sec": 0.5}


def _started(markers) -> int:
    return sum(1 for _ in markers.glob("*.txt"))


@pytest.mark.slow
async def test_kill9_of_a_busy_worker_loses_no_run(nc, nats_server, tmp_path):
    settings = isolated_settings(nats_server.url, **ACKS)
    js, store = await open_store(nc, settings)
    markers = tmp_path / "markers"
    markers.mkdir()
    args = ("--concurrency", str(CONCURRENCY))
    steady = WorkerProcess(settings, tmp_path, *args, worker_id="steady")
    victim = WorkerProcess(settings, tmp_path, *args, worker_id="victim")
    watch = TerminalRuns()
    try:
        for worker in (steady, victim):
            await worker.wait_ready(js, settings)
        await watch.start(await js.key_value(settings.runs_kv_bucket))
        jobs = [
            make_job("marker_nap", {"marker": str(markers / f"{i}.txt"), "seconds": 0.15})
            for i in range(RUNS)
        ]
        for start in range(0, RUNS, 25):
            await asyncio.gather(
                *(submit(js, store, settings, j) for j in jobs[start : start + 25])
            )

        kills = 0
        for threshold in (20, 55):
            await wait_until(
                lambda t=threshold: asyncio.sleep(0, _started(markers) >= t),
                60,
                f"{threshold} runs to start",
            )
            # Kill while the victim is executing: its record lists the runs it holds.
            await wait_until(
                lambda: _holds_runs(js, settings, "victim"), 30, "the victim to be busy"
            )
            victim.process.kill()
            assert victim.wait(10) == -9
            kills += 1
            if kills == 1:
                victim = WorkerProcess(settings, tmp_path, *args, worker_id="victim")
                await victim.wait_ready(js, settings)

        await watch.wait_terminal(RUNS, timeout=120)
        snapshots = [(await store.get(job["run_id"]))[0] for job in jobs]
        assert [s["status"] for s in snapshots] == ["COMPLETED"] * RUNS
        executions = [len((markers / f"{i}.txt").read_text().splitlines()) for i in range(RUNS)]
        assert min(executions) >= 1, "a run completed without executing"
        ran_twice = sum(1 for count in executions if count > 1)
        # Only what the killed host held (at most CONCURRENCY runs per kill) can run again.
        assert sum(count - 1 for count in executions) <= kills * CONCURRENCY, executions
        await wait_until(lambda: queue_is_empty(js, settings), 30, "the queue to be empty")
        assert await stored_snapshots(js, settings) == RUNS
        print(
            f"\nkill -9 x{kills}: {RUNS} runs terminal, none lost; ran twice: {ran_twice} "
            f"({time.strftime('%H:%M:%S')})"
        )
    finally:
        await watch.stop()
        steady.stop()
        victim.stop()


async def _holds_runs(js, settings, worker_id: str) -> bool:
    record = await worker_record(js, settings, worker_id)
    return bool(record and record.get("current_run_ids"))
