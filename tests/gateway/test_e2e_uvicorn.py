"""End to end through real uvicorn: ``pyoco-server up --nats-url`` serving the full API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from gwtools import multipart

from pyoco_server.config import Settings, env_var
from pyoco_server.embedded import free_port

ISOLATED_FIELDS = (
    "work_stream",
    "work_subject_prefix",
    "dlq_stream",
    "dlq_subject_prefix",
    "runs_kv_bucket",
    "workers_kv_bucket",
    "auth_kv_bucket",
    "idempotency_kv_bucket",
)


@pytest.fixture
def served(settings: Settings, repo_root) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYOCO_")}
    env.update({env_var(name): str(getattr(settings, name)) for name in ISOLATED_FIELDS})
    env.update(
        PYOCO_HTTP_MAX_BODY_BYTES="4096",
        PYOCO_YAML_ALLOWED_CALLABLES="tests.flows",
        PYTHONPATH=str(repo_root),
    )
    command = [sys.executable, "-m", "pyoco_server.cli.server", "up"]
    command += ["--nats-url", settings.nats_url, "--port", str(port)]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=repo_root
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "gateway never became ready"
            time.sleep(0.1)
        yield base
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_api_through_uvicorn(served: str):
    with httpx.Client(base_url=served, timeout=10) as client:
        assert client.get("/runs").json() == []
        submitted = client.post("/runs", json={"flow_name": "demo", "params": {"n": 1}})
        assert submitted.status_code == 200
        run_id = submitted.json()["run_id"]
        assert client.get(f"/runs/{run_id}").json()["params"] == {"n": 1}
        assert [run["run_id"] for run in client.get("/runs").json()] == [run_id]

        workflow = b"flow: {graph: a}\ntasks: {a: {callable: 'tests.flows.m:a'}}\n"
        form = multipart(workflow, flow_name="y")
        yaml_run = client.post("/runs/yaml", content=form["body"], headers=form["headers"])
        assert yaml_run.status_code == 200, yaml_run.text

        def chunks(size: int) -> Iterator[bytes]:
            yield b'{"flow_name": "big", "params": {"blob": "'
            for _ in range(size // 1024):
                yield b"x" * 1024
            yield b'"}}'

        chunked = client.post(
            "/runs", content=chunks(8192), headers={"Content-Type": "application/json"}
        )
        assert chunked.status_code == 413 and chunked.json()["err_id"] == "ERR-PYOCO-0019"
        small = client.post(
            "/runs", content=chunks(1024), headers={"Content-Type": "application/json"}
        )
        assert small.status_code == 200

        metrics = client.get("/metrics")
        assert 'pyoco_runs_total{status="PENDING"} 3.0' in metrics.text
        assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
        assert client.get("/nope").json()["err_id"] == "ERR-PYOCO-0020"
