"""``pyoco-server up`` with no NATS URL: embedded JetStream, /health, clean shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pyoco_server.embedded import free_port
from pyoco_server.testing import process_env


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _wait_for(url: str, timeout: float = 20.0) -> tuple[int, dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return _get(url)
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer in {timeout}s")


def _nats_children(pid: int) -> list[int]:
    result = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in result.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_up_runs_embedded_nats_and_stops_it(tmp_path: Path, stop_signal: signal.Signals):
    port = free_port()
    env = process_env()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pyoco_server.cli.server",
            "up",
            "--port",
            str(port),
            "--nats-port",
            "0",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        status, body = _wait_for(f"http://127.0.0.1:{port}/health")
        assert (status, body) == (200, {"status": "ok"})
        deadline = time.monotonic() + 10
        while _get(f"http://127.0.0.1:{port}/ready")[0] != 200:
            assert time.monotonic() < deadline, "gateway never became ready"
            time.sleep(0.1)
        children = _nats_children(process.pid)
        assert children, "no embedded nats-server child"
        assert (tmp_path / ".pyoco" / "nats" / "jetstream").is_dir()
        process.send_signal(stop_signal)
        code = process.wait(timeout=20)
        expected = 0 if stop_signal == signal.SIGTERM else 130
        assert code == expected, process.stdout.read().decode()[-2000:]
        deadline = time.monotonic() + 5
        while any(_alive(child) for child in children):
            assert time.monotonic() < deadline, "nats-server left behind"
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
