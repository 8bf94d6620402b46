"""Helpers of the schedule system tests: gateways sharing one set of NATS resources, HTTP
calls, and direct reads of the work stream and the runs bucket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import nats

from pyoco_server.gateway.schedules.repair import nominal_of
from pyoco_server.testing import PyocoSystem, isolation_env


def shared_env(**extra: str) -> dict[str, str]:
    """One set of stream/bucket names (so several gateways share them) plus ``extra``."""
    env = isolation_env()
    env.update({"PYOCO_RECONCILE_INTERVAL_SEC": "1", **extra})
    return env


def call(system: PyocoSystem, method: str, path: str, **kwargs: Any) -> httpx.Response:
    with httpx.Client(base_url=system.url, timeout=10.0) as http:
        return http.request(method, path, **kwargs)


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()


def create(system: PyocoSystem, headers: dict[str, str] | None = None, **body: Any) -> str:
    body.setdefault("flow_name", "scheduled")
    return ok(call(system, "POST", "/schedules", json=body, headers=headers))["schedule_id"]


def runs_of(
    system: PyocoSystem, schedule_id: str, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    return ok(call(system, "GET", f"/runs?schedule_id={schedule_id}&limit=200", headers=headers))


def nominals(runs: list[dict[str, Any]]) -> list[float]:
    """The slots of ``runs`` (decoded from their deterministic ids), oldest first."""
    found = []
    for run in runs:
        decoded = nominal_of(run["run_id"])
        assert decoded is not None, run["run_id"]
        found.append(round(decoded[1], 3))
    return sorted(found)


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.2)


def work_stream_messages(nats_url: str, env: dict[str, str]) -> int:
    """How many jobs the work stream holds (no workers run in these tests)."""

    async def read() -> int:
        nc = await nats.connect(nats_url)
        try:
            info = await nc.jetstream().stream_info(env["PYOCO_WORK_STREAM"])
            return info.state.messages
        finally:
            await nc.close()

    return asyncio.run(read())


def put_run(nats_url: str, env: dict[str, str], snapshot: dict[str, Any]) -> None:
    """Create a run snapshot directly in KV, as a gateway killed right after its create."""
    import json

    async def write() -> None:
        nc = await nats.connect(nats_url)
        try:
            kv = await nc.jetstream().key_value(env["PYOCO_RUNS_KV_BUCKET"])
            await kv.create(snapshot["run_id"], json.dumps(snapshot).encode())
        finally:
            await nc.close()

    asyncio.run(write())


def metric(system: PyocoSystem, name: str, headers: dict[str, str] | None = None) -> float:
    """The sum of the samples of ``name`` in ``GET /metrics`` (0 when absent)."""
    text = call(system, "GET", "/metrics", headers=headers).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            if head == name or head.startswith(name + "{"):
                total += float(value)
    return total
