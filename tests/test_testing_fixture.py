"""``pyoco_server.testing``: the pytest fixtures plugin authors use.

The example plugins in ``plugins/`` are tested with these fixtures; here: plugins given as
objects, clean-up when a test fails (log tails in the report, no process left behind), and the
fixtures staying lazy for every other test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from pyoco_server import hookspecs
from pyoco_server.hookspecs import hookimpl
from pyoco_server.testing import PyocoSystemError, plugin_spec, process_env

REPO_ROOT = Path(__file__).resolve().parent.parent
HELLO_RESOLVER = f"{REPO_ROOT}/examples/hello_flows.py:resolve"


class TeamStamp:
    """A plugin object defined at module level: stamps every snapshot with its team."""

    @hookimpl
    def pyoco_enrich_snapshot(self, snapshot: dict, job: Any, event: str) -> dict:
        return {"team": "platform", "last_event": event}


TEAM_STAMP = TeamStamp()


def test_plugin_spec_names_plugins_for_the_command_line(tmp_path: Path):
    assert plugin_spec("flow-registry") == "flow-registry"
    assert plugin_spec(tmp_path / "p.py") == str(tmp_path / "p.py")
    assert plugin_spec(hookspecs) == str(Path(hookspecs.__file__).resolve())
    assert plugin_spec(TEAM_STAMP) == f"{Path(__file__).resolve()}:TEAM_STAMP"
    with pytest.raises(TypeError, match="module level"):
        plugin_spec(TeamStamp())


@pytest.fixture
def pyoco_plugins():
    return [TEAM_STAMP]


@pytest.fixture
def pyoco_flow_resolver():
    return HELLO_RESOLVER


def test_a_plugin_object_is_loaded_by_gateway_and_worker(pyoco_system):
    run_id = pyoco_system.submit("hello", {"name": "fixture"})
    snapshot = pyoco_system.wait(run_id)
    assert snapshot["status"] == "COMPLETED", snapshot
    assert snapshot["task_records"]["shout"]["output"] == "HELLO, FIXTURE!"
    assert (snapshot["team"], snapshot["last_event"]) == ("platform", "finished")
    gateway_plugins = {p["name"]: p for p in httpx.get(f"{pyoco_system.url}/plugins").json()}
    assert gateway_plugins[plugin_spec(TEAM_STAMP)]["hooks"] == ["pyoco_enrich_snapshot"]


def test_a_worker_that_cannot_start_is_reported_with_its_log(pyoco_system_factory):
    with pytest.raises(PyocoSystemError) as error:
        pyoco_system_factory(plugins=["no-such-plugin"])
    assert "exited with code 1" in str(error.value)
    assert "ERR-PYOCO-0017" in str(error.value) and "no-such-plugin" in str(error.value)


INNER_TEST = """
import json, os

def test_fails_on_purpose(pyoco_system_factory):
    system = pyoco_system_factory(flow_resolver=os.environ["HELLO_RESOLVER"])
    with open(os.environ["PIDS_FILE"], "w") as handle:
        json.dump(system.pids, handle)
    assert system.run("hello")["status"] == "FAILED", "failing on purpose"

def test_without_fixtures():
    pass
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_a_failing_test_gets_log_tails_and_leaves_no_process(tmp_path: Path):
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(INNER_TEST))
    pids_file = tmp_path / "pids.json"
    env = process_env(env={"HELLO_RESOLVER": HELLO_RESOLVER, "PIDS_FILE": str(pids_file)})
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_inner.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout
    assert "1 failed, 1 passed" in result.stdout
    assert "failing on purpose" in result.stdout
    assert "pyoco system 0: gateway log (last lines)" in result.stdout
    assert "pyoco system 0: worker log (last lines)" in result.stdout
    pids = json.loads(pids_file.read_text())
    assert set(pids) == {"gateway", "worker"}
    assert not any(_alive(pid) for pid in pids.values())


def test_importing_the_pytest_plugin_starts_and_imports_nothing_heavy():
    code = (
        "import sys, pyoco_server.testing; "
        "print([m for m in ('nats', 'httpx', 'falcon', 'pyoco') if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "[]", result.stderr
