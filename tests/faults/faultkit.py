"""Helpers of the fault suite: a real gateway process, a NATS cluster, run-status tracking.

Everything here runs real processes on loopback (nats-server, ``pyoco-server up``,
``pyoco-worker``); nothing is mocked. Waits poll with deadlines, so a slow machine makes a test
slower, not wrong.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from worker_support import REPO_ROOT, settings_env

from pyoco_server.config import Settings
from pyoco_server.embedded import EmbeddedNats, free_port
from pyoco_server.model import is_terminal

#: Longest a single HTTP request may take while NATS is unavailable (the gateway's JetStream
#: timeout is 2 s; the rest is room for a loaded machine).
OUTAGE_ANSWER_SEC = 8.0


class GatewayProcess:
    """``pyoco-server up --nats-url ...`` as a subprocess on a free loopback port."""

    def __init__(self, settings: Settings, log_dir: Path, env: dict[str, str] | None = None):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"gateway-{self.port}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("PYOCO_")}
        full_env.update(settings_env(settings))
        full_env.update(PYTHONPATH=str(REPO_ROOT), **(env or {}))
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pyoco_server.cli.server",
                "up",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            cwd=log_dir,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
        return events

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Until ``GET /ready`` answers 200 (NATS connected, run index caught up)."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(f"gateway exited early:\n{self.log()[-3000:]}")
                try:
                    if (await client.get("/ready")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"gateway not ready in {timeout}s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()


async def submit_http(
    client: httpx.AsyncClient,
    flow_name: str,
    params: dict[str, Any] | None = None,
    *,
    retry_for: float = 0.0,
) -> str:
    """``POST /runs``; with ``retry_for``, 503s are retried (same Idempotency-Key) that long.

    Returns the run id. Any answer other than 200 or a retried 503 fails the test.
    """
    key = uuid.uuid4().hex
    deadline = time.monotonic() + retry_for
    while True:
        try:
            response = await client.post(
                "/runs",
                json={"flow_name": flow_name, "params": params or {}},
                headers={"Idempotency-Key": key},
            )
        except httpx.TransportError:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.2)
            continue
        if response.status_code == 200:
            return response.json()["run_id"]
        assert response.status_code == 503, f"{response.status_code}: {response.text}"
        assert response.json()["err_id"] == "ERR-PYOCO-0003", response.text
        if time.monotonic() >= deadline:
            raise AssertionError(f"submit still 503 after {retry_for}s: {response.text}")
        await asyncio.sleep(0.2)


async def wait_terminal_http(
    client: httpx.AsyncClient, run_ids: list[str], timeout: float
) -> dict[str, dict[str, Any]]:
    """Poll ``GET /runs/{id}`` until every run is terminal; returns the last snapshots.

    503s (NATS failing over) are tolerated while waiting; a 5xx other than 503 fails.
    """
    deadline = time.monotonic() + timeout
    done: dict[str, dict[str, Any]] = {}
    while True:
        for run_id in [r for r in run_ids if r not in done]:
            try:
                response = await client.get(f"/runs/{run_id}")
            except httpx.TransportError:
                continue
            assert response.status_code in (200, 503), f"{response.status_code}: {response.text}"
            if response.status_code == 200 and is_terminal(response.json().get("status")):
                done[run_id] = response.json()
        if len(done) == len(run_ids):
            return done
        if time.monotonic() >= deadline:
            missing = [r for r in run_ids if r not in done]
            raise AssertionError(f"{len(missing)} of {len(run_ids)} runs not terminal: {missing}")
        await asyncio.sleep(0.25)


class RunWatch:
    """Latest status of every run in a runs bucket, kept by a KV watch (no polling)."""

    def __init__(self) -> None:
        self.status: dict[str, str] = {}
        self._watcher: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, kv: Any) -> None:
        self._watcher = await kv.watchall()
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        async for entry in self._watcher:
            if entry is None:
                continue
            if not entry.value:
                self.status.pop(entry.key, None)
                continue
            self.status[entry.key] = json.loads(entry.value).get("status")

    def terminal(self) -> int:
        return sum(1 for status in self.status.values() if is_terminal(status))

    async def wait_terminal(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.terminal() < count:
            if time.monotonic() >= deadline:
                raise AssertionError(f"only {self.terminal()} of {count} runs terminal")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self._watcher is not None:
            await self._watcher.stop()
        if self._task is not None:
            await asyncio.wait([self._task], timeout=5)


async def stored_snapshots(js: Any, settings: Settings) -> int:
    """How many run snapshots the runs bucket holds (history 1: one message per key).

    Read from the stream's state: ``KeyValue.keys()`` runs a watch that can give up early on a
    loaded machine and report no keys at all.
    """
    info = await js.stream_info(f"KV_{settings.runs_kv_bucket}")
    return info.state.messages


def start_cluster(store: Path, size: int = 3) -> list[EmbeddedNats]:
    """``size`` nats-servers with JetStream, routed to each other on loopback (one cluster).

    Every node lists every route; each is started before the next, and JetStream becomes
    usable once a majority has elected a meta leader (clients retry until then).
    """
    cluster_ports = [free_port() for _ in range(size)]
    routes = [f"nats://127.0.0.1:{port}" for port in cluster_ports]
    nodes = [
        EmbeddedNats(
            store / f"n{index}",
            server_name=f"n{index}",
            cluster_name="pyoco-test",
            cluster_port=cluster_ports[index],
            routes=[route for i, route in enumerate(routes) if i != index],
        )
        for index in range(size)
    ]
    started: list[EmbeddedNats] = []
    try:
        for node in nodes:
            node.start()
            started.append(node)
    except Exception:
        for node in started:
            node.stop()
        raise
    return nodes


def cluster_url(nodes: list[EmbeddedNats]) -> str:
    """The comma-separated client URL of every node (what ``PYOCO_NATS_URL`` takes)."""
    return ",".join(node.url for node in nodes)
