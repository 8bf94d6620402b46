"""``pyoco-server up --with-worker``: the gateway's embedded NATS plus a supervised worker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from test_up import _get, _wait_for
from worker_support import REPO_ROOT, RESOLVER, alive, make_job, open_store, submit, wait_for_run

from pyoco_server.config import Settings
from pyoco_server.embedded import free_port
from pyoco_server.nats_client import connect


def _worker_pids(parent: int) -> list[int]:
    found = []
    for pid in subprocess.run(
        ["pgrep", "-P", str(parent)], capture_output=True, text=True
    ).stdout.split():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"pyoco_server.cli.worker" in cmdline and alive(int(pid)):
            found.append(int(pid))
    return found


async def _worker_pid(parent: int, other_than: int | None = None, timeout: float = 30) -> int:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        pids = [pid for pid in _worker_pids(parent) if pid != other_than]
        if pids:
            return pids[0]
        await asyncio.sleep(0.1)
    raise AssertionError("no worker process under pyoco-server up")


async def test_up_with_worker_runs_flows_and_restarts_a_dead_worker(tmp_path: Path):
    port, nats_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYOCO_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pyoco_server.cli.server",
            "up",
            "--port",
            str(port),
            "--nats-port",
            str(nats_port),
            "--with-worker",
            "--worker-flow-resolver",
            RESOLVER,
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = None
    try:
        assert _wait_for(f"http://127.0.0.1:{port}/health")[0] == 200
        deadline = asyncio.get_running_loop().time() + 20
        while _get(f"http://127.0.0.1:{port}/ready")[0] != 200:
            assert asyncio.get_running_loop().time() < deadline, "gateway never became ready"
            await asyncio.sleep(0.1)
        settings = Settings(nats_url=f"nats://127.0.0.1:{nats_port}")
        client = await connect(settings.nats_url, "pytest")
        js, store = await open_store(client, settings)

        first = await _worker_pid(process.pid)
        run_id = await submit(js, store, settings, make_job("add", {"x": 1}))
        assert (await wait_for_run(store, run_id))["status"] == "COMPLETED"

        os.kill(first, signal.SIGKILL)  # the worker dies: up starts another one
        second = await _worker_pid(process.pid, other_than=first)
        run_id = await submit(js, store, settings, make_job("add", {"x": 2}))
        snapshot = await wait_for_run(store, run_id)
        assert snapshot["status"] == "COMPLETED"
        assert snapshot["worker_id"].endswith(f"-{second}")

        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert not alive(second), "the worker outlived pyoco-server up"
    finally:
        if client is not None:
            await client.close()
        if process.poll() is None:
            process.kill()
            process.wait()
