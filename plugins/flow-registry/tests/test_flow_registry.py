"""The flow-registry plugin, alone and loaded by a real gateway + worker (pyoco_server.testing)."""

from __future__ import annotations

import pytest
from pyoco.core.engine import Engine
from pyoco.trace.backend import TraceBackend
from pyoco_flow_registry import REGISTRY, FlowRegistry
from pyoco_flow_registry.plugin import pyoco_resolve_flow

from pyoco_server.config import Settings
from pyoco_server.testing import plugin_listing, start_system

# -- the registry on its own -----------------------------------------------------------------


class Silent(TraceBackend):
    """A pyoco trace backend that prints nothing."""

    def on_flow_start(self, flow_name, run_id=None): ...
    def on_flow_end(self, flow_name): ...
    def on_node_start(self, node_name): ...
    def on_node_end(self, node_name, duration_ms): ...
    def on_node_error(self, node_name, error): ...


def run_locally(name: str, params: dict) -> dict:
    resolved = REGISTRY.resolve(name, params)
    return Engine(Silent()).run(resolved.flow, resolved.params).results


def test_registry_lists_the_team_flows():
    assert REGISTRY.names() == ["always-fails", "etl", "greeting"]
    assert REGISTRY.get("etl").description.startswith("Extract numbers")


def test_every_call_builds_a_fresh_flow():
    first, second = REGISTRY.resolve("etl").flow, REGISTRY.resolve("etl").flow
    assert {id(t) for t in first.tasks}.isdisjoint({id(t) for t in second.tasks})
    # running one never changes the other's wiring
    combine = next(t for t in second.tasks if t.name == "combine")
    assert {t.name for t in combine.dependencies} == {"double", "square"}


def test_params_are_merged_over_the_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # pyoco creates ./artifacts when it runs a flow
    assert REGISTRY.resolve("etl", {"rows": 3}).params == {"rows": 3, "offset": 0}
    assert run_locally("etl", {"rows": 3, "offset": 1})["combine"] == {
        "doubled": 12,
        "squared": 14,
        "rows": 3,
    }


def test_hook_leaves_unknown_names_and_yaml_runs_to_other_plugins():
    settings = Settings()
    assert pyoco_resolve_flow({"flow_name": "nope", "params": {}}, settings) is None
    yaml_job = {"flow_name": "greeting", "params": {}, "workflow_yaml": "version: 1"}
    assert pyoco_resolve_flow(yaml_job, settings) is None
    assert pyoco_resolve_flow({"flow_name": "greeting"}, settings).flow.name == "greeting"


def test_a_name_cannot_be_registered_twice():
    registry = FlowRegistry()
    registry.flow("x")(lambda: None)
    with pytest.raises(ValueError, match="registered twice"):
        registry.flow("x")(lambda: None)


# -- through pyoco-server: pyoco-worker --plugins flow-registry ------------------------------


@pytest.fixture(scope="module")
def registry_system(pyoco_nats_server, tmp_path_factory):
    """One gateway + ``pyoco-worker --plugins flow-registry`` shared by this module's tests."""
    with start_system(
        pyoco_nats_server.url, tmp_path_factory.mktemp("registry"), plugins=["flow-registry"]
    ) as system:
        yield system


def test_worker_resolves_registry_flows_with_params(registry_system):
    greeting = registry_system.run("greeting", {"name": "team"})
    assert greeting["status"] == "COMPLETED", greeting
    assert greeting["task_records"]["shout"]["output"] == "HELLO, TEAM!"

    etl = registry_system.run("etl", {"rows": 4})
    assert etl["status"] == "COMPLETED", etl
    assert etl["task_records"]["combine"]["output"] == {"doubled": 12, "squared": 14, "rows": 4}
    assert etl["params"] == {"rows": 4}  # the run records what was submitted


def test_the_failing_flow_fails_with_its_error_and_a_dead_letter(registry_system):
    snapshot = registry_system.run("always-fails")
    assert snapshot["status"] == "FAILED"
    assert "always-fails fails on purpose" in snapshot["error"]
    assert snapshot["tasks"] == {"prepare": "SUCCEEDED", "explode": "FAILED"}
    assert registry_system.wait_dead_letter(snapshot["run_id"])["reason"] == "execution_error"


def test_unknown_flow_is_flow_not_found(registry_system):
    snapshot = registry_system.run("not-in-the-registry")
    assert snapshot["status"] == "FAILED"
    assert "not found" in snapshot["error"]
    assert registry_system.wait_dead_letter(snapshot["run_id"])["reason"] == "flow_not_found"


def test_disabled_with_p_no(pyoco_system_factory):
    system = pyoco_system_factory(plugins=["flow-registry"], disable=["flow-registry"])
    snapshot = system.run("greeting")
    assert snapshot["status"] == "FAILED"
    assert "not found" in snapshot["error"]


def test_listed_with_its_distribution_version():
    listed = {item["name"]: item for item in plugin_listing()}
    assert listed["flow-registry"]["distribution"] == "pyoco-flow-registry"
    assert listed["flow-registry"]["version"] == "0.1.0"
    assert listed["flow-registry"]["hooks"] == ["pyoco_resolve_flow"]
    assert listed["flow-registry"]["source"] == "entry point"
    names = {item["name"] for item in plugin_listing("-p", "no:flow-registry")}
    assert "flow-registry" not in names
