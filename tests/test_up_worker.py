"""``pyoco-server up --with-worker``: gateway, embedded NATS and a supervised worker, via HTTP.

What ``scripts/up`` runs, submitted to exactly as the README shows.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from worker_support import REPO_ROOT, RESOLVER, YAML_FLOW, alive

from pyoco_server.embedded import free_port
from pyoco_server.testing import process_env


def _worker_pids(parent: int) -> list[int]:
    found = []
    children = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True)
    for pid in children.stdout.split():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"pyoco_server.cli.worker" in cmdline and alive(int(pid)):
            found.append(int(pid))
    return found


async def _worker_pid(parent: int, other_than: int | None = None, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [pid for pid in _worker_pids(parent) if pid != other_than]
        if pids:
            return pids[0]
        await asyncio.sleep(0.1)
    raise AssertionError("no worker process under pyoco-server up")


async def _finished(client: httpx.AsyncClient, run_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snapshot = (await client.get(f"/runs/{run_id}", params={"include": "records"})).json()
        if snapshot["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
            return snapshot
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish")


async def test_up_with_worker_runs_submitted_flows_and_restarts_a_dead_worker(tmp_path: Path):
    port = free_port()
    env = process_env(
        env={"PYTHONPATH": str(REPO_ROOT), "PYOCO_YAML_ALLOWED_CALLABLES": "tests.flows"}
    )
    command = [sys.executable, "-m", "pyoco_server.cli.server", "up", "--port", str(port)]
    command += ["--nats-port", "0", "--with-worker", "--worker-flow-resolver", RESOLVER]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await client.get("/ready")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "gateway never became ready"
                await asyncio.sleep(0.1)

            submitted = await client.post("/runs", json={"flow_name": "add", "params": {"x": 41}})
            assert submitted.status_code == 200, submitted.text
            snapshot = await _finished(client, submitted.json()["run_id"])
            assert snapshot["status"] == "COMPLETED", snapshot
            assert snapshot["task_records"]["to_text"]["output"] == "v=42"

            yaml_run = await client.post(
                "/runs/yaml",
                files={"workflow": ("flow.yaml", YAML_FLOW)},
                data={"flow_name": "yaml-demo"},
            )
            assert yaml_run.status_code == 200, yaml_run.text
            snapshot = await _finished(client, yaml_run.json()["run_id"])
            assert snapshot["task_records"]["to_text"]["output"] == "v=2"

            first = await _worker_pid(process.pid)
            workers = (await client.get("/workers")).json()
            assert [w["pid"] for w in workers if w["alive"]] == [first]

            os.kill(first, signal.SIGKILL)  # the worker dies: up starts another one
            second = await _worker_pid(process.pid, other_than=first)
            submitted = await client.post("/runs", json={"flow_name": "add", "params": {"x": 1}})
            snapshot = await _finished(client, submitted.json()["run_id"])
            assert snapshot["status"] == "COMPLETED"
            assert snapshot["worker_id"].endswith(f"-{second}")

        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert not alive(second), "the worker outlived pyoco-server up"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
