"""``pyoco-client submit-bundle | approve | reject`` against real systems, with approval on
and off (``PYOCO_SPAWN_REQUIRES_APPROVAL``), authentication off and on.

Each system has one worker at concurrency 1 with two tags: the bundle's child runs on the
same slot its parent left while waiting.
"""

from __future__ import annotations

import json

import httpx
import pytest
from childkit import REPO_ROOT, RESOLVER, TASKS, WorkerHost, api_key, bundle, pyoco_client

from pyoco_server.testing import start_system

AUTH_ON = {"PYOCO_HTTP_AUTH_MODE": "api_key", "PYOCO_AUTH_PEPPER": "bundle-cli-pepper-0123456789"}


@pytest.fixture(
    scope="module",
    params=[
        ("approval", "auth_off"),
        ("approval", "auth_on"),
        ("no_approval", "auth_off"),
        ("no_approval", "auth_on"),
    ],
    ids="-".join,
)
def system(request, nats_server, tmp_path_factory):
    """``(system, api key or None, approval on?)``."""
    approval, auth = request.param
    env = {
        "PYTHONPATH": str(REPO_ROOT),
        "PYOCO_YAML_ALLOWED_CALLABLES": TASKS,
        "PYOCO_SPAWN_REQUIRES_APPROVAL": "true" if approval == "approval" else "false",
        **(AUTH_ON if auth == "auth_on" else {}),
    }
    logs = tmp_path_factory.mktemp("logs")
    with start_system(
        nats_server.url, logs, worker=False, flow_resolver=RESOLVER, env=env
    ) as started:
        host = WorkerHost(started, f"cli-{approval}-{auth}", ["b", "spare"], 1)
        try:
            if auth == "auth_off":  # (the listing needs a key otherwise; runs wait for it)
                host.wait_listed()
            key = api_key(started, "acme") if auth == "auth_on" else None
            yield started, key, approval == "approval"
        finally:
            host.stop()


@pytest.fixture
def bundle_file(tmp_path):
    path = tmp_path / "bundle.yaml"
    path.write_bytes(bundle())
    return str(path)


def _json(done) -> dict:
    assert done.stdout, done.stderr
    return json.loads(done.stdout)


def test_submit_bundle_wait_runs_the_parent_and_its_child(system, bundle_file):
    started, key, approval = system
    submitted = pyoco_client(started, "submit-bundle", bundle_file, "--tag", "b", key=key)
    assert submitted.returncode == 0, submitted.stderr
    answer = _json(submitted)
    if approval:
        assert answer["status"] == "PENDING_APPROVAL"
        assert f"pyoco-client approve {answer['run_id']}" in submitted.stderr
        done = pyoco_client(
            started, "approve", answer["run_id"], "--wait", "--timeout", "60", key=key
        )
    else:
        # Approval off: queued at once, no approval step.
        assert answer["status"] == "PENDING"
        done = pyoco_client(
            started,
            "submit-bundle",
            bundle_file,
            "--tag",
            "b",
            "--wait",
            "--timeout",
            "60",
            key=key,
        )
    assert done.returncode == 0, done.stderr
    final = _json(done)
    assert final["status"] == "COMPLETED"
    assert len(final["child_run_ids"]) == 1
    assert "1/1 children" in done.stderr  # the --wait progress counts children
    if not approval:
        # The first submission (not followed) completes as well.
        pending = pyoco_client(started, "get", answer["run_id"], key=key)
        assert _json(pending)["status"] in ("PENDING", "RUNNING", "WAITING", "COMPLETED")


def test_reject_with_a_reason_ends_the_bundle_cancelled(system, bundle_file):
    started, key, approval = system
    if not approval:
        pytest.skip("without approval nothing waits to be rejected")
    run_id = _json(pyoco_client(started, "submit-bundle", bundle_file, "--tag", "b", key=key))[
        "run_id"
    ]
    rejected = pyoco_client(started, "reject", run_id, "--reason", "not this week", key=key)
    assert rejected.returncode == 0, rejected.stderr
    snapshot = _json(rejected)
    assert snapshot["status"] == "CANCELLED"
    assert snapshot["error"] == "rejected by approval: not this week"
    late = pyoco_client(started, "approve", run_id, key=key)
    assert late.returncode == 1 and "ERR-PYOCO-0036" in late.stderr
    headers = {"X-API-Key": key} if key else {}
    bad = httpx.post(
        f"{started.url}/runs/{run_id}/reject", json={"reason": 5}, headers=headers, timeout=10
    )
    assert bad.status_code == 422 and bad.json()["err_id"] == "ERR-PYOCO-0002"


def test_the_commands_need_a_key_when_auth_is_on(system, bundle_file):
    started, key, _ = system
    if key is None:
        pytest.skip("auth off")
    done = pyoco_client(started, "submit-bundle", bundle_file, "--tag", "b")
    assert done.returncode == 1 and "HTTP 401" in done.stderr
    assert pyoco_client(started, "approve", "nope").returncode == 1


def test_help_explains_the_commands():
    from pyoco_server.cli.client import build_parser

    parser = build_parser()
    for command in ("submit-bundle", "approve", "reject"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
