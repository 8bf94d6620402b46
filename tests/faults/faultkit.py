"""Helpers of the fault suite: a real gateway process, a NATS cluster, run-status tracking.

Everything here runs real processes on loopback (nats-server, ``pyoco-server up``,
``pyoco-worker``); nothing is mocked. Waits poll with deadlines, so a slow machine makes a test
slower, not wrong.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from worker_support import REPO_ROOT

from pyoco_server.config import Settings
from pyoco_server.model import is_terminal
from pyoco_server.testing import GatewayProcess

#: Longest a single HTTP request may take while NATS is unavailable (the gateway's JetStream
#: timeout is 2 s; the rest is room for a loaded machine).
OUTAGE_ANSWER_SEC = 8.0


def start_gateway(settings: Settings, log_dir: Path) -> GatewayProcess:
    """``pyoco-server up`` for ``settings`` on a free loopback port, the repository importable;
    await ``wait_ready_async`` before using it."""
    return GatewayProcess(log_dir, settings=settings, env={"PYTHONPATH": str(REPO_ROOT)})


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


async def stored_snapshots(js: Any, settings: Settings) -> int:
    """How many run snapshots the runs bucket holds (history 1: one message per key).

    Read from the stream's state: ``KeyValue.keys()`` runs a watch that can give up early on a
    loaded machine and report no keys at all.
    """
    info = await js.stream_info(f"KV_{settings.runs_kv_bucket}")
    return info.state.messages
