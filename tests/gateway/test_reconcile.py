"""Lost-run reconciliation and exhausted jobs on real JetStream, with real gateway services
(two of them where exactly-once matters)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import pytest
from gwtools import stored_jobs
from worker_support import make_job, open_store, submit, wait_for_run

from pyoco_server.config import Settings
from pyoco_server.gateway.app import build_reconciler
from pyoco_server.gateway.reconciler import Reconciler
from pyoco_server.gateway.services import GatewayServices
from pyoco_server.jobs import encode_job, pending_snapshot
from pyoco_server.plugins import build_plugin_manager
from pyoco_server.worker.consumer import ensure_consumer


@pytest.fixture
def quiet_settings(settings: Settings) -> Settings:
    """Short bounds; the background loop sleeps, the tests call reconcile_once themselves."""
    return settings.with_overrides(
        run_lost_after_sec=2.0,
        reconcile_interval_sec=3600.0,
        consumer_ack_wait_sec=1.0,
        ack_progress_interval_sec=0.5,
        consumer_max_deliver=3,
    )


@contextlib.asynccontextmanager
async def gateways(settings: Settings, count: int) -> AsyncIterator[list[Reconciler]]:
    """``count`` independent gateways' reconcilers (own NATS connection, index, reconciler)."""
    started: list[tuple[GatewayServices, Reconciler]] = []
    try:
        for _ in range(count):
            services = GatewayServices(settings, build_plugin_manager(plugins=[]))
            await services.start()
            reconciler = build_reconciler(services)
            started.append((services, reconciler))
            await reconciler.start()
        yield [reconciler for _, reconciler in started]
    finally:
        for services, reconciler in started:
            await reconciler.stop()
            await services.stop()


async def silent_run(store, settings, job, *, age: float, status="RUNNING", **claim) -> str:
    """A run a worker claimed and then stopped heartbeating ``age`` seconds ago."""
    await store.create(pending_snapshot(job), job)
    beat = time.time() - age
    fields = {"status": status, "worker_id": "w-dead", "heartbeat_at": beat, **claim}
    await store.update(job["run_id"], lambda s: {**s, **fields, "start_time": beat}, "started")
    return job["run_id"]


async def dead_letters(js, settings) -> list[dict]:
    info = await js.stream_info(settings.dlq_stream)
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        with contextlib.suppress(Exception):
            found.append(json.loads((await js.get_msg(settings.dlq_stream, seq)).data))
    return found


async def test_two_gateways_end_each_lost_run_exactly_once(nc, quiet_settings):
    js, store = await open_store(nc, quiet_settings)
    jobs = [make_job("noop", {"i": i}) for i in range(8)]
    for job in jobs:
        # the job message is gone (never stored): nothing will ever deliver it again
        await silent_run(store, quiet_settings, job, age=30, job_stream_seq=10**9)
    async with gateways(quiet_settings, 2) as (first, second):
        rounds = await asyncio.gather(*(g.reconcile_once() for g in (first, second, first, second)))
    ended = [run_id for found in rounds for run_id in found]
    assert sorted(ended) == sorted(job["run_id"] for job in jobs)  # each once, by one gateway
    letters = await dead_letters(js, quiet_settings)
    assert sorted(entry["run_id"] for entry in letters) == sorted(ended)
    for job in jobs:
        snapshot, _ = await store.get(job["run_id"])
        assert snapshot["status"] == "FAILED"
        assert snapshot["error"] == "lost: worker w-dead stopped heartbeating"
        entry = next(e for e in letters if e["run_id"] == job["run_id"])
        assert entry["reason"] == "lost" and entry["detected_by"] == "gateway"
        assert entry["err_id"] == "ERR-PYOCO-0030" and entry["worker_id"] == "w-dead"
        # rebuilt from the snapshot, so the dead letter can be redriven
        assert {k: entry["job"][k] for k in ("run_id", "flow_name", "params", "tag")} == {
            k: job[k] for k in ("run_id", "flow_name", "params", "tag")
        }


async def test_a_silent_run_whose_job_can_still_be_delivered_is_left_alone(nc, quiet_settings):
    js, store = await open_store(nc, quiet_settings)
    await ensure_consumer(js, quiet_settings, "default")
    job = make_job("noop")
    ack = await js.publish(quiet_settings.work_subject("default"), encode_job(job))
    run_id = await silent_run(
        store, quiet_settings, job, age=30, job_stream_seq=ack.seq, num_delivered=1
    )
    fresh = await silent_run(store, quiet_settings, make_job("noop"), age=0, job_stream_seq=10**9)
    unrecorded_job = make_job("noop")
    await js.publish(quiet_settings.work_subject("default"), encode_job(unrecorded_job))
    unrecorded = await silent_run(store, quiet_settings, unrecorded_job, age=30)
    async with gateways(quiet_settings, 1) as (gateway,):
        assert await gateway.reconcile_once() == []
        for kept in (run_id, fresh, unrecorded):
            assert (await store.get(kept))[0]["status"] == "RUNNING"

        # delivered MaxDeliver times and silent for longer than AckWait: never delivered again
        await store.update(run_id, lambda s: {**s, "num_delivered": 3}, "x")
        assert await gateway.reconcile_once() == [run_id]
    snapshot, _ = await store.get(run_id)
    assert snapshot["status"] == "FAILED" and snapshot["error"].startswith("lost: worker w-dead")
    [entry] = await dead_letters(js, quiet_settings)
    assert entry["job"] == job and entry["num_delivered"] == 3 and entry["max_deliver"] == 3
    # the exhausted job no longer sits in the queue
    assert [json.loads(m.data)["run_id"] for m in await stored_jobs(nc, quiet_settings)] == [
        unrecorded
    ]


async def test_a_lost_cancelling_run_ends_cancelled_without_a_dead_letter(nc, quiet_settings):
    js, store = await open_store(nc, quiet_settings)
    run_id = await silent_run(
        store,
        quiet_settings,
        make_job("noop"),
        age=30,
        status="CANCELLING",
        job_stream_seq=10**9,
        tasks={"a": "SUCCEEDED", "b": "RUNNING", "c": "PENDING"},
    )
    async with gateways(quiet_settings, 1) as (gateway,):
        assert await gateway.reconcile_once() == [run_id]
    snapshot, _ = await store.get(run_id)
    assert snapshot["status"] == "CANCELLED"
    assert snapshot["tasks"] == {"a": "SUCCEEDED", "b": "CANCELLED", "c": "CANCELLED"}
    assert await dead_letters(js, quiet_settings) == []


async def test_a_job_that_exhausts_maxdeliver_before_any_claim_ends_its_run(nc, quiet_settings):
    """A worker that took the job and died before writing anything (MaxDeliver 1)."""
    settings = quiet_settings.with_overrides(consumer_max_deliver=1)
    js, store = await open_store(nc, settings)
    await ensure_consumer(js, settings, "default")
    async with gateways(settings, 2):
        run_id = await submit(js, store, settings, make_job("noop", {"n": 1}))
        crashed = await js.pull_subscribe_bind(
            durable=settings.consumer_name("default"), stream=settings.work_stream
        )
        [taken] = await crashed.fetch(1, timeout=5)  # never acknowledged, nothing written
        assert json.loads(taken.data)["run_id"] == run_id
        await crashed.unsubscribe()
        snapshot = await wait_for_run(store, run_id, timeout=20)
        assert snapshot["status"] == "FAILED"
        assert snapshot["error"].startswith("max_deliveries: the job was delivered 1 times")

        async def settled() -> bool:
            return not await stored_jobs(nc, settings) and bool(await dead_letters(js, settings))

        deadline = time.monotonic() + 10
        while not await settled():
            assert time.monotonic() < deadline, "the exhausted job was not cleaned up"
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # both gateways got the advisory: still one dead letter
        [entry] = await dead_letters(js, settings)
    assert entry["reason"] == "max_deliveries" and entry["run_id"] == run_id
    assert (
        entry["job"]["params"] == {"n": 1} and entry["stream_seq"] == taken.metadata.sequence.stream
    )
