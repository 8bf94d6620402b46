"""Build the example plugin wheels (and a newer flow-registry) for the registry tests.

The wheels are real ``pip wheel --no-deps`` builds of ``plugins/*`` (the newer flow-registry is
a copy whose version is 0.2.0 and whose ``greet`` task answers ``hello v2, NAME``). One build
per test session; ``PYOCO_TEST_WHEEL_CACHE`` names a directory to reuse builds across
sessions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ("flow-registry", "policy", "retry-backoff")


@dataclass(frozen=True)
class PluginWheels:
    flow_registry: Path
    flow_registry_v2: Path
    policy: Path
    retry_backoff: Path


def _copy(source: Path, target: Path) -> str:
    """Build from a copy: setuptools writes build/ and *.egg-info next to the sources."""
    shutil.copytree(
        source, target, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    return str(target)


def _newer_flow_registry(work: Path) -> str:
    source = Path(_copy(REPO_ROOT / "plugins" / "flow-registry", work / "flow-registry-v2"))
    project = source / "pyproject.toml"
    project.write_text(project.read_text().replace('version = "0.1.0"', 'version = "0.2.0"'))
    flows = source / "src" / "pyoco_flow_registry" / "flows.py"
    flows.write_text(
        flows.read_text().replace('return f"hello, {name}"', 'return f"hello v2, {name}"')
    )
    return source


def build_plugin_wheels(out: Path) -> PluginWheels:
    """Build every wheel into ``out`` (skipped for wheels already there)."""
    out.mkdir(parents=True, exist_ok=True)
    names = {
        "flow_registry": "pyoco_flow_registry-0.1.0-py3-none-any.whl",
        "flow_registry_v2": "pyoco_flow_registry-0.2.0-py3-none-any.whl",
        "policy": "pyoco_team_policy-0.1.0-py3-none-any.whl",
        "retry_backoff": "pyoco_retry_backoff-0.1.0-py3-none-any.whl",
    }
    if not all((out / name).is_file() for name in names.values()):
        work = out / "src"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        sources = [_copy(REPO_ROOT / "plugins" / name, work / name) for name in EXAMPLES]
        # Two builds: pip refuses two versions of one distribution in one command.
        for batch in (sources, [_newer_flow_registry(work)]):
            subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), *batch],
                check=True,
                env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
                timeout=600,
            )
        shutil.rmtree(work, ignore_errors=True)
    wheels = PluginWheels(**{field: out / name for field, name in names.items()})
    for path in vars(wheels).values():
        assert zipfile.is_zipfile(path), path
    return wheels
