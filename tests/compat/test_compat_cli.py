"""The command lines pyoco-server 0.5.1 users script against, run against a real system.

Each test runs a 0.5 command line as a process (``pyoco-client``, ``pyoco-server``,
``pyoco-server-admin``) and checks what docs/migrating-from-0.5.md says it does: the same
result, or the documented mapping with a one-line ``note:`` on stderr — never "unrecognized
arguments".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pyoco_server import __version__
from pyoco_server.embedded import free_port
from pyoco_server.testing import PyocoSystem, isolation_env, start_system

REPO_ROOT = Path(__file__).resolve().parents[2]
RESOLVER = f"{REPO_ROOT}/tests/flows/resolver.py:resolve"
KEY_HEADER = "X-Team-Key"
MODULES = {
    "pyoco-client": "pyoco_server.cli.client",
    "pyoco-server": "pyoco_server.cli.server",
    "pyoco-worker": "pyoco_server.cli.worker",
    "pyoco-server-admin": "pyoco_server.cli.admin",
}


def run(
    program: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``program args`` as a user types it; the result with its exit code and output."""
    return subprocess.run(
        [sys.executable, "-m", MODULES[program], *args],
        env={**_clean_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYOCO_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def client(system: PyocoSystem, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return run("pyoco-client", "--server", system.url, *args, timeout=timeout)


def lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def system(pyoco_nats_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Gateway + worker (concurrency 1, tag default), authentication off.

    One tag: with two at concurrency 1 the worker intermittently stopped pulling under load
    (the second tag's first fetch never returned its slot); that is the worker's to fix.
    """
    with start_system(
        pyoco_nats_server.url,
        tmp_path_factory.mktemp("compat-off"),
        # A flow that ignores the cancel request is stopped after 3 s instead of 30.
        env={"PYTHONPATH": str(REPO_ROOT), "PYOCO_CANCEL_GRACE_PERIOD_SEC": "3"},
        flow_resolver=RESOLVER,
    ) as started:
        yield started


@pytest.fixture(scope="module")
def auth_system(pyoco_nats_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A gateway with only ``PYOCO_HTTP_AUTH_MODE=api_key`` (no pepper) and a renamed header."""
    env = {"PYOCO_HTTP_AUTH_MODE": "api_key", "PYOCO_HTTP_API_KEY_HEADER": KEY_HEADER}
    with start_system(
        pyoco_nats_server.url, tmp_path_factory.mktemp("compat-auth"), env=env, worker=False
    ) as started:
        yield started


# -- every command: --version -------------------------------------------------------------


@pytest.mark.parametrize("program", sorted(MODULES))
def test_every_command_answers_version(program):
    result = run(program, "--version", timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{program} {__version__}"


# -- pyoco-client --------------------------------------------------------------------------


def test_an_http_error_shows_the_status_and_the_error_id_on_one_line(system):
    result = client(system, "get", "00000000-0000-4000-8000-000000000000")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: HTTP 404 ERR-PYOCO-0005:"), line


def test_cancel_wait_timeout_sec_converges_or_gives_up_in_time(system):
    running = system.submit("nap", {"seconds": 60})
    system.wait(running, statuses=["RUNNING"])
    started = time.monotonic()
    gave_up = client(system, "cancel", "--run-id", running, "--wait", "--timeout-sec", "0.5")
    assert gave_up.returncode == 1 and time.monotonic() - started < 15
    (line,) = gave_up.stderr.strip().splitlines()
    assert "CANCELLING" in line
    converged = client(system, "cancel", "--run-id", running, "--wait", "--timeout-sec", "40")
    assert converged.returncode == 0, converged.stderr
    assert json.loads(converged.stdout)["status"] == "CANCELLED"
    pending = system.submit("nap", tag="nobody-serves-this")
    result = client(system, "cancel", "--run-id", pending, "--wait")  # default 30 s
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "CANCELLED"


def test_watch_records_max_events_since_and_timeout_sec(system):
    run_id = system.submit("steps")
    full = client(system, "watch", run_id, "--records", "--until-terminal", "--output", "json")
    assert full.returncode == 0, full.stderr
    snapshots = lines(full)
    assert snapshots[-1]["status"] == "COMPLETED"
    assert snapshots[-1]["task_records"], "--records includes task records"
    assert "task_records" not in lines(client(system, "watch", run_id))[-1]

    one = client(system, "watch", run_id, "--max-events", "1")
    assert one.returncode == 0 and len(lines(one)) == 1

    final_time = snapshots[-1]["updated_at"]
    since_time = client(system, "watch", run_id, "--since", str(final_time))
    assert [s["status"] for s in lines(since_time)] == ["COMPLETED"]
    later = client(system, "watch", run_id, "--since", str(final_time + 60))
    assert later.returncode == 0 and lines(later) == []
    past_the_end = client(system, "watch", run_id, "--since", "999999999", timeout=20)
    assert past_the_end.returncode == 0 and lines(past_the_end) == [], "resumed after the end"

    waiting = system.submit("noop", tag="nobody-serves-this")
    started = time.monotonic()
    timed_out = client(system, "watch", waiting, "--timeout-sec", "1", "--until-terminal")
    assert timed_out.returncode == 1 and time.monotonic() - started < 15
    assert [s["status"] for s in lines(timed_out)] == ["PENDING"]
    status_line = client(system, "watch", run_id, "--output", "status")
    assert status_line.stdout.startswith("COMPLETED")


def test_list_full_returns_whole_snapshots(system):
    run_id = system.submit("noop")
    system.wait(run_id)
    summaries = json.loads(client(system, "list", "--limit", "5").stdout)
    full = json.loads(client(system, "list", "--full", "--limit", "5").stdout)
    assert run_id in {run["run_id"] for run in full}
    assert all("params" in run for run in full)
    assert not any("params" in run for run in summaries)


def test_api_key_mode_without_a_pepper_and_the_api_key_header_flag(auth_system, tmp_path):
    env = {
        "PYOCO_NATS_URL": auth_system.nats_url,
        "PYOCO_AUTH_KV_BUCKET": auth_system.env["PYOCO_AUTH_KV_BUCKET"],
    }
    created = run("pyoco-server-admin", "api-key", "create", "--tenant", "compat", env=env)
    assert created.returncode == 0, created.stderr
    assert "PYOCO_AUTH_PEPPER is not set" in created.stderr
    api_key = json.loads(created.stdout)["api_key"]

    keyed = ("--api-key", api_key, "--api-key-header", KEY_HEADER)
    assert client(auth_system, *keyed, "list", "--full").returncode == 0
    missing = client(auth_system, "list")
    assert missing.returncode == 1 and "HTTP 401 ERR-PYOCO-0014" in missing.stderr
    wrong_header = client(auth_system, "--api-key", api_key, "list")  # sent as X-API-Key
    assert wrong_header.returncode == 1 and "HTTP 401" in wrong_header.stderr
    submitted = client(auth_system, *keyed, "submit", "--flow-name", "noop")
    assert submitted.returncode == 0, submitted.stderr
    run_id = json.loads(submitted.stdout)["run_id"]
    cancelled = client(auth_system, *keyed, "cancel", "--run-id", run_id, "--wait")
    assert json.loads(cancelled.stdout)["status"] == "CANCELLED"
    notes = [
        e for e in auth_system.log_events("gateway") if e.get("event") == "auth_pepper_not_set"
    ]
    assert len(notes) == 1 and "bind-pepper" in notes[0]["detail"]


# -- pyoco-server --------------------------------------------------------------------------


class Gateway:
    """A ``pyoco-server`` process started from a 0.5 command line."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.log = cwd / "server.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", MODULES["pyoco-server"], *args],
            env={**_clean_env(), **env},
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
        )

    def wait_healthy(self, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output()
            try:
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"never ready: {self.output()[-3000:]}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def test_the_flat_05_form_runs_up_with_a_note(pyoco_nats_server, tmp_path):
    port = free_port()
    gateway = Gateway(
        ["--port", str(port), "--nats-url", pyoco_nats_server.url, "--log-level", "warning"],
        isolation_env(),
        tmp_path,
    )
    try:
        gateway.wait_healthy(f"http://127.0.0.1:{port}")
    finally:
        assert gateway.stop() == 0
    output = gateway.output()
    assert "note: `pyoco-server --port" in output and "unrecognized" not in output
    assert '"level": "info"' not in output, "--log-level warning hides info lines"


def test_up_with_nats_bootstrap_addresses_and_worker_flags(tmp_path):
    nats_port, monitor_port, port = free_port(), free_port(), free_port()
    gateway = Gateway(
        [
            "up",
            "--port",
            str(port),
            "--with-nats-bootstrap",
            "--nats-listen-host",
            "127.0.0.1",
            "--nats-client-port",
            str(nats_port),
            "--nats-http-port",
            str(monitor_port),
            "--nats-url",
            f"nats://127.0.0.1:{nats_port}",
            "--store-dir",
            str(tmp_path / "nats"),
            "--with-worker",
            "--worker-id",
            "compat-worker",
            "--worker-poll-timeout",
            "0.2",
            "--log-level",
            "DEBUG",
        ],
        {"PYOCO_NATS_URL": "nats://127.0.0.1:1"},  # --with-nats-bootstrap wins, as in 0.5
        tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        gateway.wait_healthy(url)
        assert httpx.get(f"http://127.0.0.1:{monitor_port}/healthz", timeout=5).status_code == 200
        deadline = time.monotonic() + 60
        while not any(
            w["worker_id"] == "compat-worker" for w in httpx.get(url + "/workers").json()
        ):
            assert time.monotonic() < deadline, gateway.output()[-3000:]
            time.sleep(0.3)
    finally:
        assert gateway.stop() == 0
    output = gateway.output()
    assert "note: --with-nats-bootstrap" in output
    assert f"nats://127.0.0.1:{nats_port}" in output


def test_with_nats_bootstrap_contradicting_nats_url_fails_clearly():
    result = run(
        "pyoco-server", "up", "--with-nats-bootstrap", "--nats-url", "nats://10.0.0.9:4222"
    )
    assert result.returncode == 2
    assert "--with-nats-bootstrap" in result.stderr and "nats://10.0.0.9:4222" in result.stderr


def test_worker_flags_without_a_worker_are_noted(pyoco_nats_server, tmp_path):
    port = free_port()
    gateway = Gateway(
        ["up", "--port", str(port), "--nats-url", pyoco_nats_server.url, "--worker-id", "w"],
        isolation_env(),
        tmp_path,
    )
    try:
        gateway.wait_healthy(f"http://127.0.0.1:{port}")
    finally:
        gateway.stop()
    assert "note: --worker-id has no effect without --with-worker" in gateway.output()
