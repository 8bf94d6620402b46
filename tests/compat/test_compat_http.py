"""0.5.1 HTTP shapes against real gateways: ``GET /runs`` delta mode, ``GET /workers`` scope /
state / hidden / limit, ``PATCH /workers/{id}``, ``pyoco_runs_today_total``, and the
``pyoco-client list-vnext`` / ``workers`` command lines — with authentication off and on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pyoco_server.testing import PyocoSystem, start_system

REPO_ROOT = Path(__file__).resolve().parents[2]
PEPPER = "compat-http-test-pepper-0123456789"
YAML = b"flow: {graph: a}\ntasks: {a: {callable: 'tests.flows.sample_tasks:add_one'}}\n"
BASE_ENV = {"PYOCO_YAML_ALLOWED_CALLABLES": "tests.flows", "PYTHONPATH": str(REPO_ROOT)}


class Api:
    """An HTTP client of one gateway, with the API key of one tenant when auth is on."""

    def __init__(self, system: PyocoSystem, key: str | None) -> None:
        self.system = system
        self.key = key
        headers = {"X-API-Key": key} if key else {}
        self.http = httpx.Client(base_url=system.url, headers=headers, timeout=10)

    def submit(self, flow: str, tag: str = "nowhere") -> str:
        """Submit a run on a tag no worker serves, so it stays as submitted."""
        answer = self.http.post("/runs", json={"flow_name": flow, "tag": tag})
        assert answer.status_code == 200, answer.text
        return answer.json()["run_id"]

    def runs(self, **params: Any) -> Any:
        answer = self.http.get("/runs", params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "pyoco_server.cli.client", "--server", self.system.url]
        if self.key:
            command += ["--api-key", self.key]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYOCO_")}
        return subprocess.run(
            [*command, *args], capture_output=True, text=True, env=env, timeout=60
        )


def create_key(system: PyocoSystem, tenant: str) -> str:
    """An API key of ``tenant`` made with ``pyoco-server-admin`` against the system's bucket."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYOCO_")}
    env.update(system.env, PYOCO_NATS_URL=system.nats_url)
    done = subprocess.run(
        [sys.executable, "-m", "pyoco_server.cli.admin", "api-key", "create", "--tenant", tenant],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["api_key"]


@pytest.fixture(scope="module", params=["auth-off", "auth-on"])
def api(request, pyoco_nats_server, tmp_path_factory) -> Iterator[Api]:
    """A gateway with a worker (``--concurrency 1``, two tags), auth off or on."""
    env = dict(BASE_ENV, PYOCO_WORKER_HEARTBEAT_INTERVAL_SEC="0.5")
    if request.param == "auth-on":
        env.update(PYOCO_HTTP_AUTH_MODE="api_key", PYOCO_AUTH_PEPPER=PEPPER)
    system = start_system(
        pyoco_nats_server.url,
        tmp_path_factory.mktemp("compat-http"),
        env=env,
        tags=["default", "gpu"],
        worker=request.param == "auth-off",  # readiness polls /workers without a key
    )
    key = create_key(system, "acme") if request.param == "auth-on" else None
    client = Api(system, key)
    try:
        yield client
    finally:
        client.http.close()
        system.stop()


def unique_flow() -> str:
    return f"flow-{uuid.uuid4().hex[:8]}"


# -- GET /runs delta mode ---------------------------------------------------------------------


def test_delta_pages_follow_next_cursor_until_nothing_is_left(api: Api):
    flow = unique_flow()
    runs = [api.submit(flow) for _ in range(5)]
    first = api.runs(flow=flow, updated_after=0, limit=2)
    assert set(first) == {"items", "next_cursor"}
    assert [r["run_id"] for r in first["items"]] == [runs[4], runs[3]]
    assert isinstance(first["next_cursor"], str)
    second = api.runs(flow=flow, cursor=first["next_cursor"], limit=2)
    assert [r["run_id"] for r in second["items"]] == [runs[2], runs[1]]
    third = api.runs(flow=flow, cursor=second["next_cursor"], limit=2)
    assert [r["run_id"] for r in third["items"]] == [runs[0]]
    assert third["next_cursor"] is None
    # a page that ends exactly at the last run has no next_cursor either
    exact = api.runs(flow=flow, updated_after=0, limit=5)
    assert len(exact["items"]) == 5 and exact["next_cursor"] is None
    # the plain listing keeps its shape
    plain = api.runs(flow=flow, limit=2)
    assert isinstance(plain, list) and [r["run_id"] for r in plain] == [runs[4], runs[3]]


def test_updated_after_is_strictly_greater(api: Api):
    flow = unique_flow()
    runs = [api.submit(flow) for _ in range(3)]
    items = api.runs(flow=flow, updated_after=0)["items"]
    middle = next(r for r in items if r["run_id"] == runs[1])
    newer = api.runs(flow=flow, updated_after=middle["updated_at"])
    assert [r["run_id"] for r in newer["items"]] == [runs[2]]
    assert api.runs(flow=flow, updated_after=time.time() + 3600) == {
        "items": [],
        "next_cursor": None,
    }


def test_a_polling_client_sees_only_what_changed(api: Api):
    flow = unique_flow()
    first = api.submit(flow)
    seen = api.runs(flow=flow, updated_after=0)["items"]
    mark = max(r["updated_at"] for r in seen)
    second = api.submit(flow)
    answer = api.http.post(f"/runs/{first}/cancel")
    assert answer.status_code == 200
    changed = api.runs(flow=flow, updated_after=mark)["items"]
    assert {r["run_id"] for r in changed} == {first, second}
    assert next(r for r in changed if r["run_id"] == first)["status"] in ("CANCELLED", "CANCELLING")


def test_workflow_yaml_sha256_selects_runs_of_one_file(api: Api):
    import hashlib

    other = YAML.replace(b"add_one", b"to_text")
    for content in (YAML, other, YAML):
        answer = api.http.post(
            "/runs/yaml",
            files={"workflow": ("flow.yaml", content, "application/x-yaml")},
            data={"flow_name": "y", "tag": "nowhere"},
        )
        assert answer.status_code == 200, answer.text
    digest = hashlib.sha256(YAML).hexdigest()
    found = api.runs(workflow_yaml_sha256=digest.upper(), limit=200)
    assert len(found["items"]) == 2 and found["next_cursor"] is None
    assert {r["workflow_yaml_sha256"] for r in found["items"]} == {digest}
    paged = api.runs(workflow_yaml_sha256=digest, limit=1)
    assert len(paged["items"]) == 1 and paged["next_cursor"]


@pytest.mark.parametrize(
    "query",
    [
        "cursor=not-a-cursor",
        "cursor=eyJ0IjoxfQ",  # valid base64 JSON, but not a cursor
        "cursor=" + "A" * 600,
        "cursor=%00",
        "updated_after=soon",
        "updated_after=nan",
        "updated_after=1e999",
        "updated_after=1&updated_after=2",
        "workflow_yaml_sha256=" + "a" * 129,
        "updated_after=0&limit=0",
        "updated_after=0&status=DONE",
    ],
)
def test_bad_delta_queries_are_422(api: Api, query: str):
    answer = api.http.get("/runs?" + query)
    assert answer.status_code == 422, answer.text
    assert answer.json()["err_id"] == "ERR-PYOCO-0002"
    assert answer.json()["errors"]


def test_tenants_only_see_their_own_runs_in_delta_mode(api: Api):
    if api.key is None:
        pytest.skip("tenants exist only with authentication on")
    flow = unique_flow()
    api.submit(flow)
    other = Api(api.system, create_key(api.system, "globex"))
    try:
        assert other.runs(flow=flow, updated_after=0) == {"items": [], "next_cursor": None}
        mine = api.runs(flow=flow, updated_after=0)["items"]
        assert len(mine) == 1
    finally:
        other.http.close()
    assert httpx.get(api.system.url + "/runs?updated_after=0").status_code == 401


# -- GET /workers and PATCH /workers/{id} -----------------------------------------------------


def put_worker_record(system: PyocoSystem, worker_id: str, state: str, age: float) -> None:
    """Write a worker's liveness record into the system's bucket, as that worker would."""
    import asyncio

    import nats

    async def write() -> None:
        nc = await nats.connect(system.nats_url)
        try:
            kv = await nc.jetstream().key_value(system.env["PYOCO_WORKERS_KV_BUCKET"])
            record = {
                "worker_id": worker_id,
                "state": state,
                "tags": ["default"],
                "heartbeat_at": time.time() - age,
                "hostname": "h",
                "pid": 1,
            }
            await kv.put(worker_id, json.dumps(record).encode())
        finally:
            await nc.close()

    asyncio.run(write())


def listed(api: Api, **params: Any) -> list[str]:
    answer = api.http.get("/workers", params=params)
    assert answer.status_code == 200, answer.text
    return [w["worker_id"] for w in answer.json()]


def test_workers_scope_state_and_limit(api: Api):
    prefix = uuid.uuid4().hex[:6]
    idle, busy, stopped, gone = (f"{prefix}-{n}" for n in ("idle", "busy", "stop", "gone"))
    put_worker_record(api.system, idle, "IDLE", 0)
    put_worker_record(api.system, busy, "RUNNING", 0)
    put_worker_record(api.system, stopped, "STOPPED", 1)
    put_worker_record(api.system, gone, "RUNNING", 60)  # silent past the TTL: DISCONNECTED

    def mine(**params: Any) -> list[str]:
        return [w for w in listed(api, **params) if w.startswith(prefix)]

    assert mine() == [busy, idle]  # default scope: active
    assert mine(scope="ACTIVE") == [busy, idle]
    assert mine(scope="all") == [busy, gone, idle, stopped]
    assert mine(scope="all", state="disconnected") == [gone]
    assert mine(state="Idle") == [idle]
    assert mine(scope="active", state="STOPPED") == []
    # the parameters that existed before `scope` keep their meaning
    assert mine(state="STOPPED") == [stopped]
    assert mine(include_stopped="false") == [busy, gone, idle]
    assert mine(include_stopped="true") == [busy, gone, idle, stopped]
    assert len(listed(api, scope="all", limit=2)) == 2
    for bad in (
        {"scope": "some"},
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "x"},
        {"state": "ASLEEP"},
        {"include_hidden": "maybe"},
        {"scope": ["all", "all"]},
    ):
        answer = api.http.get("/workers", params=bad)
        assert answer.status_code == 422, (bad, answer.text)
        assert answer.json()["err_id"] == "ERR-PYOCO-0002"


def test_patch_hides_and_shows_a_worker(api: Api):
    worker_id = f"{uuid.uuid4().hex[:6]}-w"
    put_worker_record(api.system, worker_id, "IDLE", 0)
    before = time.time()
    answer = api.http.patch(f"/workers/{worker_id}", json={"hidden": True})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["worker_id"] == worker_id and body["hidden"] is True
    assert before - 1 <= body["updated_at"] <= time.time() + 1
    assert worker_id not in listed(api)
    assert worker_id not in listed(api, scope="all")
    shown = api.http.get("/workers", params={"include_hidden": "true"}).json()
    assert [w["hidden"] for w in shown if w["worker_id"] == worker_id] == [True]
    answer = api.http.patch(f"/workers/{worker_id}", json={"hidden": False})
    assert answer.status_code == 200 and answer.json()["hidden"] is False
    assert worker_id in listed(api)


def test_patch_answers_404_and_422(api: Api):
    missing = api.http.patch("/workers/nobody-here", json={"hidden": True})
    assert missing.status_code == 404
    assert missing.json()["err_id"] == "ERR-PYOCO-0032"
    worker_id = f"{uuid.uuid4().hex[:6]}-w"
    put_worker_record(api.system, worker_id, "IDLE", 0)
    for body in ({}, {"hidden": "yes"}, {"hidden": 1}, {"hidden": None}, [True], "true"):
        answer = api.http.patch(f"/workers/{worker_id}", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["err_id"] == "ERR-PYOCO-0002"
    not_json = api.http.patch(
        f"/workers/{worker_id}", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 422
    if api.key is not None:
        anonymous = httpx.patch(f"{api.system.url}/workers/{worker_id}", json={"hidden": True})
        assert anonymous.status_code == 401
        assert worker_id in listed(api)


def test_hidden_survives_heartbeats_and_a_restart_of_the_worker(pyoco_system_factory, tmp_path):
    env = dict(BASE_ENV, PYOCO_WORKER_HEARTBEAT_INTERVAL_SEC="0.5")
    system = pyoco_system_factory(env=env, tags=["default", "gpu"])
    worker_id = system.worker_id
    http = httpx.Client(base_url=system.url, timeout=10)
    answer = http.patch(f"/workers/{worker_id}", json={"hidden": True})
    assert answer.status_code == 200
    time.sleep(1.5)  # three heartbeats (PYOCO_WORKER_HEARTBEAT_INTERVAL_SEC=0.5)
    everyone = http.get("/workers", params={"include_hidden": "true"}).json()
    mine = next(w for w in everyone if w["worker_id"] == worker_id)
    assert mine["hidden"] is True and mine["alive"] is True
    assert worker_id not in [w["worker_id"] for w in http.get("/workers").json()]
    http.close()

    # the same worker id in a new process (with a new gateway on the same buckets)
    system.stop()
    again = PyocoSystem(
        system.nats_url,
        tmp_path,
        plugins=[],
        disable=[],
        env=system.env,
        flow_resolver=None,
        tags=["default", "gpu"],
        concurrency=1,
        worker=True,
    )
    again.worker_id = worker_id
    try:
        again.start()
        again.wait_ready()
        with httpx.Client(base_url=again.url, timeout=10) as http:
            workers = http.get("/workers", params={"include_hidden": "true"}).json()
            restarted = next(w for w in workers if w["worker_id"] == worker_id)
            assert restarted["hidden"] is True and restarted["alive"] is True
            assert restarted["instance_id"] != mine["instance_id"]
            assert worker_id not in [w["worker_id"] for w in http.get("/workers").json()]
            shown = http.patch(f"/workers/{worker_id}", json={"hidden": False})
            assert shown.status_code == 200
            assert worker_id in [w["worker_id"] for w in http.get("/workers").json()]
    finally:
        again.stop()


# -- /metrics -------------------------------------------------------------------------------


def test_runs_today_counts_runs_updated_today(api: Api):
    import asyncio

    import nats

    async def put_old_run() -> None:
        nc = await nats.connect(api.system.nats_url)
        try:
            kv = await nc.jetstream().key_value(api.system.env["PYOCO_RUNS_KV_BUCKET"])
            old = time.time() - 3 * 86400
            snapshot = {
                "run_id": "old-run",
                "flow_name": "old",
                "status": "COMPLETED",
                "params": {},
                "tasks": {},
                "updated_at": old,
                "heartbeat_at": old,
            }
            await kv.put("old-run", json.dumps(snapshot).encode())
        finally:
            await nc.close()

    def values() -> dict[str, float]:
        text = api.http.get("/metrics").text
        found = {}
        for line in text.splitlines():
            if line.startswith(("pyoco_runs_today_total{", "pyoco_runs_total{")):
                name, value = line.rsplit(" ", 1)
                found[name] = float(value)
        return found

    before = values()
    asyncio.run(put_old_run())
    api.submit(unique_flow())
    after = values()
    today = 'pyoco_runs_today_total{status="%s"}'
    total = 'pyoco_runs_total{status="%s"}'
    assert after[today % "PENDING"] == before[today % "PENDING"] + 1
    assert after[today % "COMPLETED"] == before[today % "COMPLETED"]
    assert after[total % "COMPLETED"] == before[total % "COMPLETED"] + 1
    assert "# TYPE pyoco_runs_today_total gauge" in api.http.get("/metrics").text


# -- pyoco-client list-vnext / workers --------------------------------------------------------


def test_list_vnext_prints_pages_and_next_cursor(api: Api):
    flow = unique_flow()
    runs = [api.submit(flow) for _ in range(3)]
    done = api.cli("list-vnext", "--flow", flow, "--limit", "2", "--updated-after", "0")
    assert done.returncode == 0, done.stderr
    page = json.loads(done.stdout)
    assert [r["run_id"] for r in page["items"]] == [runs[2], runs[1]]
    done = api.cli(
        "list-vnext",
        "--flow",
        flow,
        "--limit",
        "2",
        "--cursor",
        page["next_cursor"],
        "--output",
        "table",
    )
    assert done.returncode == 0, done.stderr
    assert runs[0] in done.stdout and "next_cursor:" not in done.stdout
    table = api.cli("list-vnext", "--flow", flow, "--limit", "1", "--output", "table")
    assert table.returncode == 0, table.stderr
    assert runs[2] in table.stdout
    assert "next_cursor: " in table.stdout.splitlines()[-1]
    bad = api.cli("list-vnext", "--cursor", "garbage")
    assert bad.returncode == 1 and "ERR-PYOCO-0002" in bad.stderr


def test_workers_command_scope_state_hidden_limit_and_outputs(api: Api):
    prefix = uuid.uuid4().hex[:6]
    idle, stopped = f"{prefix}-idle", f"{prefix}-stop"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        # heartbeat first, as those workers would: a loaded machine may take longer than the
        # liveness TTL to start the command
        put_worker_record(api.system, idle, "IDLE", 0)
        put_worker_record(api.system, stopped, "STOPPED", 1)
        return api.cli("workers", *args)

    def ids(*args: str) -> list[str]:
        done = cli(*args)
        assert done.returncode == 0, done.stderr
        return [
            w["worker_id"] for w in json.loads(done.stdout) if w["worker_id"].startswith(prefix)
        ]

    assert ids() == [idle]
    assert ids("--scope", "all") == [idle, stopped]
    assert ids("--scope", "all", "--state", "stopped") == [stopped]
    assert ids("--scope", "all", "--state", "STOPPED_GRACEFUL") == [stopped]
    assert len(json.loads(cli("--scope", "all", "--limit", "1").stdout)) == 1
    assert api.http.patch(f"/workers/{idle}", json={"hidden": True}).status_code == 200
    assert ids() == []
    assert ids("--include-hidden") == [idle]
    table = cli("--include-hidden", "--output", "table")
    assert table.returncode == 0 and idle in table.stdout and "HIDDEN" in table.stdout
    plugins = cli("--include-hidden", "--output", "plugins")
    assert plugins.returncode == 0 and idle in plugins.stdout
    assert "do not report their plugins" in plugins.stderr
    bad = api.cli("workers", "--limit", "501")
    assert bad.returncode == 2 and "--limit" in bad.stderr


# -- the run index's updated_at view (no NATS needed) -----------------------------------------


def index_record(seq: int, run_id: str, updated_at: float, **extra: Any):
    from pyoco_server.stream_reader import StreamRecord

    snapshot = {
        "run_id": run_id,
        "flow_name": "f",
        "status": "PENDING",
        "tag": "default",
        "tags": ["default"],
        "updated_at": updated_at,
        **extra,
    }
    return StreamRecord(seq, f"$KV.runs_unit.{run_id}", json.dumps(snapshot).encode())


def test_delta_pages_never_skip_or_repeat_runs_with_equal_updated_at():
    from pyoco_server.gateway.run_delta.cursor import decode_cursor
    from pyoco_server.gateway.run_delta.listing import DeltaQuery, delta_page
    from pyoco_server.gateway.run_index import RunIndex

    index = RunIndex("runs_unit")
    # clocks of different writers: sequence order is not updated_at order, and ties happen
    stamps = [5.0, 3.0, 5.0, 5.0, 1.0, 4.0, 5.0, 2.0]
    index.apply([index_record(seq, f"r{seq}", at) for seq, at in enumerate(stamps, 1)])
    seen: list[str] = []
    query = DeltaQuery(updated_after=1.0)
    while True:
        page = delta_page(index, None, query, limit=2)
        seen += [item["run_id"] for item in page.items]
        if page.next_cursor is None:
            break
        query = DeltaQuery(updated_after=1.0, cursor=decode_cursor(page.next_cursor))
    expected = sorted(
        (f"r{seq}" for seq, at in enumerate(stamps, 1) if at > 1.0),
        key=lambda run_id: (stamps[int(run_id[1:]) - 1], run_id),
        reverse=True,
    )
    assert seen == expected


def test_runs_today_follow_a_run_across_days_and_deletes():
    from pyoco_server.gateway.run_index import RunIndex
    from pyoco_server.stream_reader import StreamRecord

    index = RunIndex("runs_unit")
    index.day_of.day_of = lambda epoch: (2026, 1, int(epoch // 86400) + 1)
    day1, day2 = (2026, 1, 1), (2026, 1, 2)
    index.apply([index_record(1, "a", 100.0), index_record(2, "b", 200.0, status="FAILED")])
    assert index.updated_on(day1) == {"PENDING": 1, "FAILED": 1}
    index.apply([index_record(3, "a", 86400.0 + 5, status="COMPLETED")])
    assert index.updated_on(day1) == {"FAILED": 1}
    assert index.updated_on(day2) == {"COMPLETED": 1}
    index.apply([StreamRecord(4, "$KV.runs_unit.b", b"", "DEL")])
    assert index.updated_on(day1) == {}
    assert index.updated_on((2026, 1, 3)) == {}


def test_a_cursor_continues_on_another_gateway_and_after_a_restart(pyoco_system_factory):
    """Cursors name a position in the data, not in one process: a page from one gateway
    continues on another gateway of the same system, and on a restarted one."""
    first = pyoco_system_factory(worker=False)
    second = pyoco_system_factory(worker=False, env=first.env)
    flow = unique_flow()
    with httpx.Client(base_url=first.url, timeout=10) as http:
        runs = [
            http.post("/runs", json={"flow_name": flow, "tag": "nowhere"}).json()["run_id"]
            for _ in range(4)
        ]
        page = http.get("/runs", params={"flow": flow, "updated_after": 0, "limit": 2}).json()
    assert [r["run_id"] for r in page["items"]] == [runs[3], runs[2]]
    with httpx.Client(base_url=second.url, timeout=10) as http:
        rest = http.get("/runs", params={"flow": flow, "cursor": page["next_cursor"]}).json()
    assert [r["run_id"] for r in rest["items"]] == [runs[1], runs[0]]
    assert rest["next_cursor"] is None

    first.stop()
    again = pyoco_system_factory(worker=False, env=first.env)
    with httpx.Client(base_url=again.url, timeout=10) as http:
        rest = http.get("/runs", params={"flow": flow, "cursor": page["next_cursor"]}).json()
    assert [r["run_id"] for r in rest["items"]] == [runs[1], runs[0]]
