"""Plugin discovery and selection: entry points, --plugins, -p no:NAME, start-up errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pyoco_server.errors import PluginLoadError
from pyoco_server.plugins import BUILTIN_PLUGINS, build_plugin_manager

PLUGIN_SOURCE = """
from pyoco_server.hookspecs import hookimpl

@hookimpl
def pyoco_enrich_snapshot(snapshot, job, event):
    return {"team": "demo"}
"""


def make_distribution(root: Path, name: str, module: str, source: str, version: str = "1.2.3"):
    """Write a minimal installed distribution (a module + dist-info) under ``root``."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[pyoco_server]\n{name} = {module}\n")


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "demo-team-plugin", "demo_team_plugin", PLUGIN_SOURCE)
    monkeypatch.syspath_prepend(str(site))
    return site


def run_cli(*args: str, env_extra: dict[str, str] | None = None, pythonpath: Path | None = None):
    env = dict(os.environ)
    env.update(env_extra or {})
    if pythonpath is not None:
        env["PYTHONPATH"] = f"{pythonpath}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return subprocess.run(
        [sys.executable, "-m", "pyoco_server.cli.server", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_builtins_are_named_plugins():
    pm = build_plugin_manager(plugins=[])
    assert list(pm.infos) == list(BUILTIN_PLUGINS)
    assert all(info.source == "built-in" for info in pm.infos.values())
    assert pm.infos["dlq"].hooks == ["pyoco_failure_disposition"]


def test_entry_point_plugin_is_discovered_and_called(installed_plugin: Path):
    pm = build_plugin_manager()
    info = pm.infos["demo-team-plugin"]
    assert info.source == "entry point"
    assert (info.distribution, info.version) == ("demo-team-plugin", "1.2.3")
    results = pm.hook.pyoco_enrich_snapshot(snapshot={}, job=None, event="submitted")
    assert {"team": "demo"} in results


def test_plugins_allow_list_limits_loading(installed_plugin: Path):
    assert "demo-team-plugin" not in build_plugin_manager(plugins=["sha256"]).infos
    pm = build_plugin_manager(plugins=["demo-team-plugin"])
    assert pm.infos["demo-team-plugin"].source == "--plugins"


def test_disable_blocks_a_builtin_and_an_entry_point(installed_plugin: Path):
    pm = build_plugin_manager(disable=["dlq", "demo-team-plugin"])
    assert "dlq" not in pm.infos and "demo-team-plugin" not in pm.infos
    assert pm.hook.pyoco_failure_disposition.get_hookimpls() == []


def test_import_path_and_file_plugins(tmp_path: Path):
    plugin_file = tmp_path / "local_plugin.py"
    plugin_file.write_text(PLUGIN_SOURCE)
    pm = build_plugin_manager(plugins=[str(plugin_file)])
    assert pm.infos[str(plugin_file)].hooks == ["pyoco_enrich_snapshot"]
    pm = build_plugin_manager(plugins=["pyoco_server.builtin.sha256"], disable=["sha256"])
    assert pm.infos["pyoco_server.builtin.sha256"].hooks == ["pyoco_enrich_snapshot"]


def test_unknown_name_is_a_startup_error_naming_it():
    with pytest.raises(PluginLoadError) as info:
        build_plugin_manager(plugins=["no-such-plugin"])
    assert info.value.plugin == "no-such-plugin"


def test_misspelt_hook_is_a_startup_error_naming_the_plugin(tmp_path: Path):
    for source in (
        "from pyoco_server.hookspecs import hookimpl\n@hookimpl\ndef pyoco_resolve_flo(job):\n"
        "    return None\n",
        "def pyoco_enrich_snapshots(snapshot, job, event):\n    return None\n",
    ):
        plugin_file = tmp_path / "typo_plugin.py"
        plugin_file.write_text(source)
        with pytest.raises(PluginLoadError) as info:
            build_plugin_manager(plugins=[str(plugin_file)])
        assert info.value.plugin == str(plugin_file)
        assert "unknown hook" in str(info.value)


def test_plugin_that_fails_to_import_names_it(tmp_path: Path):
    broken = tmp_path / "broken_plugin.py"
    broken.write_text("import does_not_exist_anywhere\n")
    with pytest.raises(PluginLoadError, match=r"broken_plugin\.py"):
        build_plugin_manager(plugins=[str(broken)])


def test_undecorated_hook_is_picked_up(tmp_path: Path):
    plugin_file = tmp_path / "plain_plugin.py"
    plugin_file.write_text(
        "def pyoco_enrich_snapshot(snapshot, job, event):\n    return {'x': 1}\n"
    )
    pm = build_plugin_manager(plugins=[str(plugin_file)])
    assert {"x": 1} in pm.hook.pyoco_enrich_snapshot(snapshot={}, job=None, event="started")


def test_plugins_command_lists_builtins_and_entry_points(tmp_path: Path):
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "demo-team-plugin", "demo_team_plugin", PLUGIN_SOURCE)
    result = run_cli("plugins", "--json", pythonpath=site)
    assert result.returncode == 0, result.stderr
    listed = {item["name"]: item for item in json.loads(result.stdout)}
    assert set(BUILTIN_PLUGINS) <= set(listed)
    assert listed["demo-team-plugin"]["version"] == "1.2.3"
    assert listed["demo-team-plugin"]["hooks"] == ["pyoco_enrich_snapshot"]

    blocked = run_cli(
        "plugins", "--json", "-p", "no:dlq", "-p", "no:demo-team-plugin", pythonpath=site
    )
    names = {item["name"] for item in json.loads(blocked.stdout)}
    assert "dlq" not in names and "demo-team-plugin" not in names

    env_blocked = run_cli("plugins", "--json", env_extra={"PYOCO_DISABLE_PLUGINS": "sha256"})
    assert "sha256" not in {item["name"] for item in json.loads(env_blocked.stdout)}


def test_plugins_command_unknown_plugin_exits_1_with_error_id():
    result = run_cli("plugins", "--plugins", "nope")
    assert result.returncode == 1
    assert "ERR-PYOCO-0017" in result.stderr and "'nope'" in result.stderr
    assert "Traceback" not in result.stderr


def test_import_path_may_name_an_object_in_the_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    plugin_file = tmp_path / "object_plugin.py"
    plugin_file.write_text(
        "from pyoco_server.hookspecs import hookimpl\n"
        "class Stamp:\n"
        "    def __init__(self, team):\n"
        "        self.team = team\n"
        "    @hookimpl\n"
        "    def pyoco_enrich_snapshot(self, snapshot, job, event):\n"
        "        return {'team': self.team}\n"
        "plugin = Stamp('objects')\n"
    )
    pm = build_plugin_manager(plugins=[f"{plugin_file}:plugin"])
    assert {"team": "objects"} in pm.hook.pyoco_enrich_snapshot(
        snapshot={}, job=None, event="started"
    )
    assert pm.infos[f"{plugin_file}:plugin"].module.startswith("pyoco_server_plugin_object")
    monkeypatch.syspath_prepend(str(tmp_path))
    pm = build_plugin_manager(plugins=["object_plugin:plugin"])
    assert pm.infos["object_plugin:plugin"].hooks == ["pyoco_enrich_snapshot"]
    with pytest.raises(PluginLoadError, match="has no attribute 'nope'"):
        build_plugin_manager(plugins=[f"{plugin_file}:nope"])
