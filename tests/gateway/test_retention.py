"""Retention: terminal runs older than PYOCO_RUN_RETENTION_SEC leave KV and every gateway's
index; non-terminal runs never expire; the index on disk survives a restart."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from gwtools import TENANT_HEADER, FakeTenancy, start_gateway
from nats.js.errors import KeyNotFoundError
from structlog.testing import capture_logs
from test_dlq import failed_run, publish_dead_letter

from pyoco_server.gateway.retention import sweeper as sweeper_module
from pyoco_server.gateway.retention.sweeper import MARKER_TTL_SEC
from pyoco_server.gateway.run_index import RunIndex
from pyoco_server.gateway.run_index_files import open_index
from pyoco_server.nats_client import ensure_resources
from pyoco_server.stream_reader import StreamRecord

HOUR = 3600.0
STATUSES = (
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "PENDING",
    "RUNNING",
    "CANCELLING",
    "WAITING",
    "PENDING_APPROVAL",
)


async def runs_bucket(nc, settings):
    await ensure_resources(nc.jetstream(), settings)
    return await nc.jetstream().key_value(settings.runs_kv_bucket)


async def put_run(kv, run_id: str, status: str, age_sec: float, **fields) -> int:
    """A snapshot written straight to KV, last written ``age_sec`` ago."""
    now = time.time()
    snapshot = {
        "run_id": run_id,
        "flow_name": "old",
        "status": status,
        "tag": "default",
        "tags": ["default"],
        "params": {},
        "tasks": {},
        "heartbeat_at": now - age_sec,
        "updated_at": now - age_sec,
        **fields,
    }
    return await kv.put(run_id, json.dumps(snapshot).encode())


async def listed(gateway, **headers) -> list[str]:
    answer = await gateway.simulate_get("/runs", params={"limit": "200"}, headers=headers)
    assert answer.status_code == 200, answer.text
    return sorted(run["run_id"] for run in answer.json)


@pytest.mark.parametrize("tenant", [None, "acme"])
async def test_only_old_terminal_runs_expire_from_kv_every_index_counts_and_metrics(
    nc, gateway_settings, tenant
):
    settings = gateway_settings.with_overrides(run_retention_sec=HOUR)
    kv = await runs_bucket(nc, settings)
    extra = {"tenant_id": tenant} if tenant else {}
    headers = {TENANT_HEADER: tenant} if tenant else {}
    for status in STATUSES:  # a day old: past the retention
        await put_run(kv, f"old-{status.lower()}", status, 24 * HOUR, **extra)
    await put_run(kv, "recent-completed", "COMPLETED", 60, **extra)
    first = start_gateway(settings, middleware=[FakeTenancy()])
    second = start_gateway(settings, middleware=[FakeTenancy()])
    async with first as one, second as two:
        # each gateway sweeps at start-up (and every few seconds); one holds the lease
        sweepers = [one.app.retention, two.app.retention]
        for sweeper in sweepers:
            await sweeper.sweep_once()

        kept = [
            "old-cancelling",
            "old-pending",
            "old-pending_approval",
            "old-running",
            "old-waiting",
            "recent-completed",
        ]
        for gateway in (one, two):
            assert await listed(gateway, **headers) == kept
            answer = (await gateway.simulate_get("/runs/counts", headers=headers)).json
            counts = answer["by_status"]
            assert answer["total"] == 6
            assert counts["COMPLETED"] == 1 and counts["FAILED"] == counts["CANCELLED"] == 0
            assert counts["PENDING"] == counts["RUNNING"] == counts["CANCELLING"] == 1
            # a parent waiting on its children and a bundle awaiting approval never expire
            assert counts["WAITING"] == counts["PENDING_APPROVAL"] == 1
            metrics = (await gateway.simulate_get("/metrics")).text
            assert 'pyoco_runs_total{status="FAILED"} 0.0' in metrics
            assert 'pyoco_runs_total{status="RUNNING"} 1.0' in metrics
        for status in ("COMPLETED", "FAILED", "CANCELLED"):
            with pytest.raises(KeyNotFoundError):
                await kv.get(f"old-{status.lower()}")
        # the purge marker removes itself from the stream later (per-message TTL)
        marker = await nc.jetstream().get_last_msg(
            f"KV_{settings.runs_kv_bucket}", f"$KV.{settings.runs_kv_bucket}.old-failed"
        )
        assert marker.headers["KV-Operation"] == "PURGE"
        assert marker.headers["Nats-TTL"] == f"{MARKER_TTL_SEC}s"
        for run_id in kept:
            assert (await kv.get(run_id)).value
            assert (await one.simulate_get(f"/runs/{run_id}", headers=headers)).status_code == 200
        assert [await sweeper.sweep_once() for sweeper in sweepers] == [0, 0]


async def test_a_run_written_after_it_was_judged_expired_stays(nc, gateway_settings):
    settings = gateway_settings.with_overrides(run_retention_sec=HOUR)
    kv = await runs_bucket(nc, settings)
    stale_revision = await put_run(kv, "reopened", "FAILED", 24 * HOUR)
    await put_run(kv, "reopened", "PENDING", 24 * HOUR)  # e.g. a redrive reopened it
    async with start_gateway(settings) as gateway:
        sweeper = gateway.app.retention
        assert await sweeper._purge("reopened", stale_revision, None) is False
        assert await sweeper.sweep_once() == 0
        assert json.loads((await kv.get("reopened")).value)["status"] == "PENDING"


async def test_zero_keeps_runs_forever(nc, gateway_settings):
    settings = gateway_settings.with_overrides(run_retention_sec=0)
    kv = await runs_bucket(nc, settings)
    await put_run(kv, "ancient", "COMPLETED", 1000 * 24 * HOUR)
    async with start_gateway(settings) as gateway:
        assert await gateway.app.retention.sweep_once() == 0
        assert await listed(gateway) == ["ancient"]


async def test_a_dead_letter_whose_run_expired_shows_and_redrives_as_a_new_run(
    nc, gateway_settings
):
    settings = gateway_settings.with_overrides(run_retention_sec=1)
    async with start_gateway(settings, middleware=[FakeTenancy()]) as gateway:
        js = nc.jetstream()
        run_id, job = await failed_run(gateway, nc, settings)
        seq = await publish_dead_letter(js, settings, "default", run_id=run_id, job=job)
        time.sleep(1.2)
        assert await gateway.app.retention.sweep_once() == 1
        assert (await gateway.simulate_get(f"/runs/{run_id}")).status_code == 404

        entry = await gateway.simulate_get(f"/dlq/{seq}")
        assert entry.status_code == 200 and entry.json["run_id"] == run_id
        refused = await gateway.simulate_post(f"/dlq/{seq}/redrive")
        assert refused.status_code == 409 and refused.json["reason"] == "run_missing"
        redriven = await gateway.simulate_post(f"/dlq/{seq}/redrive", params={"new_run": "true"})
        assert redriven.status_code == 200, redriven.text
        assert redriven.json["new_run"] is True and redriven.json["run_id"] != run_id
        fresh = await gateway.simulate_get(f"/runs/{redriven.json['run_id']}")
        assert fresh.json["status"] == "PENDING" and fresh.json["flow_name"] == job["flow_name"]


async def test_a_restart_keeps_the_index_on_disk_and_reads_only_the_tail(
    nc, gateway_settings, tmp_path
):
    settings = gateway_settings.with_overrides(index_dir=str(tmp_path))
    kv = await runs_bucket(nc, settings)
    for n in range(30):
        await put_run(kv, f"run-{n:02d}", "COMPLETED", 10)
    async with start_gateway(settings) as gateway:
        assert len(await listed(gateway)) == 30
        # a second gateway on this host cannot share the file: it gets a file of its own
        async with start_gateway(settings) as other:
            assert len(await listed(other)) == 30
            assert other.app.services.index.path != gateway.app.services.index.path
    last = await put_run(kv, "run-30", "RUNNING", 1)
    await put_run(kv, "run-05", "FAILED", 1)
    reopened = open_index(settings)
    assert reopened.applied_seq == last - 1 and len(reopened) == 30
    reopened.close()
    async with start_gateway(settings) as gateway:
        runs = (await gateway.simulate_get("/runs", params={"limit": "2"})).json
        assert [r["run_id"] for r in runs] == ["run-05", "run-30"]
        assert (await gateway.simulate_get("/runs/counts")).json["by_status"]["COMPLETED"] == 29


def test_local_expiry_drops_old_terminal_runs_only():
    index = RunIndex("b")
    now = time.time()
    records = [
        StreamRecord(
            seq,
            f"$KV.b.{status}",
            json.dumps({"status": status, "updated_at": now - 10 * HOUR}).encode(),
        )
        for seq, status in enumerate(STATUSES, start=1)
    ]
    index.apply(records)
    assert sorted(index.expire(now - HOUR)) == ["CANCELLED", "COMPLETED", "FAILED"]
    assert sorted(s["run_id"] for s in index.select(None)) == [
        "CANCELLING",
        "PENDING",
        "PENDING_APPROVAL",
        "RUNNING",
        "WAITING",
    ]
    assert index.status_counts()["COMPLETED"] == 0 and len(index) == 5
    assert index.status_counts()["WAITING"] == index.status_counts()["PENDING_APPROVAL"] == 1


@pytest.mark.parametrize("tenant", [None, "acme"])
async def test_a_backlog_is_swept_in_paced_batches_while_submits_are_answered(
    nc, gateway_settings, monkeypatch, tenant
):
    monkeypatch.setattr(sweeper_module, "SWEEP_BATCH", 40)
    monkeypatch.setattr(sweeper_module, "SWEEP_STEP", 4)
    monkeypatch.setattr(sweeper_module, "STEP_PAUSE_MIN_SEC", 0.05)
    settings = gateway_settings.with_overrides(run_retention_sec=HOUR)
    kv = await runs_bucket(nc, settings)
    extra = {"tenant_id": tenant} if tenant else {}
    headers = {TENANT_HEADER: tenant} if tenant else {}
    for n in range(160):
        await put_run(kv, f"old-{n:03d}", "COMPLETED", 24 * HOUR, **extra)

    async def stored() -> int:
        answer = await gateway.simulate_get("/runs/counts", headers=headers)
        assert answer.status_code == 200, answer.text
        return answer.json["total"]

    async def wait_for(condition, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not await condition():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.02)

    with capture_logs() as logs:
        async with start_gateway(settings, middleware=[FakeTenancy()]) as gateway:
            # the background sweeper starts on the backlog at once
            await wait_for(lambda: _below(stored, 160), 30)
            submitted = await gateway.simulate_post(
                "/runs", json={"flow_name": "fresh", "params": {}}, headers=headers
            )
            assert submitted.status_code < 300, submitted.text
            # answered while most of the backlog was still waiting
            assert await stored() > 100
            await wait_for(lambda: _equal(stored, 1), 60)
            assert await listed(gateway, **headers) == [submitted.json["run_id"]]
    swept = [entry["purged"] for entry in logs if entry["event"] == "retention_swept"]
    assert sum(swept) == 160 and len(swept) >= 4 and max(swept) <= 40


async def _below(value, limit: int) -> bool:
    return await value() < limit


async def _equal(value, expected: int) -> bool:
    return await value() == expected
