"""Inputs the fuzzing and property tests showed to be mishandled, pinned as plain examples.

A ``\\u`` escape of a lone UTF-16 surrogate (``"\\ud800"``) in a JSON body or a workflow YAML
made a string with no UTF-8 form: the snapshot could not be encoded (500), nor could an error
message quoting it (a 500 with an empty body).

Python's ``$`` matches before a trailing newline, so ``^[A-Za-z0-9_-]+$`` took ``"gpu\\n"`` for
a tag: the gateway then failed to publish to ``pyoco.work.gpu\\n`` and answered 503 (as if NATS
were down) instead of 422.
"""

from __future__ import annotations

import json

import pytest
from falcon import testing

from pyoco_server.config import validate_tag
from pyoco_server.errors import ConfigError, PolicyViolation
from pyoco_server.gateway.app import create_app
from pyoco_server.gateway.media import _dump_json
from pyoco_server.jobs import InvalidJob, build_job, decode_job, encode_job
from pyoco_server.plugins import build_plugin_manager
from pyoco_server.runs import encode_capped
from pyoco_server.workflow import parse_workflow_yaml


def assert_invalid(result: testing.Result) -> None:
    assert result.status_code == 422, result.text
    assert result.json["err_id"] == "ERR-PYOCO-0002"


@pytest.mark.parametrize(
    "body",
    [
        {"flow_name": "f", "tag": "gpu\n"},
        {"flow_name": "f", "tags": ["gpu\n"]},
    ],
)
async def test_a_tag_with_a_trailing_newline_is_refused_as_invalid(settings, body):
    app = create_app(settings, build_plugin_manager(plugins=[]))
    async with testing.ASGIConductor(app) as gateway:
        assert_invalid(await gateway.simulate_post("/runs", json=body))
        assert_invalid(await gateway.simulate_get("/runs", params={"tag": "gpu\n"}))
        assert_invalid(await gateway.simulate_get("/runs", params={"cursor": "12\n"}))


def test_names_with_a_trailing_newline_are_refused_everywhere():
    with pytest.raises(ConfigError):
        validate_tag("gpu\n")
    job = build_job("run-1", "f", "default", ["default"], {})
    job["tag"] = "default\n"
    with pytest.raises(InvalidJob):
        decode_job(encode_job(job))


@pytest.mark.parametrize(
    "body",
    [
        b'{"flow_name": "f", "params": {"x": "\\ud800"}}',
        b'{"flow_name": "f\\uDFFF"}',
        b'{"flow_name": "f", "params": {"\\ud83d": 1}}',
    ],
)
async def test_a_lone_surrogate_in_a_json_body_is_refused_not_a_500(settings, body):
    # Found by schemathesis: such text has no UTF-8 form, so the snapshot could not be encoded.
    app = create_app(settings, build_plugin_manager(plugins=[]))
    async with testing.ASGIConductor(app) as gateway:
        result = await gateway.simulate_post(
            "/runs", body=body, headers={"Content-Type": "application/json"}
        )
        assert_invalid(result)
        paired = await gateway.simulate_post(
            "/runs",
            body=b'{"flow_name": "f", "params": {"x": "\\ud83d\\ude00"}}',
            headers={"Content-Type": "application/json"},
        )
        assert paired.status_code == 200, paired.text  # a surrogate pair is an emoji


def test_a_lone_surrogate_in_workflow_yaml_is_a_policy_violation():
    raw = b'flow: {graph: a}\ntasks: {a: {callable: "x:y"}}\n"\\uD800": 1\n'
    with pytest.raises(PolicyViolation) as info:
        parse_workflow_yaml(raw, 10_000)
    assert info.value.reason == "invalid_encoding"


def test_any_response_document_can_be_rendered():
    rendered = _dump_json({"detail": "unknown key '\ud800'", "ok": "caf\u00e9"})
    assert json.loads(rendered) == {"detail": "unknown key '\ud800'", "ok": "caf\u00e9"}
    assert _dump_json({"ok": "caf\u00e9"}) == '{"ok": "caf\u00e9"}'.encode()


def test_a_snapshot_holding_a_lone_surrogate_is_still_written():
    # A task may return any string; its record must not make the terminal write fail.
    snapshot = {"run_id": "r", "status": "COMPLETED", "task_records": {"a": {"output": "\ud800"}}}
    data = encode_capped(dict(snapshot), 1024)
    assert json.loads(data)["task_records"]["a"]["output"] == "\ud800"
