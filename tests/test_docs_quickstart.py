"""docs/quickstart.md stays true: its runnable blocks run against the system it starts.

A block is runnable when the line before its fence is ``<!-- runnable ... -->``:

* ``<!-- runnable: server -->`` — the block that starts the system. It runs once for this
  module, exactly as written except that ``pyoco-server up`` gets a free port, an embedded
  NATS port of 0 and a temporary store directory appended (later flags win).
* ``<!-- runnable -->`` — runs in ``bash -euo pipefail`` from the repository root, with the
  documented URL ``http://127.0.0.1:8000`` replaced by the test system's and ``PYOCO_SERVER``
  set for ``pyoco-client``; it must exit 0.
* ``expect="TEXT"`` — the block's stdout must contain TEXT.
* ``needs="/path ..."`` — the block is skipped while the gateway's ``/openapi.json`` lacks one
  of these paths (endpoints that land separately run automatically once they exist).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pyoco_server.embedded import free_port
from pyoco_server.testing import process_env

REPO_ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = REPO_ROOT / "docs" / "quickstart.md"
DOCUMENTED_URL = "http://127.0.0.1:8000"
BLOCK = re.compile(
    r"^<!--\s*runnable(?P<kind>:\s*server)?(?P<attrs>[^>]*?)\s*-->\s*\n"
    r"```(?P<lang>\w*)\n(?P<body>.*?)^```",
    re.MULTILINE | re.DOTALL,
)
ATTRIBUTE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Block:
    line: int
    body: str
    server: bool
    expect: str | None
    needs: tuple[str, ...]

    @property
    def name(self) -> str:
        first = next(line for line in self.body.splitlines() if line.strip())
        words = re.sub(r"[^A-Za-z0-9_-]+", "-", first.split("#")[0]).strip("-")[:40]
        return f"line{self.line}-{words}"


def quickstart_blocks() -> list[Block]:
    text = QUICKSTART.read_text()
    blocks = []
    for match in BLOCK.finditer(text):
        attrs = {k: v.replace('\\"', '"') for k, v in ATTRIBUTE.findall(match["attrs"])}
        blocks.append(
            Block(
                line=text.count("\n", 0, match.start()) + 1,
                body=match["body"],
                server=bool(match["kind"]),
                expect=attrs.get("expect"),
                needs=tuple(attrs.get("needs", "").split()),
            )
        )
    return blocks


BLOCKS = quickstart_blocks()
SERVER = [block for block in BLOCKS if block.server]
COMMANDS = [block for block in BLOCKS if not block.server]


def shell_env(url: str | None = None) -> dict[str, str]:
    env = process_env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONPATH", None)
    if url:
        env["PYOCO_SERVER"] = url
    return env


def server_script(block: Block, port: int, store: Path) -> str:
    lines = []
    for line in block.body.splitlines():
        if line.lstrip().startswith("pyoco-server up"):
            command = line.split(" #")[0].rstrip()
            line = f"exec {command} --port {port} --nats-port 0 --store-dir {store}"
        lines.append(line)
    return "\n".join(lines)


@dataclass
class RunningSystem:
    url: str
    paths: set[str]


def _wait_ready(url: str, process: subprocess.Popen, log: Path) -> set[str]:
    deadline = time.monotonic() + 90
    with httpx.Client(base_url=url, timeout=2) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"the quickstart's server exited:\n{log.read_text()[-3000:]}")
            try:
                workers = http.get("/workers").json() if http.get("/ready").is_success else []
                if any(worker.get("alive") for worker in workers):
                    return set(http.get("/openapi.json").json()["paths"])
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
    raise AssertionError(f"the quickstart's server never became ready:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def quickstart_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    assert len(SERVER) == 1, "docs/quickstart.md needs exactly one <!-- runnable: server --> block"
    port = free_port()
    tmp = tmp_path_factory.mktemp("quickstart")
    log = tmp / "server.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", server_script(SERVER[0], port, tmp / "nats")],
            cwd=REPO_ROOT,
            env=shell_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        yield RunningSystem(url, _wait_ready(url, process, log))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_quickstart_has_runnable_blocks_for_every_step():
    bodies = "\n".join(block.body for block in COMMANDS)
    for command in ("pyoco-client submit ", "submit-yaml", "/runs/yaml", "watch", "cancel"):
        assert command in bodies, f"no runnable quickstart block uses {command!r}"
    assert "examples/submit.py" in bodies


@pytest.mark.parametrize("block", COMMANDS, ids=[block.name for block in COMMANDS])
def test_quickstart_block(block: Block, quickstart_system: RunningSystem):
    missing = [path for path in block.needs if path not in quickstart_system.paths]
    if missing:
        pytest.skip(f"the gateway has no {', '.join(missing)} yet")
    script = block.body.replace(DOCUMENTED_URL, quickstart_system.url)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=REPO_ROOT,
        env=shell_env(quickstart_system.url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = f"docs/quickstart.md line {block.line}\n{script}\n--- stdout\n{result.stdout}"
    report += f"\n--- stderr\n{result.stderr}"
    assert result.returncode == 0, report
    if block.expect:
        assert block.expect in result.stdout, report
