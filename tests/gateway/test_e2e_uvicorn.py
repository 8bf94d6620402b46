"""End to end through real uvicorn: ``pyoco-server up --nats-url`` serving the full API."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from gwtools import multipart

from pyoco_server.config import Settings
from pyoco_server.testing import GatewayProcess


@pytest.fixture
def served(settings: Settings, repo_root, tmp_path) -> Iterator[str]:
    """``pyoco-server up`` on a free port; its base URL. It must exit 0 on SIGTERM."""
    env = {
        "PYOCO_HTTP_MAX_BODY_BYTES": "4096",
        "PYOCO_YAML_ALLOWED_CALLABLES": "tests.flows",
        "PYTHONPATH": str(repo_root),
    }
    gateway = GatewayProcess(tmp_path, settings=settings, env=env, cwd=repo_root)
    try:
        gateway.wait_ready(30)
        yield gateway.url
        assert gateway.stop() == 0
    finally:
        gateway.stop()


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
