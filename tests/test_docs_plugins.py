"""docs/plugins.md stays true: the walk-through's files make a working, tested plugin.

Every block preceded by ``<!-- file: PATH -->`` is written to PATH in a temporary directory.
The package is then "installed" the way pip would make it visible — its code on the path and
a ``*.dist-info`` whose ``entry_points.txt`` is generated from the ``pyproject.toml`` in the
guide — and the guide's own test file runs against a real system (``pyoco_system``). Building
a wheel would need network access for build dependencies; what matters here is that the
declared entry point, the hook and the tests in the guide work together.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pyoco_server.testing import process_env

REPO_ROOT = Path(__file__).resolve().parent.parent
GUIDE = REPO_ROOT / "docs" / "plugins.md"
FILE_BLOCK = re.compile(
    r"^<!--\s*file:\s*(?P<path>\S+)\s*-->\s*\n```\w*\n(?P<body>.*?)^```",
    re.MULTILINE | re.DOTALL,
)


def guide_files() -> dict[str, str]:
    return {m["path"]: m["body"] for m in FILE_BLOCK.finditer(GUIDE.read_text())}


def test_the_walkthrough_declares_a_complete_package():
    files = guide_files()
    assert set(files) == {
        "team-flows/pyproject.toml",
        "team-flows/src/team_flows/__init__.py",
        "team-flows/src/team_flows/plugin.py",
        "team-flows/tests/test_team_flows.py",
    }


def test_the_walkthrough_plugin_loads_runs_and_passes_its_own_tests(tmp_path: Path):
    tomllib = pytest.importorskip("tomllib")
    for relative, body in guide_files().items():
        target = tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)
    project_dir = tmp_path / "team-flows"
    project = tomllib.loads((project_dir / "pyproject.toml").read_text())["project"]
    site = tmp_path / "site"
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    lines = []
    for group, entries in project["entry-points"].items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {value}" for name, value in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")

    env = process_env()
    env["PYTHONPATH"] = os.pathsep.join([str(project_dir / "src"), str(site)])
    listing = subprocess.run(
        [sys.executable, "-m", "pyoco_server.cli.server", "plugins"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listing.returncode == 0, listing.stderr
    assert re.search(
        r"team-flows\s+team-flows 0\.1\.0\s+entry point\s+pyoco_resolve_flow", (listing.stdout)
    ), listing.stdout

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=project_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "3 passed" in result.stdout
