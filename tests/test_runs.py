"""RunStore against real JetStream KV: CAS, terminal guard, size cap, enrichment."""

from __future__ import annotations

import asyncio
import json

import pytest

from pyoco_server.config import Settings
from pyoco_server.jobs import InvalidJob, build_job, decode_job, encode_job, pending_snapshot
from pyoco_server.nats_client import ensure_resources
from pyoco_server.plugins import build_plugin_manager
from pyoco_server.runs import RunStore, encode_capped


@pytest.fixture
async def store(nc, settings: Settings):
    js = nc.jetstream()
    await ensure_resources(js, settings)
    kv = await js.key_value(settings.runs_kv_bucket)
    return RunStore(kv, build_plugin_manager(plugins=[]), settings)


def make_job(run_id: str = "run-1", **extra):
    return build_job(run_id, "demo", "default", ["default"], {"x": 1}, **extra)


async def test_concurrent_updates_are_never_lost(store: RunStore):
    job = make_job()
    await store.create(pending_snapshot(job), job)

    async def add(index: int):
        def change(snapshot):
            snapshot["tasks"][f"t{index}"] = "SUCCEEDED"
            return snapshot

        await store.update("run-1", change, "progress")

    await asyncio.gather(*(add(i) for i in range(20)))
    snapshot, _ = await store.get("run-1")
    assert len(snapshot["tasks"]) == 20


async def test_terminal_snapshot_is_never_overwritten_by_non_terminal(store: RunStore):
    job = make_job()
    await store.create(pending_snapshot(job), job)
    await store.update("run-1", lambda s: {**s, "status": "COMPLETED"}, "finished")
    after, _ = await store.update("run-1", lambda s: {**s, "status": "RUNNING"}, "progress")
    assert after["status"] == "COMPLETED"
    reopened, _ = await store.update(
        "run-1", lambda s: {**s, "status": "PENDING"}, "submitted", reopen=True
    )
    assert reopened["status"] == "PENDING"


async def test_yaml_run_is_enriched_through_pyoco_enrich_snapshot(store: RunStore):
    job = make_job(workflow_yaml=b"flow: {graph: a}\n")
    await store.create(pending_snapshot(job), job)
    snapshot, _ = await store.get("run-1")
    assert snapshot["workflow_yaml_bytes"] == len(b"flow: {graph: a}\n")
    assert "workflow_yaml" not in snapshot  # the YAML text never lands in KV


def test_cap_drops_task_records_then_trims():
    snapshot = pending_snapshot(make_job())
    snapshot["tasks"] = {"a": "SUCCEEDED"}
    snapshot["task_records"] = {"a": {"output": "x" * 5000}}
    data = encode_capped(snapshot, 2048)
    decoded = json.loads(data)
    assert len(data) <= 2048
    assert decoded["task_records"] == {} and decoded["task_records_truncated"] is True
    assert decoded["tasks"] == {"a": "SUCCEEDED"}

    huge = pending_snapshot(make_job())
    huge["params"] = {"blob": "y" * 10000}
    huge["error"] = "e" * 10000
    huge["tasks"] = {f"task_{i}": "PENDING" for i in range(500)}
    assert len(encode_capped(huge, 1024)) <= 1024


def test_job_validation():
    job = make_job()
    assert decode_job(encode_job(job)) == job
    for bad in (
        b"not json",
        b"[1]",
        b'{"flow_name": "x"}',
        b'{"run_id": "r"}',
        b'{"run_id": "r", "flow_name": "f", "params": []}',
    ):
        with pytest.raises(InvalidJob):
            decode_job(bad)
