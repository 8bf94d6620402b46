"""A real system for client tests: gateway (``pyoco-server up --nats-url``) + one worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from isolation import isolated_settings
from worker_support import REPO_ROOT, RESOLVER, settings_env

from pyoco_server.config import Settings
from pyoco_server.embedded import EmbeddedNats, free_port


@dataclass
class System:
    """URLs and settings of a running gateway + worker."""

    base_url: str
    settings: Settings
    env: dict[str, str]


def _environment(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYOCO_")}
    env.update(settings_env(settings))
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture(scope="module")
def system(nats_server: EmbeddedNats, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    settings = isolated_settings(nats_server.url, yaml_allowed_callables=("tests.flows",))
    env = _environment(settings)
    logs = tmp_path_factory.mktemp("client-system")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    gateway_log = open(logs / "gateway.log", "wb")  # noqa: SIM115 - closed below
    worker_log = open(logs / "worker.log", "wb")  # noqa: SIM115 - closed below
    gateway = subprocess.Popen(
        [sys.executable, "-m", "pyoco_server.cli.server", "up", "--port", str(port)],
        env=env,
        cwd=logs,
        stdout=gateway_log,
        stderr=subprocess.STDOUT,
    )
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pyoco_server.cli.worker",
            "--flow-resolver",
            RESOLVER,
            "--concurrency",
            "2",
            "--poll-timeout",
            "0.5",
        ],
        env=env,
        cwd=logs,
        stdout=worker_log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert gateway.poll() is None, (logs / "gateway.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "gateway never became ready"
            time.sleep(0.1)
        while not httpx.get(base + "/workers", timeout=2).json():
            assert worker.poll() is None, (logs / "worker.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "worker never registered"
            time.sleep(0.1)
        yield System(base, settings, env)
    finally:
        _stop(worker)
        _stop(gateway)
        gateway_log.close()
        worker_log.close()


@pytest.fixture
def cli(system: System, tmp_path: Path):
    """Run ``pyoco-client --server <system>`` as a real process."""

    def run(*args: str, server: str | None = None, timeout: float = 60):
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "pyoco_server.cli.client",
                "--server",
                server or system.base_url,
                *args,
            ],
            capture_output=True,
            text=True,
            env=system.env,
            cwd=tmp_path,
            timeout=timeout,
        )

    return run
