"""Child runs with authentication on: children belong to their parent's tenant."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import pytest
from childkit import RESOLVER, WorkerHost, api_key

from pyoco_server.testing import start_system

PEPPER = "children-test-pepper-0123456789"


@pytest.fixture(scope="module")
def secured(nats_server, tmp_path_factory):
    env = {
        "PYOCO_HTTP_AUTH_MODE": "api_key",
        "PYOCO_AUTH_PEPPER": PEPPER,
        "PYOCO_CANCEL_GRACE_PERIOD_SEC": "1",
    }
    logs = tmp_path_factory.mktemp("logs")
    with start_system(
        nats_server.url, logs, worker=False, flow_resolver=RESOLVER, env=env
    ) as system:
        host = WorkerHost(system, "secured", ["t"], 2)
        try:
            yield system, api_key(system, "acme"), api_key(system, "globex")
        finally:
            host.stop()


def test_children_inherit_the_tenant_and_stay_hidden_from_others(secured):
    system, acme, globex = secured
    as_acme = httpx.Client(base_url=system.url, headers={"X-API-Key": acme}, timeout=10)
    as_globex = httpx.Client(base_url=system.url, headers={"X-API-Key": globex}, timeout=10)
    assert httpx.post(f"{system.url}/runs/bundle").status_code == 401
    run_id = as_acme.post("/runs", json={"flow_name": "parent", "params": {"n": 2}, "tag": "t"})
    run_id = run_id.json()["run_id"]
    for _ in range(600):
        parent = as_acme.get(f"/runs/{run_id}").json()
        if parent["status"] in ("COMPLETED", "FAILED"):
            break
        time.sleep(0.1)
    assert parent["status"] == "COMPLETED", parent
    children = as_acme.get("/runs", params={"parent_run_id": run_id}).json()
    assert [c["run_id"] for c in children] == parent["child_run_ids"]
    for child_id in parent["child_run_ids"]:
        child = as_acme.get(f"/runs/{child_id}", params={"include": "full"}).json()
        assert child["tenant_id"] == "acme"
        assert as_globex.get(f"/runs/{child_id}").status_code == 404
    assert as_globex.get("/runs", params={"parent_run_id": run_id}).json() == []
    assert as_globex.post(f"/runs/{run_id}/approve").status_code == 404
    assert as_acme.post(f"/runs/{run_id}/approve").status_code == 409


def _admin(system, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYOCO_")}
    env.update(system.env, PYOCO_NATS_URL=system.nats_url)
    command = [sys.executable, "-m", "pyoco_server.cli.admin", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def _until(client: httpx.Client, run_id: str, statuses: set[str], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = client.get(f"/runs/{run_id}").json()
        if run.get("status") in statuses or time.monotonic() > deadline:
            return run
        time.sleep(0.1)


def test_deleting_a_tenant_revokes_its_keys_and_cancels_its_runs_children_included(secured):
    system, _, globex = secured
    doomed = api_key(system, "doomed")
    as_doomed = httpx.Client(base_url=system.url, headers={"X-API-Key": doomed}, timeout=10)
    as_globex = httpx.Client(base_url=system.url, headers={"X-API-Key": globex}, timeout=10)
    other = as_globex.post("/runs", json={"flow_name": "parent", "params": {"n": 1}, "tag": "t"})
    other_id = other.json()["run_id"]
    assert _until(as_globex, other_id, {"COMPLETED", "FAILED"})["status"] == "COMPLETED"
    # Children that do not go with their parent (detach) and would run for 30 s: two take
    # both slots, the third waits PENDING.
    params = {"n": 3, "detach": True, "child_sleep": 30.0}
    run_id = as_doomed.post("/runs", json={"flow_name": "parent", "params": params, "tag": "t"})
    run_id = run_id.json()["run_id"]
    parent = _until(as_doomed, run_id, {"WAITING"})
    assert parent["status"] == "WAITING", parent

    done = _admin(system, "tenant", "delete", "doomed")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert len(report["keys_revoked"]) == 1
    assert set(report["runs_cancelled"]) == {run_id, *parent["child_run_ids"]}, done.stderr
    deadline = time.monotonic() + 15  # the gateways' key cache: PYOCO_AUTH_CACHE_TTL_SEC
    while as_doomed.get(f"/runs/{run_id}").status_code != 403 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert as_doomed.get(f"/runs/{run_id}").status_code == 403

    # A new key of the same tenant name can read what happened: nothing kept running.
    reader = httpx.Client(
        base_url=system.url, headers={"X-API-Key": api_key(system, "doomed")}, timeout=10
    )
    for child_id in [run_id, *parent["child_run_ids"]]:
        child = _until(reader, child_id, {"CANCELLED", "COMPLETED", "FAILED"}, timeout=20)
        assert child["status"] == "CANCELLED", child
    assert as_globex.get(f"/runs/{other_id}").json()["status"] == "COMPLETED"
    again = _admin(system, "tenant", "delete", "doomed")
    assert again.returncode == 0 and json.loads(again.stdout)["runs_cancelled"] == []
