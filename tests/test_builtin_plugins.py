"""The built-in plugins: dlq table, sha256 fields, YAML policy and flow building."""

from __future__ import annotations

import hashlib
import textwrap

import pytest

from pyoco_server.config import Settings
from pyoco_server.errors import PolicyViolation
from pyoco_server.model import FAILED, Failure, ResolvedFlow, WorkflowContext
from pyoco_server.plugins import PluginOptions, build_plugin_manager
from pyoco_server.workflow import parse_workflow_yaml

ALLOWED = Settings(yaml_allowed_callables=("tests.flows",), yaml_allowed_env=("GREETING",))

GOOD_YAML = textwrap.dedent(
    """
    version: 1
    flow:
      graph: |
        add_one >> to_text
      defaults:
        x: 1
    tasks:
      add_one:
        callable: tests.flows.sample_tasks:add_one
      to_text:
        callable: tests.flows.sample_tasks:to_text
    """
).encode()


@pytest.fixture(scope="module")
def pm():
    return build_plugin_manager(plugins=[])


def check(pm, raw: bytes, settings: Settings = ALLOWED) -> None:
    document = parse_workflow_yaml(raw, settings.workflow_yaml_max_bytes)
    pm.hook.pyoco_check_workflow_yaml(
        document=document, raw=raw, context=WorkflowContext(settings=settings)
    )


def rejection(pm, raw: bytes, settings: Settings = ALLOWED) -> PolicyViolation:
    with pytest.raises(PolicyViolation) as info:
        check(pm, raw, settings)
    return info.value


@pytest.mark.parametrize(
    ("kind", "delivered", "expected"),
    [
        ("invalid_job", 1, ("term", FAILED, "invalid_job")),
        ("flow_not_found", 1, ("ack", FAILED, "flow_not_found")),
        ("policy_violation", 1, ("ack", FAILED, "policy_violation")),
        ("execution_error", 1, ("ack", FAILED, "execution_error")),
        ("transient", 1, ("nak", None, None)),
        ("transient", 20, ("term", FAILED, "max_deliveries")),
    ],
)
def test_dlq_pyoco_failure_disposition_table(pm, kind, delivered, expected):
    failure = Failure(kind=kind, error="x", job={}, num_delivered=delivered, max_deliver=20)
    result = pm.hook.pyoco_failure_disposition(failure=failure, settings=Settings())
    assert (result.action, result.snapshot_status, result.dlq_reason) == expected
    if kind == "transient" and delivered == 1:
        assert result.delay_sec == 2.0


def test_dlq_execution_error_without_dead_letter_when_disabled(pm):
    failure = Failure("execution_error", "x", {}, 1, 20)
    result = pm.hook.pyoco_failure_disposition(
        failure=failure, settings=Settings(dlq_publish_execution_error=False)
    )
    assert (result.action, result.dlq_reason) == ("ack", None)


def test_sha256_pyoco_enrich_snapshot_matches_hashlib(pm):
    text = GOOD_YAML.decode()
    added = pm.hook.pyoco_enrich_snapshot(
        snapshot={}, job={"workflow_yaml": text}, event="submitted"
    )
    assert {
        "workflow_yaml_sha256": hashlib.sha256(GOOD_YAML).hexdigest(),
        "workflow_yaml_bytes": len(GOOD_YAML),
    } in added
    assert pm.hook.pyoco_enrich_snapshot(snapshot={}, job={"params": {}}, event="x") == []


def test_yaml_policy_accepts_a_valid_flow(pm):
    check(pm, GOOD_YAML)


@pytest.mark.parametrize(
    ("replace", "reason", "key"),
    [
        (("version: 1", "version: 1\nflows: {}"), "forbidden_key", "flows"),
        (("version: 1", "version: 1\ndiscovery: {packages: [os]}"), "forbidden_key", "discovery"),
        (("version: 1", "version: 1\nextra: 1"), "unknown_key", "extra"),
        (("    x: 1", "    x: 1\n  retries: 3"), "unknown_key", "flow.retries"),
        (("add_one >> to_text", "add_one >>"), "invalid_graph", "flow.graph"),
        (("add_one >> to_text", "add_one & to_text"), "invalid_graph", "flow.graph"),
        (("add_one >> to_text", "add_one >> missing"), "unknown_task", "missing"),
        (("tests.flows.sample_tasks:add_one", "os:system"), "callable_not_allowed", "os:system"),
        (
            ("tests.flows.sample_tasks:add_one", "tests.flowsevil:x"),
            "callable_not_allowed",
            "tests.flowsevil:x",
        ),
        (
            ("tests.flows.sample_tasks:add_one", "os:system.__call__"),
            "invalid_callable",
            "os:system.__call__",
        ),
    ],
)
def test_yaml_policy_pyoco_check_workflow_yaml_rejections(pm, replace, reason, key):
    raw = GOOD_YAML.decode().replace(*replace).encode()
    violation = rejection(pm, raw)
    assert (violation.reason, violation.key) == (reason, key)


def test_yaml_policy_refuses_all_yaml_when_allow_list_is_empty(pm):
    violation = rejection(pm, GOOD_YAML, Settings())
    assert violation.reason == "yaml_runs_disabled"
    assert "PYOCO_YAML_ALLOWED_CALLABLES" in violation.detail


def test_yaml_policy_env_needs_expose_and_operator_permission(pm):
    home = GOOD_YAML.decode() + "    inputs:\n      x: $env.HOME\n"
    assert rejection(pm, home.encode()).as_dict()["key"] == "HOME"
    greeting = GOOD_YAML.decode() + "    inputs:\n      x: $env.GREETING\n"
    assert rejection(pm, greeting.encode()).reason == "env_not_exposed"
    exposed = greeting + "runtime:\n  expose_env: [GREETING]\n"
    check(pm, exposed.encode())
    home_exposed = home + "runtime:\n  expose_env: [HOME]\n"
    assert rejection(pm, home_exposed.encode()).reason == "env_not_allowed"


def test_yaml_policy_size_cap_and_aliases(pm):
    small = Settings(yaml_allowed_callables=("tests.flows",), workflow_yaml_max_bytes=64)
    with pytest.raises(PolicyViolation) as info:
        parse_workflow_yaml(GOOD_YAML, small.workflow_yaml_max_bytes)
    assert info.value.reason == "too_large"
    bomb = b"a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n"
    with pytest.raises(PolicyViolation) as info:
        parse_workflow_yaml(bomb, 10_000)
    assert info.value.reason == "yaml_alias_not_allowed"


def test_yaml_policy_accepts_pipes_and_named_nodes(pm):
    raw = (
        GOOD_YAML.decode().replace("add_one >> to_text", "pipe(prep) >> last: to_text")
        + "pipes:\n  prep: add_one\n"
    )
    check(pm, raw.encode())


def test_yaml_flow_pyoco_resolve_flow_builds_and_runs(pm):
    from pyoco.core.engine import Engine
    from pyoco.trace.backend import TraceBackend

    class Quiet(TraceBackend):
        def on_flow_start(self, *a, **k): ...
        def on_flow_end(self, *a, **k): ...
        def on_node_start(self, *a, **k): ...
        def on_node_end(self, *a, **k): ...
        def on_node_error(self, *a, **k): ...

    job = {
        "run_id": "r1",
        "flow_name": "demo",
        "params": {"x": 41},
        "workflow_yaml": GOOD_YAML.decode(),
    }
    resolved = pm.hook.pyoco_resolve_flow(job=job, settings=ALLOWED)
    assert isinstance(resolved, ResolvedFlow)
    assert resolved.params == {"x": 41}
    ctx = Engine(trace_backend=Quiet()).run(resolved.flow, resolved.params)
    assert ctx.results["to_text"] == "v=42"
    assert pm.hook.pyoco_resolve_flow(job={"flow_name": "x"}, settings=ALLOWED) is None


def test_flow_resolver_plugin_uses_the_named_callable(tmp_path):
    resolver = tmp_path / "team_flows.py"
    resolver.write_text(
        "from pyoco import Flow\n"
        "def resolve(name):\n"
        "    return Flow(name=name) if name == 'known' else None\n"
    )
    pm = build_plugin_manager(plugins=[], options=PluginOptions(f"{resolver}:resolve"))
    flow = pm.hook.pyoco_resolve_flow(job={"flow_name": "known"}, settings=Settings())
    assert flow.name == "known"
    assert pm.hook.pyoco_resolve_flow(job={"flow_name": "other"}, settings=Settings()) is None
