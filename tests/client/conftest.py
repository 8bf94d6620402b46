"""A real system for client tests: gateway (``pyoco-server up --nats-url``) + one worker."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from worker_support import REPO_ROOT, RESOLVER

from pyoco_server.config import Settings
from pyoco_server.embedded import EmbeddedNats
from pyoco_server.testing import isolated_settings, process_env, start_system


@dataclass
class System:
    """URLs and settings of a running gateway + worker."""

    base_url: str
    settings: Settings
    env: dict[str, str]


@pytest.fixture(scope="module")
def system(nats_server: EmbeddedNats, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """A gateway and a worker (``--concurrency 2``, this suite's flows) on their own streams and
    buckets; ``env`` is what both run with, for the CLI under test."""
    settings = isolated_settings(nats_server.url, yaml_allowed_callables=("tests.flows",))
    env = process_env(settings, {"PYTHONPATH": str(REPO_ROOT)})
    with start_system(
        nats_server.url,
        tmp_path_factory.mktemp("client-system"),
        env={**settings.to_env(), "PYTHONPATH": str(REPO_ROOT)},
        flow_resolver=RESOLVER,
        concurrency=2,
    ) as running:
        yield System(running.url, settings, env)


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
