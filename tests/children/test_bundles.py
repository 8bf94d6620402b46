"""Spawn bundles (``POST /runs/bundle``): approval, spawn targets, policy on every workflow."""

from __future__ import annotations

import time

import httpx
import pytest
from childkit import BUNDLE, TASKS, WorkerHost, bundle


@pytest.fixture(scope="module")
def system(gateway):
    """The package's gateway with one worker host on tag ``b``."""
    host = WorkerHost(gateway, "bundles", ["b"], 2)
    try:
        host.wait_listed()
        yield gateway
    finally:
        host.stop()


def post_bundle(system, data: bytes, tag: str = "b") -> httpx.Response:
    return httpx.post(
        f"{system.url}/runs/bundle",
        files={"bundle": ("bundle.yaml", data, "application/yaml")},
        data={"tag": tag},
        timeout=10,
    )


def test_a_spawning_bundle_waits_for_approval_then_runs_its_child(system):
    answer = post_bundle(system, bundle())
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "PENDING_APPROVAL"
    run_id = answer.json()["run_id"]
    time.sleep(1.0)
    assert system.get(run_id)["status"] == "PENDING_APPROVAL"

    approved = httpx.post(f"{system.url}/runs/{run_id}/approve", timeout=10)
    assert approved.status_code == 200, approved.text
    final = system.wait(run_id, timeout=60)
    assert final["status"] == "COMPLETED", final
    assert final["task_records"]["report"]["output"] == 9
    assert final["child_run_ids"] == [f"{run_id}.fan.0"]
    child = system.get(f"{run_id}.fan.0")
    assert (child["flow_name"], child["status"], child["parent_run_id"]) == (
        "child",
        "COMPLETED",
        run_id,
    )
    again = httpx.post(f"{system.url}/runs/{run_id}/approve", timeout=10)
    assert again.status_code == 200
    refused = httpx.post(f"{system.url}/runs/{run_id}/reject", timeout=10)
    assert refused.status_code == 409
    assert refused.json()["err_id"] == "ERR-PYOCO-0036"


def test_a_rejected_bundle_never_runs(system):
    run_id = post_bundle(system, bundle()).json()["run_id"]
    rejected = httpx.post(f"{system.url}/runs/{run_id}/reject", timeout=10)
    assert rejected.status_code == 200
    assert rejected.json()["status"] == "CANCELLED"
    time.sleep(0.5)
    snapshot = system.get(run_id)
    assert snapshot["status"] == "CANCELLED" and snapshot["tasks"] == {}


def test_a_spawn_target_outside_the_bundle_is_422(system):
    answer = post_bundle(system, bundle(target="nowhere"))
    assert answer.status_code == 422
    assert answer.json()["reason"] == "unknown_spawn_target"


def test_the_policy_checks_every_workflow_of_the_bundle(system):
    answer = post_bundle(system, bundle(child_callable="os:system"))
    assert answer.status_code == 422
    body = answer.json()
    assert body["reason"] == "callable_not_allowed"
    assert "workflow 'child'" in body["detail"]


def test_a_bundle_whose_entry_cannot_reach_a_spawn_runs_at_once(system):
    text = BUNDLE.replace("CHILD_CALLABLE", f"{TASKS}:square")
    text = text.replace("entry_workflow: main", "entry_workflow: child")
    text = text.replace("inputs: {n: 3}", "inputs: {i: 4}")
    answer = post_bundle(system, text.encode())
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "PENDING"
    final = system.wait(answer.json()["run_id"], timeout=60)
    assert final["status"] == "COMPLETED", final
    assert final["task_records"]["square"]["output"] == 16


def test_the_worker_checks_the_policy_of_a_spawned_workflow_again(system):
    """Defence in depth: a worker whose allow-list is narrower than the gateway's refuses the
    child workflow of a bundle the gateway accepted; the parent fails with it."""
    strict = f"{TASKS}:prepare,{TASKS}:report"  # main's callables, not the child's square
    host = WorkerHost(system, "strict", ["strict"], 1, {"PYOCO_YAML_ALLOWED_CALLABLES": strict})
    try:
        host.wait_listed()
        run_id = post_bundle(system, bundle(), tag="strict").json()["run_id"]
        approved = httpx.post(f"{system.url}/runs/{run_id}/approve", timeout=10)
        assert approved.status_code == 200, approved.text
        final = system.wait(run_id, timeout=60)
        assert final["status"] == "FAILED", final
        child = system.get(f"{run_id}.fan.0")
        assert child["status"] == "FAILED"
        assert "square" in child["error"] and "allowed" in child["error"], child["error"]
        assert final["tasks"]["prepare"] == "SUCCEEDED"  # main itself passed the worker check
    finally:
        host.stop()
