"""GET /runs from the run index: order, filters, limits, freshness, and the index itself."""

from __future__ import annotations

import json

import pytest
from gwtools import assert_error

from pyoco_server.gateway.run_index import SUMMARY_ERROR_CHARS, SUMMARY_FIELDS, RunIndex
from pyoco_server.run_store import RunStore
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


def test_index_knows_each_runs_latest_status():
    index = RunIndex(BUCKET)
    index.apply([put(1, "parent", status="WAITING"), put(2, "child", status="RUNNING")])
    assert index.status_of("parent") == "WAITING" and index.status_of("child") == "RUNNING"
    index.apply([put(3, "child", status="COMPLETED"), put(4, "parent", status="PENDING")])
    assert index.status_of("child") == "COMPLETED" and index.status_of("parent") == "PENDING"
    index.apply([StreamRecord(5, f"$KV.{BUCKET}.child", b"", "PURGE")])
    assert index.status_of("child") is None and index.status_of("never-written") is None


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
        "cursor=0",
        "cursor=abc",
        "cursor=-3",
        "cursor=99999999999999999999",
        "q=" + "x" * 65,
        "parent_run_id=p&updated_after=0",
        "parent_run_id=p&cursor=",
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


def test_index_pages_continue_from_a_cursor_and_search_run_ids():
    index = RunIndex(BUCKET)
    index.apply([put(seq, f"run-{seq:02d}", tenant_id="acme") for seq in range(1, 8)])
    index.apply([put(8, "run-03", tenant_id="acme", status="RUNNING")])  # moves to the front
    first = index.select_page("acme", limit=3)
    assert [s["run_id"] for s in first.runs] == ["run-03", "run-07", "run-06"]
    second = index.select_page("acme", limit=3, cursor=first.next_cursor)
    assert [s["run_id"] for s in second.runs] == ["run-05", "run-04", "run-02"]
    last = index.select_page("acme", limit=3, cursor=second.next_cursor)
    assert [s["run_id"] for s in last.runs] == ["run-01"] and last.next_cursor is None
    assert index.select_page("acme", limit=1, cursor=1).runs == []
    assert index.select_page("globex", limit=3, cursor=first.next_cursor).runs == []

    assert [s["run_id"] for s in index.select(None, q="UN-0")][:2] == ["run-03", "run-07"]
    assert [s["run_id"] for s in index.select(None, q="n-06")] == ["run-06"]
    page = index.select_page(None, status="PENDING", limit=2, cursor=second.next_cursor)
    assert [s["run_id"] for s in page.runs] == ["run-01"]


def test_index_counts_runs_per_tenant():
    index = RunIndex(BUCKET)
    index.apply(
        [
            put(1, "a", tenant_id="acme"),
            put(2, "b", tenant_id="acme", status="FAILED"),
            put(3, "c", tenant_id="globex"),
        ]
    )
    assert index.status_counts("acme")["PENDING"] == 1
    assert index.status_counts("acme")["FAILED"] == 1
    assert index.status_counts("globex")["PENDING"] == 1
    assert index.status_counts(None)["PENDING"] == 2
    assert sum(index.status_counts("nobody").values()) == 0
    index.apply([put(4, "b", tenant_id="acme", status="COMPLETED")])
    index.apply([StreamRecord(5, f"$KV.{BUCKET}.a", b"", "DEL")])
    assert index.status_counts("acme") == {**index.status_counts("nobody"), "COMPLETED": 1}


async def test_list_pages_through_next_cursor_and_searches_ids(gateway):
    runs = [await submit(gateway, "paged") for _ in range(5)]
    first = await gateway.simulate_get("/runs", params={"flow": "paged", "limit": "2"})
    assert [r["run_id"] for r in first.json] == [runs[4], runs[3]]
    cursor = first.headers["next-cursor"]
    second = await gateway.simulate_get(
        "/runs", params={"flow": "paged", "limit": "2", "cursor": cursor}
    )
    assert [r["run_id"] for r in second.json] == [runs[2], runs[1]]
    third = await gateway.simulate_get(
        "/runs", params={"flow": "paged", "limit": "2", "cursor": second.headers["next-cursor"]}
    )
    assert [r["run_id"] for r in third.json] == [runs[0]]
    assert "next-cursor" not in third.headers
    found = await gateway.simulate_get("/runs", params={"q": runs[2][9:18].upper()})
    assert [r["run_id"] for r in found.json] == [runs[2]]
    assert set(found.json[0]) == set(SUMMARY_FIELDS)
    assert found.json[0]["submitted_at"] is not None and found.json[0]["start_time"] is None


async def test_counts_are_per_tenant(gateway):
    from gwtools import TENANT_HEADER

    for tenant, flows in (("acme", ["a", "b"]), ("globex", ["c"])):
        for flow in flows:
            result = await gateway.simulate_post(
                "/runs", json={"flow_name": flow}, headers={TENANT_HEADER: tenant}
            )
            assert result.status_code == 200
    acme = await gateway.simulate_get("/runs/counts", headers={TENANT_HEADER: "acme"})
    assert acme.json["total"] == 2 and acme.json["by_status"]["PENDING"] == 2
    everyone = await gateway.simulate_get("/runs/counts")
    assert everyone.json["total"] == 3
    assert set(everyone.json["by_status"]) == {
        "PENDING",
        "RUNNING",
        "COMPLETED",
        "FAILED",
        "CANCELLING",
        "CANCELLED",
        "WAITING",
        "PENDING_APPROVAL",
    }


def test_index_stores_snapshots_holding_lone_surrogates():
    index = RunIndex(BUCKET)
    text = '{"run_id": "s", "flow_name": "f\\ud800", "status": "FAILED", "tag": "t",'
    text += ' "tags": ["t\\udfff"], "error": "bad \\ud800 text", "tenant_id": "a\\ud800"}'
    index.apply([StreamRecord(1, f"$KV.{BUCKET}.s", text.encode())])
    [summary] = index.select(None)
    assert summary["error"] == "bad \ud800 text" and summary["flow_name"] == "f\ud800"
    assert index.select(None, flow="f\ufffd")[0]["run_id"] == "s"
    assert index.status_counts("a\ufffd")["FAILED"] == 1
    index.apply([StreamRecord(2, f"$KV.{BUCKET}.s", b"", "DEL")])
    assert index.select(None) == [] and len(index) == 0


def test_index_lists_one_schedules_runs_by_its_own_index():
    index = RunIndex(BUCKET)
    index.apply(
        [
            put(1, "s-a-1", tenant_id="acme", schedule_id="a"),
            put(2, "manual", tenant_id="acme"),
            put(3, "s-a-2", tenant_id="acme", schedule_id="a", status="FAILED", tags=["t", "x"]),
            put(4, "s-b-1", tenant_id="globex", schedule_id="b"),
            put(5, "s-a-3", tenant_id="acme", schedule_id="a", flow_name="g"),
        ]
    )
    assert [s["run_id"] for s in index.select("acme", schedule_id="a")] == [
        "s-a-3",
        "s-a-2",
        "s-a-1",
    ]
    assert index.select("acme", schedule_id="a")[0]["schedule_id"] == "a"
    assert index.select("acme", schedule_id="b") == []  # another tenant's schedule
    assert [s["run_id"] for s in index.select(None, schedule_id="b")] == ["s-b-1"]
    assert [s["run_id"] for s in index.select("acme", schedule_id="a", status="FAILED")] == [
        "s-a-2"
    ]
    assert [s["run_id"] for s in index.select("acme", schedule_id="a", flow="g")] == ["s-a-3"]
    assert [s["run_id"] for s in index.select("acme", schedule_id="a", tag="x")] == ["s-a-2"]
    assert [s["run_id"] for s in index.select(None, schedule_id="a", q="A-1")] == ["s-a-1"]
    first = index.select_page("acme", schedule_id="a", limit=2)
    assert [s["run_id"] for s in first.runs] == ["s-a-3", "s-a-2"]
    rest = index.select_page("acme", schedule_id="a", limit=2, cursor=first.next_cursor)
    assert [s["run_id"] for s in rest.runs] == ["s-a-1"] and rest.next_cursor is None
    index.apply([put(6, "s-a-1", tenant_id="acme", schedule_id="a", status="RUNNING")])
    assert index.select("acme", schedule_id="a")[0]["run_id"] == "s-a-1"
    delta = index.select_delta("acme", schedule_id="a")  # GET /runs?updated_after=&schedule_id=
    assert sorted(s["run_id"] for _, s in delta) == ["s-a-1", "s-a-2", "s-a-3"]
    assert index.select_delta("acme", schedule_id="b") == []

    # The page is one walk of the schedule's own index (O(limit)), whatever else is asked:
    # other filters are checked on its runs, never used to walk a larger ordering instead.
    plans: list[str] = []
    database = index._db
    index._db = _Explaining(database, plans)
    index.select("acme", schedule_id="a", status="FAILED", flow="f", tag="t", cursor=9)
    index.select(None, schedule_id="a")
    index._db = database
    assert len(plans) == 2 and all(
        p.startswith("SEARCH r USING INDEX runs_schedule (schedule=?") for p in plans
    )


class _Explaining:
    """Runs a listing's query plan beside the query itself."""

    def __init__(self, database, plans: list[str]) -> None:
        self.database, self.plans = database, plans

    def execute(self, sql, args=()):
        if sql.startswith("SELECT") and sql.rstrip().endswith("LIMIT ?"):
            rows = self.database.execute(f"EXPLAIN QUERY PLAN {sql}", args).fetchall()
            self.plans.append(" / ".join(row[-1] for row in rows))
        return self.database.execute(sql, args)


def test_an_index_file_of_the_previous_schema_is_rebuilt(tmp_path):
    """A file of an earlier schema (before schedules: no ``schedule`` column, summaries without
    ``schedule_id``) is emptied on open, so the gateway replays the stream into the new
    schema instead of listing runs without their schedule."""
    import sqlite3

    path = tmp_path / "runs-index.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE runs (seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE, tenant TEXT,"
        " status TEXT, flow TEXT, updated_at REAL, terminal INTEGER NOT NULL,"
        " summary TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema', '1'), ('applied_seq', '7'), ('stream_created', 'x');"
        "INSERT INTO runs VALUES (7, 's-a-1', NULL, 'PENDING', 'f', 1.0, 0,"
        ' \'{"run_id": "s-a-1", "status": "PENDING"}\');'
    )
    old.commit()
    old.close()
    index = RunIndex(BUCKET, path)
    assert index.applied_seq == 0 and len(index) == 0 and not index.stream_created
    index.apply([put(7, "s-a-1", schedule_id="a")])
    assert [s["run_id"] for s in index.select(None, schedule_id="a")] == ["s-a-1"]
    index.close()
    reopened = RunIndex(BUCKET, path)
    assert reopened.applied_seq == 7
    assert reopened.select(None, schedule_id="a")[0]["schedule_id"] == "a"
    reopened.close()
