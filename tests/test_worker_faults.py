"""Worker fault tolerance with real processes: crashes, signals, NATS outages, redelivery.

Every test starts its own ``pyoco-worker`` processes with settings tuned for speed (short
AckWait, frequent ``in_progress``) and checks what a user would notice: runs finish exactly
once where they can, are redelivered where they must be, and are never lost.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from nats.js.errors import NoKeysError
from worker_support import (
    REPO_ROOT,
    WorkerProcess,
    alive,
    dead_letter,
    for_run,
    make_job,
    open_store,
    queue_is_empty,
    submit,
    wait_for_run,
    wait_until,
    worker_record,
)

from pyoco_server.embedded import EmbeddedNats, free_port
from pyoco_server.jobs import encode_job, pending_snapshot
from pyoco_server.nats_client import connect, ensure_resources
from pyoco_server.testing import isolated_settings, process_env

FAST_ACKS = {"consumer_ack_wait_sec": 2.0, "ack_progress_interval_sec": 0.5}


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


async def test_run_longer_than_ack_wait_executes_exactly_once(nc, nats_server, tmp_path):
    settings = isolated_settings(nats_server.url, **FAST_ACKS)
    js, store = await open_store(nc, settings)
    # Concurrency 2: a redelivery during the run would be picked up and executed again.
    worker = WorkerProcess(settings, tmp_path, "--concurrency", "2")
    try:
        await worker.wait_ready(js, settings)
        marker = tmp_path / "runs.txt"
        job = make_job("marker_nap", {"marker": str(marker), "seconds": 5})
        run_id = await submit(js, store, settings, job)
        snapshot = await wait_for_run(store, run_id, timeout=40)
        assert snapshot["status"] == "COMPLETED"
        assert lines(marker) == 1
        info = await js.consumer_info(settings.work_stream, settings.consumer_name("default"))
        assert info.num_redelivered == 0
    finally:
        worker.stop()


async def test_killed_worker_run_is_redelivered_and_completed_elsewhere(nc, nats_server, tmp_path):
    settings = isolated_settings(nats_server.url, **FAST_ACKS)
    js, store = await open_store(nc, settings)
    workers = [WorkerProcess(settings, tmp_path) for _ in range(2)]
    try:
        for worker in workers:
            await worker.wait_ready(js, settings)
        marker = tmp_path / "runs.txt"
        job = make_job("marker_nap", {"marker": str(marker), "seconds": 1.5})
        run_id = await submit(js, store, settings, job)
        running = await wait_for_run(store, run_id, {"RUNNING"})
        victim = next(w for w in workers if w.worker_id == running["worker_id"])
        survivor = next(w for w in workers if w is not victim)
        record = await worker_record(js, settings, victim.worker_id)
        await wait_until(lambda: asyncio.sleep(0, lines(marker) == 1), what="the flow to start")

        victim.process.kill()  # kill -9 of the worker host, mid-run
        victim.wait(10)
        for pid in record["execution_pids"]:  # its execution processes go with it
            await wait_until(lambda pid=pid: asyncio.sleep(0, not alive(pid)), 10, "child exit")

        snapshot = await wait_for_run(store, run_id, timeout=30)
        assert snapshot["status"] == "COMPLETED"
        assert snapshot["worker_id"] == survivor.worker_id
        assert lines(marker) == 2  # at-least-once: the interrupted execution, then the retry
    finally:
        for worker in workers:
            worker.stop()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
async def test_signal_lets_the_running_flow_finish(nc, nats_server, tmp_path, stop_signal):
    settings = isolated_settings(nats_server.url)
    js, store = await open_store(nc, settings)
    worker = WorkerProcess(settings, tmp_path, "--grace-period", "30")
    try:
        await worker.wait_ready(js, settings)
        marker = tmp_path / "runs.txt"
        run_id = await submit(
            js, store, settings, make_job("marker_nap", {"marker": str(marker), "seconds": 1.5})
        )
        await wait_until(lambda: asyncio.sleep(0, lines(marker) == 1), what="the flow to start")
        worker.signal(stop_signal)
        later = await submit(js, store, settings, make_job("marker", {"marker": str(marker)}))
        assert worker.wait(30) == 0, worker.log()[-3000:]
        assert (await store.get(run_id))[0]["status"] == "COMPLETED"
        assert (await store.get(later))[0]["status"] == "PENDING", "a stopping worker pulled"
        assert lines(marker) == 1
        record = await worker_record(js, settings, worker.worker_id)
        assert record["state"] == "STOPPED" and record["current_run_ids"] == []
    finally:
        worker.stop()


async def test_sigterm_after_grace_period_requeues_the_run(nc, nats_server, tmp_path):
    settings = isolated_settings(nats_server.url)
    js, store = await open_store(nc, settings)
    first = WorkerProcess(settings, tmp_path, "--grace-period", "0.5")
    second = None
    try:
        await first.wait_ready(js, settings)
        marker, release = tmp_path / "runs.txt", tmp_path / "release"
        job = make_job("marker_wait", {"marker": str(marker), "release": str(release)})
        run_id = await submit(js, store, settings, job)
        await wait_until(lambda: asyncio.sleep(0, lines(marker) == 1), what="the flow to start")
        first.signal(signal.SIGTERM)
        assert first.wait(30) == 0, first.log()[-3000:]
        assert (await worker_record(js, settings, first.worker_id))["state"] == "STOPPED"
        assert (await store.get(run_id))[0]["status"] == "RUNNING"  # not lost, not finished

        second = WorkerProcess(settings, tmp_path)
        await wait_until(lambda: asyncio.sleep(0, lines(marker) == 2), what="the redelivery")
        release.touch()
        snapshot = await wait_for_run(store, run_id)
        assert snapshot["status"] == "COMPLETED"
        assert snapshot["worker_id"] == second.worker_id
    finally:
        first.stop()
        if second is not None:
            second.stop()


async def test_worker_resumes_after_nats_restart(tmp_path):
    server = EmbeddedNats(tmp_path / "nats", port=free_port())
    server.start()
    settings = isolated_settings(server.url)
    worker = None
    client = await connect(server.url, "pytest")
    try:
        js, store = await open_store(client, settings)
        worker = WorkerProcess(settings, tmp_path)
        await worker.wait_ready(js, settings)
        await client.close()

        server.stop()
        await asyncio.sleep(1.0)  # the worker notices and keeps reconnecting
        server.start()

        client = await connect(server.url, "pytest")
        js, store = await open_store(client, settings)
        run_id = await submit(js, store, settings, make_job("add", {"x": 1}))
        snapshot = await wait_for_run(store, run_id, timeout=30)
        assert snapshot["status"] == "COMPLETED"
        assert worker.process.poll() is None, "the worker restarted instead of resuming"
    finally:
        if worker is not None:
            worker.stop()
        await client.close()
        server.stop()


async def test_transient_kv_failure_naks_and_the_run_completes_later(nc, nats_server, tmp_path):
    settings = isolated_settings(nats_server.url)
    js, store = await open_store(nc, settings)
    worker = WorkerProcess(settings, tmp_path)
    try:
        await worker.wait_ready(js, settings)
        await js.delete_key_value(settings.runs_kv_bucket)  # KV writes now fail for real
        job = make_job("add", {"x": 1})
        await js.publish(settings.work_subject("default"), encode_job(job))

        def naked() -> bool:
            return any(
                e.get("event") == "job_failed"
                and e.get("kind") == "transient"
                and e.get("action") == "nak"
                and e.get("run_id") == job["run_id"]
                for e in worker.log_events()
            )

        await wait_until(lambda: asyncio.sleep(0, naked()), what="a NAK")
        assert not await queue_is_empty(js, settings), "the job was dropped"

        await ensure_resources(js, settings)  # the bucket is back; the gateway's record too
        js, store = await open_store(nc, settings)
        await store.create(pending_snapshot(job), job)
        snapshot = await wait_for_run(store, job["run_id"], timeout=20)
        assert snapshot["status"] == "COMPLETED"
    finally:
        worker.stop()


async def test_terminal_write_failure_naks_and_the_run_runs_again(nc, nats_server, tmp_path):
    settings = isolated_settings(nats_server.url)
    js, store = await open_store(nc, settings)
    worker = WorkerProcess(settings, tmp_path)
    try:
        await worker.wait_ready(js, settings)
        marker, release = tmp_path / "runs.txt", tmp_path / "release"
        job = make_job("marker_wait", {"marker": str(marker), "release": str(release)})
        await submit(js, store, settings, job)
        await wait_until(lambda: asyncio.sleep(0, lines(marker) == 1), what="the flow to start")
        await js.delete_key_value(settings.runs_kv_bucket)  # the terminal write will fail
        release.touch()

        def gave_up() -> bool:
            return any(
                e.get("event") == "terminal_snapshot_not_written"
                and e.get("err_id") == "ERR-PYOCO-0008"
                for e in worker.log_events()
            )

        await wait_until(lambda: asyncio.sleep(0, gave_up()), what="ERR-PYOCO-0008")
        assert not await queue_is_empty(js, settings), "the job was ACKed without a snapshot"
        await ensure_resources(js, settings)
        js, store = await open_store(nc, settings)
        await store.create(pending_snapshot(job), job)
        snapshot = await wait_for_run(store, job["run_id"], timeout=20)
        assert snapshot["status"] == "COMPLETED"
        assert lines(marker) == 2  # the NAKed job ran again
    finally:
        worker.stop()


async def test_max_deliver_exhaustion_terminates_into_the_dlq(nc, nats_server, tmp_path):
    settings = isolated_settings(nats_server.url, consumer_max_deliver=2)
    js, _store = await open_store(nc, settings)
    worker = WorkerProcess(settings, tmp_path)
    try:
        await worker.wait_ready(js, settings)
        await js.delete_key_value(settings.runs_kv_bucket)
        job = make_job("add", {"x": 1})
        await js.publish(settings.work_subject("default"), encode_job(job))
        entry = await dead_letter(js, settings, for_run(job["run_id"]), timeout=20)
        assert entry["reason"] == "max_deliveries"
        assert entry["num_delivered"] == 2 and entry["max_deliver"] == 2
        assert entry["job"] == job
        await wait_until(lambda: queue_is_empty(js, settings), what="the TERMed job to leave")
    finally:
        worker.stop()


async def test_dlq_publish_failure_is_logged_and_never_blocks(nc, nats_server, tmp_path):
    settings = isolated_settings(nats_server.url)
    js, store = await open_store(nc, settings)
    worker = WorkerProcess(settings, tmp_path)
    try:
        await worker.wait_ready(js, settings)
        await js.delete_stream(settings.dlq_stream)  # dead letters cannot be stored now
        run_id = await submit(js, store, settings, make_job("boom"))
        assert (await wait_for_run(store, run_id))["status"] == "FAILED"
        await wait_until(lambda: queue_is_empty(js, settings), what="the job to be ACKed")

        def logged() -> bool:
            return any(
                e.get("event") == "dlq_publish_failed" and e.get("err_id") == "ERR-PYOCO-0011"
                for e in worker.log_events()
            )

        await wait_until(lambda: asyncio.sleep(0, logged()), what="ERR-PYOCO-0011 in the log")
    finally:
        worker.stop()


async def test_two_hundred_runs_on_two_workers_are_all_finished(nc, nats_server, tmp_path):
    settings = isolated_settings(nats_server.url)
    js, store = await open_store(nc, settings)
    workers = [WorkerProcess(settings, tmp_path, "--concurrency", "2") for _ in range(2)]
    try:
        for worker in workers:  # a registered worker is listening for jobs already
            await worker.wait_ready(js, settings)
        ids = [await submit(js, store, settings, make_job("noop")) for _ in range(200)]
        await wait_until(lambda: queue_is_empty(js, settings), 60, "the queue to drain")
        snapshots = [await wait_for_run(store, run_id) for run_id in ids]
        assert [s["status"] for s in snapshots] == ["COMPLETED"] * 200
        kv = await js.key_value(settings.runs_kv_bucket)
        assert len(await _all_keys(kv)) == 200
        assert {s["worker_id"] for s in snapshots} == {w.worker_id for w in workers}
    finally:
        for worker in workers:
            worker.stop()


async def test_snapshot_cap_drops_task_records(nc, nats_server, tmp_path):
    settings = isolated_settings(nats_server.url, max_run_snapshot_bytes=1024)
    js, store = await open_store(nc, settings)
    worker = WorkerProcess(settings, tmp_path)
    try:
        await worker.wait_ready(js, settings)
        run_id = await submit(js, store, settings, make_job("big", {"size": 4096}))
        snapshot = await wait_for_run(store, run_id)
        assert snapshot["status"] == "COMPLETED"
        assert snapshot["tasks"] == {"big_output": "SUCCEEDED"}
        assert snapshot["task_records"] == {} and snapshot["task_records_truncated"] is True
        kv = await js.key_value(settings.runs_kv_bucket)
        assert len((await kv.get(run_id)).value) <= 1024
    finally:
        worker.stop()


async def test_run_once_takes_one_job_and_exits(nc, nats_server, tmp_path):
    settings = isolated_settings(nats_server.url)
    js, store = await open_store(nc, settings)
    ids = [await submit(js, store, settings, make_job("add", {"x": n})) for n in range(2)]
    worker = WorkerProcess(settings, tmp_path, "--run-once")
    try:
        assert await asyncio.to_thread(worker.wait, 30) == 0, worker.log()[-3000:]
        statuses = sorted([(await store.get(run_id))[0]["status"] for run_id in ids])
        assert statuses == ["COMPLETED", "PENDING"]
        assert (await worker_record(js, settings, worker.worker_id))["state"] == "STOPPED"
    finally:
        worker.stop()


def test_bad_flow_resolver_stops_the_worker_with_its_error_id(nats_server, tmp_path):
    settings = isolated_settings(nats_server.url)
    result = subprocess.run(
        [sys.executable, "-m", "pyoco_server.cli.worker", "--flow-resolver", "nope.py:resolve"],
        cwd=tmp_path,
        env=process_env(settings, {"PYTHONPATH": str(REPO_ROOT)}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "ERR-PYOCO-0017" in result.stderr and "nope.py" in result.stderr


async def _all_keys(kv) -> list[str]:
    """The bucket's keys. nats-py's ``keys()`` walks an ephemeral watcher and was seen (once,
    in CI) to raise NoKeysError for a bucket whose 200 keys had just been read one by one, so
    an empty answer is asked again before it counts."""
    for _ in range(3):
        try:
            return await kv.keys()
        except NoKeysError:
            await asyncio.sleep(0.5)
    return []
