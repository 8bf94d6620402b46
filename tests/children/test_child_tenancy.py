"""Child runs with authentication on: children belong to their parent's tenant."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import pytest
from childkit import RESOLVER, WorkerHost

from pyoco_server.testing import start_system

PEPPER = "children-test-pepper-0123456789"


def _api_key(system, tenant: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYOCO_")}
    env.update(system.env, PYOCO_NATS_URL=system.nats_url)
    done = subprocess.run(
        [sys.executable, "-m", "pyoco_server.cli.admin", "api-key", "create", "--tenant", tenant],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["api_key"]


@pytest.fixture(scope="module")
def secured(nats_server, tmp_path_factory):
    env = {"PYOCO_HTTP_AUTH_MODE": "api_key", "PYOCO_AUTH_PEPPER": PEPPER}
    logs = tmp_path_factory.mktemp("logs")
    with start_system(
        nats_server.url, logs, worker=False, flow_resolver=RESOLVER, env=env
    ) as system:
        host = WorkerHost(system, "secured", ["t"], 2)
        try:
            yield system, _api_key(system, "acme"), _api_key(system, "globex")
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
