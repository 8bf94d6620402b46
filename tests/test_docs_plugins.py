"""docs/plugins.md stays true: the walk-through's files make a working, tested plugin.

Every block preceded by ``<!-- file: PATH -->`` is written to PATH in a temporary directory.
The package is then "installed" the way pip would make it visible — its code on the path and
a ``*.dist-info`` whose ``entry_points.txt`` is generated from the ``pyproject.toml`` in the
guide — and the guide's own test file runs against a real system (``pyoco_system``). Building
a wheel would need network access for build dependencies; what matters here is that the
declared entry point, the hook and the tests in the guide work together.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
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


SHIP_BLOCK = re.compile(
    r"^<!--\s*ship:\s*(?P<kind>env|step|service)\s*(?P<name>\S*)\s*-->\s*\n```\w*\n(?P<body>.*?)^```",
    re.MULTILINE | re.DOTALL,
)


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} not ready after {timeout} s")


def test_shipping_a_plugin_to_workers_runs_as_written(tmp_path: Path, nats_server):
    """Run the guide's commands in order: the env block's exports, each step with bash, each
    service in the background. Only the ports differ: the gateway gets a free port and every
    process the test's NATS server."""
    import httpx

    from pyoco_server.embedded import free_port
    from pyoco_server.testing import isolation_env

    for relative, body in guide_files().items():
        target = tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)
    blocks = list(SHIP_BLOCK.finditer(GUIDE.read_text()))
    assert [b["kind"] for b in blocks] == ["env", "service", "step", "service", "step", "step"]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYOCO_")}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    for line in blocks[0]["body"].splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name.strip()] = value.strip()
    env.update(isolation_env())
    env.update(
        {
            "PYOCO_SERVER": f"http://127.0.0.1:{port}",
            "PYOCO_NATS_URL": nats_server.url,
            "PYOCO_WHEEL_OBJECT_STORE_BUCKET": f"docwheels_{port}",
            "PYOCO_PLUGIN_REGISTRY_KV_BUCKET": f"docreg_{port}",
            "PYOCO_WHEEL_HISTORY_KV_BUCKET": f"dochist_{port}",
        }
    )
    services: list[subprocess.Popen] = []
    try:
        for block in blocks[1:]:
            body = block["body"]
            if block["kind"] == "service":
                command = body.split("#", 1)[0].strip()
                if block["name"] == "gateway":
                    command += f" --port {port}"
                log = open(tmp_path / f"{block['name']}.log", "wb")  # noqa: SIM115
                services.append(
                    subprocess.Popen(
                        ["bash", "-c", f"exec {command}"],
                        cwd=tmp_path,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
                if block["name"] == "gateway":
                    _wait_for(
                        lambda: _answers(httpx, f"{env['PYOCO_SERVER']}/ready"), 60, "gateway"
                    )
                else:
                    _wait_for(
                        lambda: "worker_started" in (tmp_path / "worker.log").read_text(),
                        60,
                        "worker",
                    )
                continue
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", body],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert result.returncode == 0, (body, result.stdout[-3000:], result.stderr[-3000:])
        final = json.loads(result.stdout.strip().splitlines()[-1])
        assert final["status"] == "COMPLETED"
        assert final["params"] == {"rows": 4}
        synced = list((tmp_path / ".pyoco" / "plugins").glob("*/team-flows/0.1.0-*"))
        assert len(synced) == 1 and (synced[0] / "team_flows" / "plugin.py").is_file()
    finally:
        for service in reversed(services):
            service.terminate()
            try:
                service.wait(20)
            except subprocess.TimeoutExpired:
                service.kill()


def _answers(httpx, url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
