"""The team-policy plugin, alone and loaded by a real gateway + worker (pyoco_system)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pyoco_team_policy import PolicyRules, TeamPolicy
from pyoco_team_policy.rules import parse_flow_tags

from pyoco_server.client import PyocoHttpError
from pyoco_server.config import Settings
from pyoco_server.errors import PolicyViolation
from pyoco_server.model import WorkflowContext
from pyoco_server.testing import plugin_listing

TESTS = Path(__file__).parent


def workflow(tasks: int = 2, version: int | None = 1) -> str:
    """A workflow with ``tasks`` chained tasks (``load >> report >> report2 ...``)."""
    names = ["load", "report", *[f"report{i}" for i in range(2, tasks)]][:tasks]
    lines = [f"version: {version}"] if version is not None else []
    lines += ["flow:", f"  graph: {' >> '.join(names)}", "tasks:"]
    for name in names:
        func = "load" if name == "load" else "report"
        lines += [f"  {name}:", f"    callable: policy_tasks:{func}"]
        if name.startswith("report") and name != "report":
            lines += ["    inputs:", '      load: "$node.load.output"']
    return "\n".join(lines) + "\n"


# -- the rules on their own -------------------------------------------------------------------

RULES = PolicyRules(
    flow_tags=parse_flow_tags("nightly=batch|gpu;*=default"), max_tasks=2, versions={1}
)


def check(document_text: str, flow: str = "daily", tag: str = "default", where="gateway"):
    import yaml

    document = yaml.safe_load(document_text)
    context = WorkflowContext(Settings(), flow_name=flow, tag=tag, where=where)
    TeamPolicy(RULES).pyoco_check_workflow_yaml(document, document_text.encode(), context)


@pytest.mark.parametrize(
    ("text", "flow", "tag", "reason"),
    [
        (workflow(version=None), "daily", "default", "version_required"),
        (workflow(version=2), "daily", "default", "version_not_accepted"),
        (workflow(tasks=3), "daily", "default", "too_many_tasks"),
        (workflow(), "nightly", "default", "tag_not_allowed"),
        (workflow(), "daily", "gpu", "tag_not_allowed"),  # '*' covers unnamed flows
    ],
)
def test_each_rule_rejects_with_its_reason_code(text, flow, tag, reason):
    for where in ("gateway", "worker"):
        with pytest.raises(PolicyViolation) as violation:
            check(text, flow, tag, where)
        assert violation.value.reason == reason


def test_documents_within_the_rules_pass():
    check(workflow(), "nightly", "gpu")
    check(workflow(), "daily", "default")
    TeamPolicy(PolicyRules()).check_tag(WorkflowContext(Settings(), "any", "any-tag"))


def test_rules_come_from_the_environment_and_are_validated():
    rules = PolicyRules.from_env(
        {
            "PYOCO_POLICY_FLOW_TAGS": " etl = batch | gpu ; * = default ",
            "PYOCO_POLICY_MAX_TASKS": "5",
            "PYOCO_POLICY_VERSIONS": "1,2",
        }
    )
    assert rules.flow_tags == {"etl": {"batch", "gpu"}, "*": {"default"}}
    assert (rules.max_tasks, rules.versions) == (5, {1, 2})
    assert PolicyRules.from_env({}) == PolicyRules()
    for name, value in (
        ("PYOCO_POLICY_FLOW_TAGS", "etl"),
        ("PYOCO_POLICY_FLOW_TAGS", "etl=bad.tag"),
        ("PYOCO_POLICY_MAX_TASKS", "0"),
        ("PYOCO_POLICY_VERSIONS", "one"),
    ):
        with pytest.raises(ValueError, match=name):
            PolicyRules.from_env({name: value})


# -- through pyoco-server: the rejection reaches the HTTP client ------------------------------

POLICY_ENV = {
    "PYOCO_YAML_ALLOWED_CALLABLES": "policy_tasks",
    "PYTHONPATH": str(TESTS),  # the worker imports policy_tasks
    "PYOCO_POLICY_FLOW_TAGS": "nightly=batch",
    "PYOCO_POLICY_MAX_TASKS": "2",
}


@pytest.fixture
def pyoco_plugins():
    return ["team-policy"]


@pytest.fixture
def pyoco_env():
    return POLICY_ENV


def rejection(system, text: str, flow: str = "daily", tag: str | None = None) -> PyocoHttpError:
    with pytest.raises(PyocoHttpError) as error:
        system.submit_yaml(text, flow, tag=tag)
    return error.value


def test_rejections_reach_the_client_as_422_with_the_reason_code(pyoco_system):
    for text, flow, tag, reason, key in (
        (workflow(version=None), "daily", None, "version_required", "version"),
        (workflow(tasks=3), "daily", None, "too_many_tasks", "tasks"),
        (workflow(), "nightly", "default", "tag_not_allowed", "default"),
    ):
        error = rejection(pyoco_system, text, flow, tag)
        assert error.status == 422
        assert error.err_id == "ERR-PYOCO-0002"
        assert (error.body["reason"], error.body["key"]) == (reason, key)
    # nothing rejected was stored
    assert pyoco_system.client.list_runs() == []

    nightly = pyoco_system.get(pyoco_system.submit_yaml(workflow(), "nightly", tag="batch"))
    assert (nightly["status"], nightly["tag"]) == ("PENDING", "batch")  # no batch worker here
    daily = pyoco_system.wait(pyoco_system.submit_yaml(workflow(), "daily"))
    assert daily["status"] == "COMPLETED", daily
    assert daily["task_records"]["report"]["output"] == "3 rows"


def test_the_command_line_client_shows_the_reason(pyoco_system, tmp_path: Path):
    path = tmp_path / "flow.yaml"
    path.write_text(workflow(version=None))
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pyoco_server.cli.client", "--server", pyoco_system.url),
            *("submit-yaml", "--workflow-file", str(path), "--flow-name", "daily"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "ERR-PYOCO-0002" in result.stderr and "reason: version_required" in result.stderr


def test_disabled_with_p_no_the_builtin_policy_alone_decides(pyoco_system_factory):
    system = pyoco_system_factory(
        plugins=["team-policy"], disable=["team-policy"], env=POLICY_ENV, worker=False
    )
    run_id = system.submit_yaml(workflow(tasks=3, version=None), "nightly")
    assert system.get(run_id)["status"] == "PENDING"


def test_listed_with_its_distribution_version():
    listed = {item["name"]: item for item in plugin_listing()}
    assert listed["team-policy"]["distribution"] == "pyoco-team-policy"
    assert listed["team-policy"]["version"] == "0.1.0"
    assert listed["team-policy"]["hooks"] == ["pyoco_check_workflow_yaml"]
    names = {item["name"] for item in plugin_listing("-p", "no:team-policy")}
    assert "team-policy" not in names
