"""POST /runs/yaml: policy checks before anything is stored, params, sha256 fields."""

from __future__ import annotations

import hashlib
import json
import textwrap

import pytest
from gwtools import (
    TENANT_HEADER,
    assert_error,
    multipart,
    start_gateway,
    stored_jobs,
    stored_run_ids,
)

from pyoco_server.errors import PolicyViolation
from pyoco_server.hookspecs import hookimpl
from pyoco_server.plugins import build_plugin_manager

GOOD_YAML = textwrap.dedent(
    """
    version: 1
    flow:
      graph: |
        add_one >> to_text
      defaults:
        x: 41
        when: 2024-01-02
    tasks:
      add_one:
        callable: tests.flows.sample_tasks:add_one
      to_text:
        callable: tests.flows.sample_tasks:to_text
    """
).encode()


async def test_yaml_run_is_stored_with_fingerprint_and_queued_with_the_yaml(
    gateway, nc, gateway_settings
):
    result = await gateway.simulate_post(
        "/runs/yaml", **multipart(GOOD_YAML, flow_name="demo", tag="yaml")
    )
    assert result.status_code == 200, result.text
    run_id = result.json["run_id"]
    assert result.json["status"] == "PENDING"

    snapshot = (await gateway.simulate_get(f"/runs/{run_id}")).json
    assert snapshot["workflow_yaml_sha256"] == hashlib.sha256(GOOD_YAML).hexdigest()
    assert snapshot["workflow_yaml_bytes"] == len(GOOD_YAML)
    assert snapshot["params"] == {"x": 41, "when": "2024-01-02"}
    assert snapshot["tag"] == "yaml" and snapshot["flow_name"] == "demo"

    kv = await nc.jetstream().key_value(gateway_settings.runs_kv_bucket)
    assert b"tests.flows.sample_tasks" not in (await kv.get(run_id)).value  # YAML never in KV
    (job_message,) = await stored_jobs(nc, gateway_settings)
    assert job_message.subject == gateway_settings.work_subject("yaml")
    job = json.loads(job_message.data)
    assert job["workflow_yaml"].encode() == GOOD_YAML
    assert job["params"] == {"x": 41, "when": "2024-01-02"}


async def test_pipes_and_named_nodes_are_accepted(gateway):
    raw = (
        GOOD_YAML.decode().replace("add_one >> to_text", "pipe(prep) >> last: to_text")
        + "pipes:\n  prep: add_one\n"
    ).encode()
    result = await gateway.simulate_post("/runs/yaml", **multipart(raw, flow_name="piped"))
    assert result.status_code == 200, result.text


def edit(old: str, new: str) -> bytes:
    text = GOOD_YAML.decode()
    assert old in text
    return text.replace(old, new).encode()


@pytest.mark.parametrize(
    ("raw", "reason", "key"),
    [
        (edit("version: 1", "version: 1\nflows: {}"), "forbidden_key", "flows"),
        (edit("version: 1", "version: 1\ndiscovery: {packages: [os]}"), "forbidden_key", None),
        (edit("version: 1", "version: 1\nextra: 1"), "unknown_key", "extra"),
        (edit("  graph: |", "  retries: 3\n  graph: |"), "unknown_key", "flow.retries"),
        (edit("add_one >> to_text", "add_one >>"), "invalid_graph", "flow.graph"),
        (edit("add_one >> to_text", "add_one & (to_text"), "invalid_graph", "flow.graph"),
        (edit("tests.flows.sample_tasks:add_one", "os:system"), "callable_not_allowed", None),
        (
            GOOD_YAML + b"    inputs:\n      x: $env.HOME\n",
            "env_not_exposed",
            "HOME",
        ),
        (
            GOOD_YAML + b"    inputs:\n      x: $env.HOME\nruntime:\n  expose_env: [HOME]\n",
            "env_not_allowed",
            "HOME",
        ),
        (b"flow: [unclosed", "invalid_yaml", None),
        (b"- just\n- a list\n", "not_a_mapping", None),
        (b"a: &x 1\nb: *x\n", "yaml_alias_not_allowed", None),
    ],
)
async def test_policy_rejections_are_422_with_reason_and_store_nothing(
    gateway, nc, gateway_settings, raw, reason, key
):
    result = await gateway.simulate_post("/runs/yaml", **multipart(raw, flow_name="demo"))
    body = assert_error(result, 422, "ERR-PYOCO-0002")
    assert body["reason"] == reason
    if key is not None:
        assert body["key"] == key
    if reason == "callable_not_allowed":
        assert body["key"] == "os:system"
    assert await stored_jobs(nc, gateway_settings) == []
    assert await stored_run_ids(nc, gateway_settings) == []


async def test_oversize_yaml_is_413(settings):
    small = settings.with_overrides(
        yaml_allowed_callables=("tests.flows",), workflow_yaml_max_bytes=len(GOOD_YAML) - 1
    )
    async with start_gateway(small) as gateway:
        result = await gateway.simulate_post("/runs/yaml", **multipart(GOOD_YAML, flow_name="d"))
        body = assert_error(result, 413, "ERR-PYOCO-0016")
        assert body["reason"] == "too_large"


async def test_yaml_runs_are_refused_until_the_operator_allows_callables(settings):
    async with start_gateway(settings) as gateway:
        result = await gateway.simulate_post("/runs/yaml", **multipart(GOOD_YAML, flow_name="d"))
        body = assert_error(result, 422, "ERR-PYOCO-0002")
        assert body["reason"] == "yaml_runs_disabled"
        assert "PYOCO_YAML_ALLOWED_CALLABLES" in body["detail"]


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"flow_name": "demo"}, "workflow"),
        ({"workflow": GOOD_YAML}, "flow_name"),
        ({"workflow": GOOD_YAML, "flow_name": "demo", "tag": "a.b"}, "tag"),
        ({"workflow": GOOD_YAML, "flow_name": "x" * 300}, "flow_name"),
    ],
)
async def test_bad_forms_are_422(gateway, form, field):
    workflow = form.pop("workflow", None)
    result = await gateway.simulate_post("/runs/yaml", **multipart(workflow, **form))
    body = assert_error(result, 422, "ERR-PYOCO-0002")
    assert field in [item["field"] for item in body["errors"]]


async def test_not_a_multipart_form_is_422(gateway):
    result = await gateway.simulate_post("/runs/yaml", json={"workflow": "x"})
    assert_error(result, 422, "ERR-PYOCO-0002")
    broken = await gateway.simulate_post(
        "/runs/yaml",
        body=b"--nope\r\n\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=zzz"},
    )
    assert_error(broken, 422, "ERR-PYOCO-0002")


async def test_every_policy_plugin_sees_the_gateway_context(gateway_settings):
    seen = []

    class Narrow:
        @hookimpl
        def pyoco_check_workflow_yaml(self, document, raw, context):
            seen.append((context.where, context.flow_name, context.tag, context.tenant_id))
            if "forbidden_by_team" in raw.decode():
                raise PolicyViolation("team_rule", "not here", "forbidden_by_team")

    pm = build_plugin_manager(plugins=[])
    pm.register(Narrow(), name="narrow")
    from gwtools import FakeTenancy

    async with start_gateway(gateway_settings, pm, middleware=[FakeTenancy()]) as gateway:
        ok = await gateway.simulate_post(
            "/runs/yaml",
            **multipart(GOOD_YAML, flow_name="demo", tag="t1"),
        )
        assert ok.status_code == 200
        raw = GOOD_YAML + b"# forbidden_by_team\n"
        form = multipart(raw, flow_name="demo")
        form["headers"][TENANT_HEADER] = "acme"
        refused = await gateway.simulate_post("/runs/yaml", **form)
        assert assert_error(refused, 422, "ERR-PYOCO-0002")["reason"] == "team_rule"
    assert seen == [("gateway", "demo", "t1", None), ("gateway", "demo", "default", "acme")]


async def test_idempotent_yaml_submit(gateway):
    form = multipart(GOOD_YAML, flow_name="demo")
    form["headers"]["Idempotency-Key"] = "yaml-1"
    first = await gateway.simulate_post("/runs/yaml", **form)
    second = await gateway.simulate_post("/runs/yaml", **form)
    assert first.json["run_id"] == second.json["run_id"]
    other = multipart(GOOD_YAML + b"# changed\n", flow_name="demo")
    other["headers"]["Idempotency-Key"] = "yaml-1"
    assert_error(await gateway.simulate_post("/runs/yaml", **other), 422, "ERR-PYOCO-0002")
