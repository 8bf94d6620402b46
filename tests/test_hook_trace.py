"""PYOCO_TRACE_PLUGINS=1: every hook call is logged with a secret-free summary and its result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pyoco import Flow
from pyoco.core.models import Task

from pyoco_server.config import Settings
from pyoco_server.hook_trace import enable_tracing, summarise, summarise_arguments
from pyoco_server.hookspecs import hookimpl
from pyoco_server.model import Failure, WorkflowContext
from pyoco_server.plugins import build_plugin_manager

REPO_ROOT = Path(__file__).resolve().parent.parent
SECRETS = ("hunter2-secret-value", "tok-0123456789")


class Recorder:
    """A logger that keeps what it was given."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))


def test_job_params_show_their_keys_only_and_secrets_are_redacted():
    job = {
        "run_id": "r1",
        "flow_name": "f",
        "params": {"password": SECRETS[0], "rows": 3},
        "workflow_yaml": "version: 1\n" * 50,
        "api_key": SECRETS[1],
        "api_key_id": "k1",
    }
    shown = summarise_arguments({"job": job, "settings": Settings(auth_pepper="p" * 20)})
    assert "settings" not in shown
    assert shown["job"]["params"] == "<keys: password, rows>"
    assert shown["job"]["workflow_yaml"] == "<550 chars>"
    assert shown["job"]["api_key"] == "[redacted]"
    assert shown["job"]["api_key_id"] == "k1"
    assert not any(secret in json.dumps(shown) for secret in SECRETS)


def test_other_values_are_summarised():
    assert summarise(b"x" * 10) == "<10 bytes>"
    assert summarise("y" * 500).endswith("…(500 chars)")
    flow = Flow(name="demo")
    flow >> Task(func=len, name="b") >> Task(func=len, name="a")
    assert summarise(flow) == "<Flow 'demo': a, b>"
    failure = Failure("execution_error", "boom", {"run_id": "r", "params": {"k": 1}}, 2, 20)
    shown = summarise(failure)
    assert shown["type"] == "Failure" and shown["num_delivered"] == 2
    assert shown["job"]["params"] == "<keys: k>"
    context = summarise(WorkflowContext(Settings(), flow_name="f", tag="t", where="worker"))
    assert "settings" not in context and context["where"] == "worker"
    document = {"version": 1, "flow": {"graph": "a", "defaults": {"token": SECRETS[1]}}}
    assert summarise(document)["flow"]["defaults"] == "<keys: token>"
    deep = {"a": {"b": {"c": {"d": 1}}}}
    assert summarise(deep) == {"a": {"b": {"c": "<1 entries>"}}}
    assert summarise(list(range(30)))[-1] == "+10 more"
    assert summarise(object()) == "<object>"


def test_every_hook_call_is_logged_with_plugins_in_call_order_and_result():
    class Early:
        @hookimpl(tryfirst=True)
        def pyoco_enrich_snapshot(self, snapshot, job, event):
            return {"early": True}

    pm = build_plugin_manager(plugins=[], extra=[("early", Early())])
    log = Recorder()
    enable_tracing(pm, log)
    pm.hook.pyoco_enrich_snapshot(snapshot={"run_id": "r"}, job=None, event="started")
    (call, call_fields), (result, result_fields) = log.lines
    assert (call, result) == ("hook_call", "hook_result")
    assert call_fields["hook"] == "pyoco_enrich_snapshot"
    assert call_fields["plugins"] == ["early", "sha256"]
    assert call_fields["args"] == {"snapshot": {"run_id": "r"}, "job": None, "event": "started"}
    assert result_fields["result"] == [{"early": True}]
    assert result_fields["error"] is None and result_fields["duration_ms"] >= 0


def test_a_failing_hook_is_logged_with_its_error():
    class Broken:
        @hookimpl
        def pyoco_resolve_flow(self, job, settings):
            raise LookupError("no such flow")

    pm = build_plugin_manager(plugins=[], extra=[("broken", Broken())])
    log = Recorder()
    enable_tracing(pm, log)
    with pytest.raises(LookupError):
        pm.hook.pyoco_resolve_flow(job={"flow_name": "x"}, settings=Settings())
    event, fields = log.lines[-1]
    assert event == "hook_result" and fields["error"] == "LookupError: no such flow"


def _trace_lines(text: str) -> list[dict[str, Any]]:
    events = []
    for line in text.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("logger") == "pyoco_server.plugins":
                events.append(event)
    return events


def test_gateway_worker_and_execution_process_trace_their_hooks(pyoco_system_factory):
    system = pyoco_system_factory(
        flow_resolver=f"{REPO_ROOT}/examples/hello_flows.py:resolve",
        env={
            "PYOCO_TRACE_PLUGINS": "1",
            "PYOCO_YAML_ALLOWED_CALLABLES": "hello_flows",
            "PYTHONPATH": str(REPO_ROOT / "examples"),
        },
    )
    params = {"name": "trace", "password": SECRETS[0], "api_token": SECRETS[1]}
    assert system.run("hello", params)["status"] == "COMPLETED"
    assert system.run("no-such-flow")["status"] == "FAILED"
    yaml_run = system.submit_yaml(REPO_ROOT / "examples" / "hello.yaml", "hello-yaml")
    assert system.wait(yaml_run)["status"] == "COMPLETED"

    gateway, worker = system.gateway_log(), system.worker_log()
    for text in (gateway, worker):
        assert not any(secret in text for secret in SECRETS)

    gateway_calls = [e for e in _trace_lines(gateway) if e["event"] == "hook_call"]
    submitted = next(e for e in gateway_calls if e["hook"] == "pyoco_enrich_snapshot")
    assert submitted["args"]["event"] == "submitted"
    assert submitted["args"]["snapshot"]["params"] == "<keys: api_token, name, password>"
    check = next(e for e in gateway_calls if e["hook"] == "pyoco_check_workflow_yaml")
    assert check["args"]["raw"].endswith("bytes>")
    assert check["args"]["context"]["where"] == "gateway"

    worker_events = _trace_lines(worker)
    hooks = {(e["event"], e["hook"]) for e in worker_events}
    for hook in ("pyoco_resolve_flow", "pyoco_enrich_snapshot", "pyoco_failure_disposition"):
        assert ("hook_call", hook) in hooks and ("hook_result", hook) in hooks, hook
    # the execution process (resolve, YAML re-check) traces too
    assert any(e.get("process", "").startswith("exec-") for e in worker_events)
    resolved = next(
        e
        for e in worker_events
        if e["event"] == "hook_result" and e["hook"] == "pyoco_resolve_flow" and e["result"]
    )
    assert resolved["result"] == "<Flow 'hello': greet, shout>"
    disposition = next(
        e
        for e in worker_events
        if e["event"] == "hook_result" and e["hook"] == "pyoco_failure_disposition"
    )
    assert disposition["result"]["type"] == "Disposition"
    assert disposition["result"]["dlq_reason"] == "flow_not_found"
