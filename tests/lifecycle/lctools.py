"""Helpers for the run lifecycle tests: SSE reading, metrics, polling the HTTP API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from worker_support import REPO_ROOT

from pyoco_server.client import SseParser
from pyoco_server.config import Settings
from pyoco_server.testing import GatewayProcess

#: Short watch heartbeats in these tests, so a dropped watch is noticed quickly.
WATCH_HEARTBEAT_SEC = 0.5


def start_gateway(settings: Settings, log_dir: Path) -> GatewayProcess:
    """``pyoco-server up`` (real uvicorn) for ``settings``, the repository importable; call
    ``wait_ready`` (or ``wait_ready_async``) before using it."""
    return GatewayProcess(
        log_dir, settings=settings, env={"PYTHONPATH": str(REPO_ROOT)}, cwd=REPO_ROOT
    )


@dataclass
class Event:
    """One server-sent event as received (``data`` decoded from JSON)."""

    event: str
    data: Any
    id: str | None
    received: float


async def sse_events(response: httpx.Response) -> AsyncIterator[Event]:
    """Parse a ``text/event-stream`` response (comments skipped) until it ends."""
    parser = SseParser()
    async for line in response.aiter_lines():
        event = parser.feed(line)
        if event is not None:
            yield Event(event.event, event.data, event.id, time.monotonic())


async def collect(
    client: httpx.AsyncClient,
    run_id: str,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    limit: int | None = None,
    timeout: float = 30.0,
) -> tuple[list[Event], bool]:
    """Events of one watch: ``(events, ended)``; ``ended`` is False when ``limit`` events were
    read and the connection was dropped by the client."""
    events: list[Event] = []

    async def read() -> bool:
        async with client.stream(
            "GET", f"/runs/{run_id}/watch", headers=headers, params=params
        ) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            async for event in sse_events(response):
                events.append(event)
                if limit is not None and len(events) >= limit:
                    return False
        return True

    ended = await asyncio.wait_for(read(), timeout)
    return events, ended


def snapshots(events: list[Event]) -> list[Event]:
    return [event for event in events if event.event == "snapshot"]


async def gauge(client: httpx.AsyncClient, name: str) -> float:
    """The value of an unlabelled gauge in ``/metrics``."""
    text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def submit(client: httpx.AsyncClient, flow_name: str, **body: Any) -> str:
    answer = await client.post("/runs", json={"flow_name": flow_name, **body})
    assert answer.status_code == 200, answer.text
    return answer.json()["run_id"]


async def wait_status(
    client: httpx.AsyncClient, run_id: str, wanted: set[str], timeout: float = 30.0
) -> dict[str, Any]:
    """Poll ``GET /runs/{id}`` until its status is one of ``wanted``."""
    deadline = time.monotonic() + timeout
    snapshot: dict[str, Any] = {}
    while time.monotonic() < deadline:
        snapshot = (await client.get(f"/runs/{run_id}", params={"include": "records"})).json()
        if snapshot.get("status") in wanted:
            return snapshot
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} never reached {wanted}: {snapshot}")


async def wait_tasks(
    client: httpx.AsyncClient, run_id: str, wanted: dict[str, str], timeout: float = 30.0
) -> dict[str, Any]:
    """Poll until the run's task states include ``wanted``."""
    deadline = time.monotonic() + timeout
    snapshot: dict[str, Any] = {}
    while time.monotonic() < deadline:
        snapshot = (await client.get(f"/runs/{run_id}")).json()
        tasks = snapshot.get("tasks") or {}
        if all(tasks.get(name) == state for name, state in wanted.items()):
            return snapshot
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} never had tasks {wanted}: {snapshot}")


async def poll(check: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    """Call the plain function ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
