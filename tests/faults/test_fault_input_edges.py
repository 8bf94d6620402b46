"""Inputs the fuzzing and property tests showed to be mishandled, pinned as plain examples.

A ``\\u`` escape of a lone UTF-16 surrogate (``"\\ud800"``) in a JSON body or a workflow YAML
made a string with no UTF-8 form: the snapshot could not be encoded (500), nor could an error
message quoting it (a 500 with an empty body).

Python's ``$`` matches before a trailing newline, so ``^[A-Za-z0-9_-]+$`` took ``"gpu\\n"`` for
a tag: the gateway then failed to publish to ``pyoco.work.gpu\\n`` and answered 503 (as if NATS
were down) instead of 422.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time

import pytest
from falcon import testing

from pyoco_server.config import Settings, validate_tag
from pyoco_server.errors import ConfigError, PolicyViolation
from pyoco_server.gateway.app import create_app
from pyoco_server.gateway.media import _dump_json
from pyoco_server.jobs import InvalidJob, build_job, decode_job, encode_job
from pyoco_server.log import configure_logging, get_logger
from pyoco_server.nesting import (
    STORED_DOCUMENT_HEADROOM,
    NestingTooDeep,
    load_stored,
    nesting_depth,
)
from pyoco_server.plugins import build_plugin_manager
from pyoco_server.run_store import encode_capped
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


# -- deep nesting ------------------------------------------------------------------------------
# A 6 KB body whose params nested 900 levels answered 500 after 18 s with a 100 MB log line
# (tracebacks with every frame's locals); with PYOCO_LOG_FORMAT=text, rich's traceback renderer
# held the event loop for minutes (health checks unanswered, SIGTERM ignored).


def nested_json(depth: int, leaf: str = "1") -> str:
    """``depth`` levels of alternating objects and arrays, built as text (no recursion)."""
    opening = "".join('{"a":' if level % 2 == 0 else "[" for level in range(depth))
    closing = "".join("}" if level % 2 == 0 else "]" for level in reversed(range(depth)))
    return opening + leaf + closing


@pytest.mark.parametrize("log_format", ["json", "text"])
@pytest.mark.parametrize("depth", [64, 900, 5000])
async def test_deeply_nested_params_are_a_422_naming_the_limit_quickly(settings, log_format, depth):
    settings = settings.with_overrides(log_format=log_format)
    stream = io.StringIO()
    configure_logging(settings, "pyoco-server:http", stream=stream)
    app = create_app(settings, build_plugin_manager(plugins=[]))
    body = '{"flow_name": "f", "params": ' + nested_json(depth) + "}"
    async with testing.ASGIConductor(app) as gateway:
        started = time.monotonic()
        result = await gateway.simulate_post(
            "/runs", body=body.encode(), headers={"Content-Type": "application/json"}
        )
        elapsed = time.monotonic() - started
        assert_invalid(result)
        assert result.json["reason"] == "too_deep" and result.json["limit"] == 64
        assert "PYOCO_MAX_NESTING_DEPTH=64" in result.json["detail"]
        assert (await gateway.simulate_get("/health")).status_code == 200
    assert elapsed < 5, f"{elapsed:.1f} s for one request"
    assert len(stream.getvalue()) < 20_000
    assert "Traceback" not in stream.getvalue()


async def test_params_just_within_the_limit_are_accepted(settings):
    app = create_app(settings, build_plugin_manager(plugins=[]))
    body = '{"flow_name": "f", "params": ' + nested_json(63) + "}"  # the body is level 1
    async with testing.ASGIConductor(app) as gateway:
        result = await gateway.simulate_post(
            "/runs", body=body.encode(), headers={"Content-Type": "application/json"}
        )
        assert result.status_code == 200, result.text
        run = await gateway.simulate_get(f"/runs/{result.json['run_id']}")
        assert nesting_depth(run.json["params"]) == 63


async def test_the_limit_is_a_setting(settings):
    app = create_app(settings.with_overrides(max_nesting_depth=4), build_plugin_manager([]))
    async with testing.ASGIConductor(app) as gateway:
        result = await gateway.simulate_post(
            "/runs", json={"flow_name": "f", "params": {"a": {"b": {"c": [1]}}}}
        )
        assert_invalid(result)
        assert result.json["limit"] == 4
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"PYOCO_MAX_NESTING_DEPTH": "100000"})
    assert info.value.name == "PYOCO_MAX_NESTING_DEPTH"


@pytest.mark.parametrize(
    "text", ["[" * 5000, "a:\n" + "".join(" " * i + "- \n" for i in range(1, 80))]
)
def test_deeply_nested_workflow_yaml_is_a_policy_violation(text):
    with pytest.raises(PolicyViolation) as info:
        parse_workflow_yaml(text.encode(), 1_000_000)
    assert info.value.reason in ("too_deep", "invalid_yaml")
    with pytest.raises(PolicyViolation) as info:
        parse_workflow_yaml(("x: " + nested_json(70, '"v"')).encode(), 1_000_000)
    assert info.value.reason == "too_deep" and "64" in info.value.detail


def test_an_over_deep_stored_snapshot_is_read_back_pruned_not_a_crash():
    raw = '{"run_id": "r", "status": "COMPLETED", "params": ' + nested_json(500) + "}"
    snapshot = load_stored(raw, 64, "run snapshot")
    assert snapshot["status"] == "COMPLETED"
    assert nesting_depth(snapshot) <= 64 + STORED_DOCUMENT_HEADROOM
    with pytest.raises(NestingTooDeep):
        load_stored('{"params": ' + nested_json(100_000) + "}", 64, "run snapshot")
    with pytest.raises(InvalidJob):
        decode_job(
            ('{"run_id": "r", "flow_name": "f", "params": ' + nested_json(100_000) + "}").encode()
        )


def _deep_value(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def _recurse(value: dict) -> None:
    _recurse(value)


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_logging_any_exception_is_bounded_in_time_and_size(log_format):
    stream = io.StringIO()
    configure_logging(Settings(log_format=log_format), "pyoco-server:http", stream=stream)
    log = get_logger("test")
    started = time.monotonic()
    try:
        _recurse(_deep_value(5000))
    except RecursionError as exc:
        try:
            raise ValueError(_deep_value(5000)) from exc
        except ValueError:
            log.exception("boom", params=_deep_value(5000), big="x" * 1_000_000)
    assert time.monotonic() - started < 2
    output = stream.getvalue()
    assert 0 < len(output) < 30_000
    assert "RecursionError" in output and "ValueError" in output


def test_logging_is_bounded_before_configure_logging_runs():
    # An application embedding the gateway (or a test) may never call configure_logging:
    # structlog's own default renders tracebacks with rich, every frame's locals included.
    script = (
        "from pyoco_server.log import get_logger\n"
        "def deep(n):\n"
        "    value = {}\n"
        "    for _ in range(n):\n"
        "        value = {'a': value}\n"
        "    return value\n"
        "def recurse(value):\n"
        "    recurse(value)\n"
        "try:\n"
        "    recurse(deep(5000))\n"
        "except RecursionError:\n"
        "    get_logger('embedded').exception('boom', params=deep(5000))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-2000:]
    assert "RecursionError" in output and "locals" not in output
    assert len(output) < 30_000
