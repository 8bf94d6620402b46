"""GET /runs from the run index: order, filters, limits, freshness, and the index itself."""

from __future__ import annotations

import json

import pytest
from gwtools import assert_error

from pyoco_server.gateway.run_index import SUMMARY_ERROR_CHARS, SUMMARY_FIELDS, RunIndex
from pyoco_server.runs import RunStore
from pyoco_server.stream_reader import StreamRecord

BUCKET = "runs_test"


def put(seq: int, run_id: str, **snapshot) -> StreamRecord:
    data = {"run_id": run_id, "flow_name": "f", "status": "PENDING", "tag": "t", "tags": ["t"]}
    data.update(snapshot)
    return StreamRecord(seq, f"$KV.{BUCKET}.{run_id}", json.dumps(data).encode())


def test_index_orders_by_last_write_and_counts_statuses():
    index = RunIndex(BUCKET)
    index.apply([put(1, "a"), put(2, "b"), put(3, "c", status="FAILED", error="e" * 5000)])
    index.apply([put(4, "a", status="RUNNING")])
    assert [s["run_id"] for s in index.select(None)] == ["a", "c", "b"]
    assert index.status_counts()["PENDING"] == 1
    assert index.status_counts()["RUNNING"] == 1 and index.status_counts()["FAILED"] == 1
    summary = index.select(None, status="FAILED")[0]
    assert set(summary) == set(SUMMARY_FIELDS)
    assert len(summary["error"]) <= SUMMARY_ERROR_CHARS + 1
    index.apply([StreamRecord(5, f"$KV.{BUCKET}.c", b"", "PURGE")])
    assert [s["run_id"] for s in index.select(None)] == ["a", "b"]
    assert index.status_counts()["FAILED"] == 0 and index.applied_seq == 5


def test_index_filters_and_tenants():
    index = RunIndex(BUCKET)
    index.apply(
        [
            put(1, "a", tenant_id="acme", flow_name="etl"),
            put(2, "b", tenant_id="globex", tag="gpu", tags=["gpu", "big"]),
            put(3, "c", tenant_id="acme", tags=["t", "big"]),
            put(4, "d", tenant_id="acme", status="COMPLETED"),
        ]
    )
    assert [s["run_id"] for s in index.select("acme")] == ["d", "c", "a"]
    assert [s["run_id"] for s in index.select("globex")] == ["b"]
    assert [s["run_id"] for s in index.select("nobody")] == []
    assert [s["run_id"] for s in index.select(None, tag="big")] == ["c", "b"]
    assert [s["run_id"] for s in index.select("acme", flow="etl")] == ["a"]
    assert [s["run_id"] for s in index.select("acme", status="COMPLETED")] == ["d"]
    assert [s["run_id"] for s in index.select(None, limit=2)] == ["d", "c"]


async def test_empty_system_lists_nothing(gateway):
    result = await gateway.simulate_get("/runs")
    assert result.status_code == 200 and result.json == []


async def submit(gateway, flow_name: str, tag: str = "default") -> str:
    result = await gateway.simulate_post("/runs", json={"flow_name": flow_name, "tag": tag})
    assert result.status_code == 200
    return result.json["run_id"]


async def test_list_newest_first_with_filters_and_read_your_writes(gateway, nc, gateway_settings):
    first = await submit(gateway, "etl", "cpu")
    second = await submit(gateway, "train", "gpu")
    third = await submit(gateway, "etl", "gpu")
    listed = (await gateway.simulate_get("/runs")).json
    assert [run["run_id"] for run in listed] == [third, second, first]
    assert set(listed[0]) == set(SUMMARY_FIELDS)
    assert listed[0]["updated_at"] >= listed[1]["updated_at"] >= listed[2]["updated_at"]

    js = nc.jetstream()
    from pyoco_server.plugins import build_plugin_manager

    store = RunStore(
        await js.key_value(gateway_settings.runs_kv_bucket),
        build_plugin_manager(plugins=[]),
        gateway_settings,
    )
    await store.update(first, lambda s: {**s, "status": "RUNNING", "worker_id": "w1"}, "started")
    listed = (await gateway.simulate_get("/runs")).json  # no wait: the write is already listed
    assert [run["run_id"] for run in listed] == [first, third, second]
    assert listed[0]["status"] == "RUNNING" and listed[0]["worker_id"] == "w1"

    def ids(**params):
        return gateway.simulate_get("/runs", params=params)

    assert [r["run_id"] for r in (await ids(status="RUNNING")).json] == [first]
    assert [r["run_id"] for r in (await ids(status="pending")).json] == [third, second]
    assert [r["run_id"] for r in (await ids(flow="etl")).json] == [first, third]
    assert [r["run_id"] for r in (await ids(tag="gpu")).json] == [third, second]
    assert [r["run_id"] for r in (await ids(limit="1")).json] == [first]
    full = (await ids(include="full", limit="2")).json
    assert [r["run_id"] for r in full] == [first, third]
    assert "params" in full[0] and "task_records" in full[0]


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=201",
        "limit=abc",
        "limit=",
        "status=DONE",
        "tag=a.b",
        "include=records",
        "limit=5&limit=6",
    ],
)
async def test_bad_list_queries_are_422(gateway, query):
    assert_error(await gateway.simulate_get("/runs?" + query), 422, "ERR-PYOCO-0002")


async def test_a_recreated_bucket_is_replayed_from_scratch(gateway, nc, gateway_settings):
    from pyoco_server.nats_client import ensure_resources

    old = await submit(gateway, "old")
    assert [r["run_id"] for r in (await gateway.simulate_get("/runs")).json] == [old]
    js = nc.jetstream()
    await js.delete_key_value(gateway_settings.runs_kv_bucket)
    await ensure_resources(js, gateway_settings)
    for _ in range(3):  # the new stream's sequences overtake the old one's
        new = await submit(gateway, "new")
    listed = (await gateway.simulate_get("/runs")).json
    assert old not in [r["run_id"] for r in listed]
    assert [r["flow_name"] for r in listed] == ["new"] * 3
    assert new == listed[0]["run_id"]
