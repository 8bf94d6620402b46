"""RunStore against real JetStream KV: CAS, terminal guard, size cap, enrichment."""

from __future__ import annotations

import asyncio
import json

import pytest

from pyoco_server.config import Settings
from pyoco_server.hookspecs import hookimpl
from pyoco_server.jobs import InvalidJob, build_job, decode_job, encode_job, pending_snapshot
from pyoco_server.nats_client import ensure_resources
from pyoco_server.plugins import build_plugin_manager
from pyoco_server.run_store import RunStore, encode_capped


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


async def test_an_enrichment_plugin_cannot_rewrite_who_created_the_run(nc, settings: Settings):
    """A plugin adds its own fields, but the run tree and schedule fields stay pyoco-server's:
    a plugin rewriting ``schedule_id`` would move the run to another schedule's history."""

    class Rewriter:
        @hookimpl
        def pyoco_enrich_snapshot(self, snapshot, job, event):
            return {"schedule_id": "other", "parent_run_id": "other", "team": "blue"}

    js = nc.jetstream()
    await ensure_resources(js, settings)
    pm = build_plugin_manager(plugins=[])
    pm.register(Rewriter(), name="rewriter")
    store = RunStore(await js.key_value(settings.runs_kv_bucket), pm, settings)
    job = make_job()
    snapshot = {**pending_snapshot(job), "schedule_id": "sched-1", "parent_run_id": None}
    await store.create(snapshot, job)
    stored, _ = await store.get("run-1")
    assert (stored["schedule_id"], stored["parent_run_id"], stored["team"]) == (
        "sched-1",
        None,
        "blue",
    )


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


class CountingKv:
    """The real KV handle, counting reads (to see which writes needed one)."""

    def __init__(self, kv):
        self.kv = kv
        self.gets = 0

    async def get(self, key):
        self.gets += 1
        return await self.kv.get(key)

    def __getattr__(self, name):
        return getattr(self.kv, name)


async def test_a_known_revision_saves_the_read_and_a_stale_one_is_caught(store: RunStore):
    job = make_job()
    await store.create(pending_snapshot(job), job)
    counting = RunStore(CountingKv(store.kv), store.pm, store.settings)
    claimed = await counting.update("run-1", lambda s: {**s, "status": "RUNNING"}, "started")
    assert counting.kv.gets == 1

    def finish(snapshot):
        return {**snapshot, "status": "COMPLETED", "tasks": {**snapshot["tasks"], "a": "DONE"}}

    # Someone else wrote meanwhile (the gateway recording a cancel request, say).
    await store.update("run-1", lambda s: {**s, "cancel_requested": True}, "cancel")
    finished, _ = await counting.update("run-1", finish, "finished", known=claimed)
    assert counting.kv.gets == 2  # the compare-and-set failed once, then the latest was read
    assert finished["cancel_requested"] is True and finished["status"] == "COMPLETED"

    fresh = await counting.update("run-1", lambda s: {**s, "note": 1}, "progress")
    again = await counting.update("run-1", lambda s: {**s, "note": 2}, "progress", known=fresh)
    assert counting.kv.gets == 3  # the known revision was current: no read
    assert (await store.get("run-1"))[0]["note"] == 2 and again[1] > fresh[1]


async def test_a_known_snapshot_never_decides_to_write_nothing(store: RunStore):
    job = make_job()
    await store.create(pending_snapshot(job), job)
    stale_terminal = await store.update("run-1", lambda s: {**s, "status": "FAILED"}, "finished")
    await store.update("run-1", lambda s: {**s, "status": "PENDING"}, "redrive", reopen=True)

    def finish_unless_terminal(snapshot):
        return (
            None
            if snapshot["status"] in ("COMPLETED", "FAILED")
            else {
                **snapshot,
                "status": "COMPLETED",
            }
        )

    after, _ = await store.update("run-1", finish_unless_terminal, "finished", known=stale_terminal)
    assert after["status"] == "COMPLETED"  # judged on the latest snapshot, not the stale one
