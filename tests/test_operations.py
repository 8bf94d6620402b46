"""Operations end to end: real worker processes, real JetStream, the gateway app in-process.

A failing run's dead letter is listed, shown and redriven to COMPLETED once its cause is
fixed; a worker killed with SIGKILL mid-run leaves a run that ends FAILED within the bound,
once, and a worker that shows DISCONNECTED and then ages out of ``/workers``; a second worker
process with the same worker id refuses to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from falcon import testing
from worker_support import WorkerProcess, open_store, wait_until, worker_record

from pyoco_server.config import Settings
from pyoco_server.gateway.app import create_app
from pyoco_server.plugins import build_plugin_manager


@pytest.fixture
def ops_settings(settings: Settings) -> Settings:
    """Small bounds, so losing a worker shows within seconds."""
    return settings.with_overrides(
        run_heartbeat_interval_sec=0.2,
        worker_heartbeat_interval_sec=0.3,
        workers_kv_ttl_sec=1.5,
        workers_retention_sec=8.0,
        run_lost_after_sec=2.0,
        reconcile_interval_sec=0.3,
        consumer_ack_wait_sec=2.0,
        ack_progress_interval_sec=0.5,
        consumer_max_deliver=1,
    )


@contextlib.asynccontextmanager
async def gateway_app(settings: Settings) -> AsyncIterator[testing.ASGIConductor]:
    async with testing.ASGIConductor(
        create_app(settings, build_plugin_manager(plugins=[]))
    ) as conductor:
        yield conductor


async def run_status(gateway, run_id: str, statuses: set[str], timeout: float) -> dict:
    async def reached() -> dict | None:
        snapshot = (await gateway.simulate_get(f"/runs/{run_id}")).json
        return snapshot if snapshot.get("status") in statuses else None

    return await wait_until(reached, timeout, f"run {run_id} to be {statuses}")


async def submit(gateway, flow_name: str, **params) -> str:
    answer = await gateway.simulate_post("/runs", json={"flow_name": flow_name, "params": params})
    assert answer.status_code == 200, answer.text
    return answer.json["run_id"]


async def test_a_dead_letter_is_listed_shown_and_redriven_once_the_cause_is_fixed(
    nc, settings, tmp_path: Path
):
    worker = WorkerProcess(settings, tmp_path)
    try:
        js, _ = await open_store(nc, settings)
        await worker.wait_ready(js, settings)
        async with gateway_app(settings) as gateway:
            flag = tmp_path / "fixed"
            run_id = await submit(gateway, "flaky", flag=str(flag))
            failed = await run_status(gateway, run_id, {"FAILED"}, 30)
            assert "flag file" in failed["error"]

            async def listed() -> list:
                params = {"run_id": run_id}
                return (await gateway.simulate_get("/dlq", params=params)).json

            [entry] = await wait_until(listed, 10, "the dead letter")
            assert entry["reason"] == "execution_error" and entry["has_job"] is True
            shown = (await gateway.simulate_get(f"/dlq/{entry['seq']}")).json
            assert shown["job"]["params"] == {"flag": str(flag)}
            assert shown["worker_id"] == worker.worker_id

            flag.touch()
            redriven = await gateway.simulate_post(f"/dlq/{entry['seq']}/redrive")
            assert redriven.json == {
                "run_id": run_id,
                "attempt": 2,
                "new_run": False,
                "seq": entry["seq"],
                "redriven_from": run_id,
                "status": "PENDING",
            }
            done = await run_status(gateway, run_id, {"COMPLETED", "FAILED"}, 30)
            assert done["status"] == "COMPLETED" and done["attempt"] == 2
            assert done["attempts"][0]["status"] == "FAILED"
            assert "flag file" in done["attempts"][0]["error"]
            again = await gateway.simulate_post(f"/dlq/{entry['seq']}/redrive")
            assert again.status_code == 409 and again.json["reason"] == "already_redriven"

            # bulk: every execution_error entry, not the flow_not_found one
            other_flag = tmp_path / "fixed-too"
            runs = [await submit(gateway, "flaky", flag=str(other_flag)) for _ in range(3)]
            missing = await submit(gateway, "no-such-flow")
            for each in [*runs, missing]:
                await run_status(gateway, each, {"FAILED"}, 30)

            async def all_listed() -> bool:
                entries = (await gateway.simulate_get("/dlq")).json
                return {e["run_id"] for e in entries} >= {*runs, missing}

            await wait_until(all_listed, 10, "the dead letters")
            other_flag.touch()
            report = (
                await gateway.simulate_post("/dlq/redrive", params={"reason": "execution_error"})
            ).json
            assert report["redriven"] == 3 and report["skipped"] == report["failed"] == 0
            for each in runs:
                assert (await run_status(gateway, each, {"COMPLETED"}, 30))["attempt"] == 2
            left = (await gateway.simulate_get("/dlq")).json
            assert [(e["run_id"], e["reason"]) for e in left] == [(missing, "flow_not_found")]
    finally:
        worker.stop()


async def test_a_killed_worker_s_run_ends_failed_once_and_the_worker_shows_disconnected(
    nc, ops_settings, tmp_path: Path
):
    worker = WorkerProcess(ops_settings, tmp_path)
    try:
        js, _ = await open_store(nc, ops_settings)
        await worker.wait_ready(js, ops_settings)
        async with gateway_app(ops_settings) as gateway:
            marker = tmp_path / "ran"
            run_id = await submit(
                gateway, "marker_wait", marker=str(marker), release=str(tmp_path / "never")
            )
            await run_status(gateway, run_id, {"RUNNING"}, 30)
            await wait_until(lambda: asyncio.sleep(0, marker.exists()), 10, "the task to start")
            os.kill(worker.pid, signal.SIGKILL)
            killed_at = time.monotonic()

            async def disconnected() -> dict | None:
                listed = (await gateway.simulate_get("/workers", params={"scope": "all"})).json
                found = [w for w in listed if w["worker_id"] == worker.worker_id]
                return found[0] if found and found[0]["state"] == "DISCONNECTED" else None

            shown = await wait_until(disconnected, 10, "the worker to show DISCONNECTED")
            assert shown["alive"] is False and shown["heartbeat_age_sec"] > 1.5
            only = (await gateway.simulate_get("/workers", params={"state": "DISCONNECTED"})).json
            assert [w["worker_id"] for w in only] == [worker.worker_id]
            assert (await gateway.simulate_get("/workers", params={"state": "IDLE"})).json == []

            snapshot = await run_status(gateway, run_id, {"FAILED", "COMPLETED"}, 20)
            elapsed = time.monotonic() - killed_at
            bound = ops_settings.consumer_ack_wait_sec + ops_settings.run_lost_after_sec
            assert elapsed < bound + 6, f"ended {elapsed:.1f} s after the kill"
            assert snapshot["status"] == "FAILED"
            assert snapshot["error"].startswith(
                (f"lost: worker {worker.worker_id} stopped heartbeating", "max_deliveries:")
            )

            await asyncio.sleep(2 * ops_settings.reconcile_interval_sec + 0.5)
            entries = (await gateway.simulate_get("/dlq", params={"run_id": run_id})).json
            assert len(entries) == 1 and entries[0]["reason"] in ("lost", "max_deliveries")
            assert (await gateway.simulate_get(f"/runs/{run_id}")).json["error"] == snapshot[
                "error"
            ]
            info = await js.stream_info(ops_settings.work_stream)
            assert info.state.messages == 0  # the dead job does not sit in the queue
            assert len(marker.read_text().splitlines()) == 1  # MaxDeliver 1: it ran once

            async def aged_out() -> bool:
                listed = (await gateway.simulate_get("/workers", params={"scope": "all"})).json
                return worker.worker_id not in [w["worker_id"] for w in listed]

            await wait_until(aged_out, 20, "the dead worker to age out of /workers")
    finally:
        worker.stop()


async def test_a_second_worker_with_the_same_id_refuses_to_start(nc, settings, tmp_path: Path):
    settings = settings.with_overrides(workers_kv_ttl_sec=30.0)
    js, _ = await open_store(nc, settings)
    dirs = [tmp_path / name for name in ("first", "second", "third")]
    for directory in dirs:
        directory.mkdir()
    first = WorkerProcess(settings, dirs[0], worker_id="shared-id")
    second = third = None
    try:
        await first.wait_ready(js, settings)
        record = await worker_record(js, settings, "shared-id")
        second = WorkerProcess(settings, dirs[1], worker_id="shared-id")
        assert await asyncio.to_thread(second.wait, 30) == 1
        assert "ERR-PYOCO-0031" in second.log()
        assert "in use by a live worker" in second.log()
        assert first.process.poll() is None
        assert (await worker_record(js, settings, "shared-id"))["instance_id"] == record[
            "instance_id"
        ]

        # a crashed worker's claim does not wait for the TTL on its own host
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        third = WorkerProcess(settings, dirs[2], worker_id="shared-id")

        async def claimed() -> dict | None:
            assert third.process.poll() is None, third.log()[-3000:]
            current = await worker_record(js, settings, "shared-id")
            return current if current and current["pid"] == third.pid else None

        taken = await wait_until(claimed, settings.workers_kv_ttl_sec / 2, "the restart")
        assert taken["instance_id"] != record["instance_id"] and taken["state"] == "IDLE"
        assert any(e.get("event") == "worker_id_taken_over" for e in third.log_events())
    finally:
        for process in (first, second, third):
            if process is not None:
                process.stop()


async def test_a_pending_run_on_a_tag_nobody_serves_is_reported_not_failed(nc, ops_settings):
    js, _ = await open_store(nc, ops_settings)
    kv = await js.key_value(ops_settings.workers_kv_bucket)
    record = {"worker_id": "w-gpu", "state": "IDLE", "tags": ["gpu"], "heartbeat_at": time.time()}
    await kv.put("w-gpu", json.dumps(record).encode())
    async with gateway_app(ops_settings) as gateway:
        answer = await gateway.simulate_post("/runs", json={"flow_name": "f", "tag": "nobody"})
        run_id = answer.json["run_id"]
        served = await gateway.simulate_post("/runs", json={"flow_name": "f", "tag": "gpu"})
        await asyncio.sleep(ops_settings.run_lost_after_sec + 1)
        snapshot = (await gateway.simulate_get(f"/runs/{run_id}")).json
        assert snapshot["status"] == "PENDING"
        assert snapshot["queue"]["tag"] == "nobody" and snapshot["queue"]["workers"] == 0
        assert "no live worker serves tag 'nobody'" in snapshot["queue"]["note"]
        await kv.put("w-gpu", json.dumps({**record, "heartbeat_at": time.time()}).encode())
        await asyncio.sleep(1.1)  # past the gateway's one-second cache of the workers
        other = (await gateway.simulate_get(f"/runs/{served.json['run_id']}")).json
        assert other["queue"] == {"tag": "gpu", "workers": 1}

        metrics = (await gateway.simulate_get("/metrics")).text
        ages = {
            line.split('"')[1]: float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("pyoco_queue_oldest_age_seconds{")
        }
        assert ages["nobody"] >= ops_settings.run_lost_after_sec
        assert 'pyoco_queue_workers{tag="nobody"} 0.0' in metrics
        assert 'pyoco_queue_workers{tag="gpu"} 1.0' in metrics
