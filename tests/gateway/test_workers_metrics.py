"""GET /workers, worker liveness on GET /runs/{id}, and GET /metrics."""

from __future__ import annotations

import json
import time

from prometheus_client.parser import text_string_to_metric_families

from pyoco_server.plugins import build_plugin_manager
from pyoco_server.run_store import RunStore


def worker(worker_id: str, state: str, age: float, **extra) -> bytes:
    record = {
        "worker_id": worker_id,
        "instance_id": f"{worker_id}-1",
        "state": state,
        "tags": ["default"],
        "current_run_id": None,
        "heartbeat_at": time.time() - age,
        "started_at": time.time() - 100,
        "hostname": "h",
        "pid": 1,
        "concurrency": 1,
    }
    record.update(extra)
    return json.dumps(record).encode()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_empty_system_answers_200_everywhere(gateway):
    assert (await gateway.simulate_get("/workers")).json == []
    result = await gateway.simulate_get("/metrics")
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("text/plain")
    values = samples(result.text)
    assert values[("pyoco_runs_total", (("status", "PENDING"),))] == 0
    assert values[("pyoco_workers_alive_total", ())] == 0
    assert values[("pyoco_dlq_messages_total", ())] == 0


async def test_workers_report_state_and_disconnection(gateway, nc, gateway_settings):
    kv = await nc.jetstream().key_value(gateway_settings.workers_kv_bucket)
    ttl = gateway_settings.workers_kv_ttl_sec
    await kv.put("w-idle", worker("w-idle", "IDLE", 1))
    await kv.put("w-busy", worker("w-busy", "RUNNING", 1, current_run_id="r1", tags=["gpu"]))
    await kv.put("w-gone", worker("w-gone", "RUNNING", ttl + 5))
    await kv.put("w-stop", worker("w-stop", "STOPPED", 2))
    assert [w["worker_id"] for w in (await gateway.simulate_get("/workers")).json] == [
        "w-busy",
        "w-idle",
    ]  # the default scope is active: RUNNING and IDLE
    listed = (await gateway.simulate_get("/workers", params={"scope": "all"})).json
    assert [(w["worker_id"], w["state"], w["alive"]) for w in listed] == [
        ("w-busy", "RUNNING", True),
        ("w-gone", "DISCONNECTED", False),
        ("w-idle", "IDLE", True),
        ("w-stop", "STOPPED", False),
    ]
    assert listed[0]["current_run_id"] == "r1" and listed[0]["tags"] == ["gpu"]
    assert listed[0]["hostname"] == "h"
    values = samples((await gateway.simulate_get("/metrics")).text)
    assert values[("pyoco_workers_alive_total", ())] == 2
    assert values[("pyoco_workers", (("state", "DISCONNECTED"),))] == 1


async def test_run_shows_its_workers_liveness(gateway, nc, gateway_settings):
    js = nc.jetstream()
    kv = await js.key_value(gateway_settings.workers_kv_bucket)
    store = RunStore(
        await js.key_value(gateway_settings.runs_kv_bucket),
        build_plugin_manager(plugins=[]),
        gateway_settings,
    )
    alive = (await gateway.simulate_post("/runs", json={"flow_name": "f"})).json["run_id"]
    lost = (await gateway.simulate_post("/runs", json={"flow_name": "f"})).json["run_id"]
    await kv.put("w1", worker("w1", "RUNNING", 1, tags=["default", "gpu"]))
    await store.update(alive, lambda s: {**s, "status": "RUNNING", "worker_id": "w1"}, "started")
    await store.update(lost, lambda s: {**s, "status": "RUNNING", "worker_id": "ghost"}, "started")

    snapshot = (await gateway.simulate_get(f"/runs/{alive}")).json
    assert snapshot["worker_alive"] is True
    assert snapshot["worker_tags"] == ["default", "gpu"]
    assert abs(snapshot["worker_heartbeat_at"] - time.time()) < 30
    orphan = (await gateway.simulate_get(f"/runs/{lost}")).json
    assert orphan["worker_alive"] is False and orphan["worker_heartbeat_at"] is None


async def test_metrics_count_runs_queues_and_dead_letters(gateway, nc, gateway_settings):
    for tag in ("cpu", "cpu", "gpu"):
        await gateway.simulate_post("/runs", json={"flow_name": "f", "tag": tag})
    js = nc.jetstream()
    await js.publish(gateway_settings.dlq_subject("cpu"), b"{}")
    values = samples((await gateway.simulate_get("/metrics")).text)
    assert values[("pyoco_runs_total", (("status", "PENDING"),))] == 3
    assert values[("pyoco_runs_total", (("status", "COMPLETED"),))] == 0
    assert values[("pyoco_queue_depth", (("tag", "cpu"),))] == 2
    assert values[("pyoco_queue_depth", (("tag", "gpu"),))] == 1
    assert values[("pyoco_dlq_messages_total", ())] == 1

    # a worker's durable consumer shows pending / in-flight per tag
    from nats.js.api import ConsumerConfig

    consumer = gateway_settings.consumer_name("cpu")
    await js.add_consumer(
        gateway_settings.work_stream,
        ConsumerConfig(
            durable_name=consumer,
            filter_subject=gateway_settings.work_subject("cpu"),
            ack_wait=30,
        ),
    )
    sub = await js.pull_subscribe_bind(durable=consumer, stream=gateway_settings.work_stream)
    await sub.fetch(1, timeout=5)
    values = samples((await gateway.simulate_get("/metrics")).text)
    assert values[("pyoco_queue_pending", (("tag", "cpu"),))] == 1
    assert values[("pyoco_queue_in_flight", (("tag", "cpu"),))] == 1
    assert values[("pyoco_queue_depth", (("tag", "cpu"),))] == 2
    await sub.unsubscribe()


async def test_workers_filter_by_state_and_hide_workers_past_the_retention(
    gateway, nc, gateway_settings
):
    kv = await nc.jetstream().key_value(gateway_settings.workers_kv_bucket)
    ttl = gateway_settings.workers_kv_ttl_sec
    retention = gateway_settings.workers_retention_sec
    await kv.put("w-idle", worker("w-idle", "IDLE", 1))
    await kv.put("w-gone", worker("w-gone", "RUNNING", ttl + 5))
    await kv.put("w-stop", worker("w-stop", "STOPPED", 2))
    await kv.put("w-ancient", worker("w-ancient", "RUNNING", ttl + retention + 5))

    async def ids(**params) -> list[str]:
        answer = await gateway.simulate_get("/workers", params=params)
        assert answer.status_code == 200, answer.text
        return [w["worker_id"] for w in answer.json]

    assert await ids(scope="all") == ["w-gone", "w-idle", "w-stop"]  # w-ancient aged out
    assert await ids(include_stopped="false") == ["w-gone", "w-idle"]
    assert await ids(state="disconnected") == ["w-gone"]
    assert await ids(state="IDLE,STOPPED") == ["w-idle", "w-stop"]
    assert await ids(state="STOPPED", include_stopped="false") == []
    for params in ({"state": "ASLEEP"}, {"include_stopped": "maybe"}):
        answer = await gateway.simulate_get("/workers", params=params)
        assert answer.status_code == 422 and answer.json["err_id"] == "ERR-PYOCO-0002"
