"""YAML schedules checked at creation and again at every firing; tenant isolation and the
fire-time check that the creating API key is not revoked (auth on)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

from schedule_support import (
    call,
    create,
    metric,
    ok,
    runs_of,
    shared_env,
    wait_for,
    work_stream_messages,
)

FLOW_YAML = textwrap.dedent(
    """
    version: 1
    flow:
      graph: |
        add_one >> to_text
      defaults:
        x: 41
    tasks:
      add_one:
        callable: tests.flows.sample_tasks:add_one
      to_text:
        callable: tests.flows.sample_tasks:to_text
    """
).encode()
PEPPER = "schedule-test-pepper-0123456789"


def post_yaml(system, **fields):
    files = {"workflow": ("flow.yaml", FLOW_YAML, "application/x-yaml")}
    return call(system, "POST", "/schedules/yaml", files=files, data=fields)


def test_yaml_schedules_are_checked_at_creation_and_at_every_firing(pyoco_system_factory):
    env = shared_env()
    allowed = {"PYOCO_YAML_ALLOWED_CALLABLES": "tests.flows"}
    # An API-only gateway that allows the callables accepts the schedule ...
    api = pyoco_system_factory(
        worker=False, env={**env, **allowed, "PYOCO_SCHEDULES_ENABLED": "false"}
    )
    # ... but the gateway that fires it has no allow-list: every firing is refused.
    strict = pyoco_system_factory(worker=False, env=env)
    refused = post_yaml(strict, flow_name="yaml_sched", interval_seconds="1")
    assert refused.status_code == 422 and refused.json()["reason"] == "yaml_runs_disabled"
    created = ok(post_yaml(api, flow_name="yaml_sched", tag="yamltag", interval_seconds="1"))
    sid = created["schedule_id"]
    assert created["workflow_yaml_bytes"] == len(FLOW_YAML)
    assert created["params"] == {"x": 41} and created["schedule_type"] == "interval"
    wait_for(
        lambda: ok(call(api, "GET", f"/schedules/{sid}"))["counters"]["skipped"] >= 2,
        10,
        "firings refused by the YAML policy",
    )
    view = ok(call(api, "GET", f"/schedules/{sid}"))
    assert "yaml_runs_disabled" in view["last_error"]
    assert runs_of(api, sid) == []
    assert metric(strict, 'pyoco_schedule_skips_total{reason="policy_violation"}') >= 2
    # A firing gateway whose policy allows the YAML fires it, with the YAML in the job.
    strict.stop()
    pyoco_system_factory(worker=False, env={**env, **allowed})
    runs = wait_for(lambda: runs_of(api, sid), 10, "fired by the allowing gateway")
    snapshot = ok(call(api, "GET", f"/runs/{runs[0]['run_id']}"))
    assert snapshot["workflow_yaml_sha256"] == created["workflow_yaml_sha256"]
    assert snapshot["schedule_id"] == sid and snapshot["tag"] == "yamltag"


def admin_key(system, tenant: str) -> tuple[str, str]:
    """``(api_key, key_id)`` of a new key of ``tenant`` (pyoco-server-admin)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyoco_server.cli.admin",
            "--nats-url",
            system.nats_url,
            "api-key",
            "create",
            "--tenant",
            tenant,
        ],
        capture_output=True,
        text=True,
        env={**system.env, "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=True,
    )
    document = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    return document["api_key"], document["key_id"]


def revoke(system, key_id: str) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pyoco_server.cli.admin",
            "--nats-url",
            system.nats_url,
            "api-key",
            "revoke",
            "--key-id",
            key_id,
        ],
        capture_output=True,
        env={**system.env, "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=True,
    )


def test_tenants_never_see_each_others_schedules_and_a_revoked_key_stops_firing(
    pyoco_system_factory,
):
    env = shared_env(
        PYOCO_HTTP_AUTH_MODE="api_key", PYOCO_AUTH_PEPPER=PEPPER, PYOCO_AUTH_CACHE_TTL_SEC="0.5"
    )
    gateway = pyoco_system_factory(worker=False, env=env)
    key_a, key_id_a = admin_key(gateway, "acme")
    key_b, _ = admin_key(gateway, "globex")
    a, b = {"X-API-Key": key_a}, {"X-API-Key": key_b}
    assert call(gateway, "GET", "/schedules").status_code == 401
    sid = create(gateway, headers=a, interval_seconds=1)
    wait_for(lambda: len(runs_of(gateway, sid, a)) >= 2, 5, "tenant A's schedule fires")

    assert [v["schedule_id"] for v in ok(call(gateway, "GET", "/schedules", headers=a))] == [sid]
    assert ok(call(gateway, "GET", "/schedules", headers=b)) == []
    for method, path, body in (
        ("GET", f"/schedules/{sid}", None),
        ("GET", f"/schedules/{sid}/runs", None),
        ("PATCH", f"/schedules/{sid}", {"paused": True}),
        ("POST", f"/schedules/{sid}/backfill", {"start": 0, "end": 10}),
        ("DELETE", f"/schedules/{sid}", None),
    ):
        response = call(gateway, method, path, json=body, headers=b)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["err_id"] == "ERR-PYOCO-0046"
    assert runs_of(gateway, sid, b) == []
    run = runs_of(gateway, sid, a)[0]
    assert call(gateway, "GET", f"/runs/{run['run_id']}", headers=b).status_code == 404
    assert ok(call(gateway, "GET", f"/runs/{run['run_id']}", headers=a))["tenant_id"] == "acme"

    revoke(gateway, key_id_a)
    time.sleep(2.0)  # the revocation reaches the firing check (cache 0.5 s)
    settled = work_stream_messages(gateway.nats_url, gateway.env)
    time.sleep(2.5)
    assert work_stream_messages(gateway.nats_url, gateway.env) == settled  # no new firing
    assert metric(gateway, 'pyoco_schedule_skips_total{reason="key_revoked"}', b) >= 2
