"""Fixtures of the run lifecycle tests: per module, a real gateway (uvicorn) and a real worker
process on isolated NATS resources; per test, an HTTP client of the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from lctools import WATCH_HEARTBEAT_SEC, start_gateway
from worker_support import WorkerProcess

from pyoco_server.config import Settings
from pyoco_server.testing import GatewayProcess, isolated_settings


@pytest.fixture(scope="module")
def lc_settings(nats_server) -> Settings:
    return isolated_settings(nats_server.url, watch_heartbeat_interval_sec=WATCH_HEARTBEAT_SEC)


@pytest.fixture(scope="module")
def gateway(lc_settings: Settings, tmp_path_factory) -> Iterator[GatewayProcess]:
    server = start_gateway(lc_settings, tmp_path_factory.mktemp("gateway"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def worker(lc_settings: Settings, tmp_path_factory) -> Iterator[WorkerProcess]:
    """A worker for tag ``default`` running two flows at once."""
    process = WorkerProcess(lc_settings, tmp_path_factory.mktemp("worker"), "--concurrency", "2")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def client(gateway: GatewayProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        yield http


@pytest.fixture
async def ready_worker(nc, lc_settings: Settings, worker: WorkerProcess) -> WorkerProcess:
    """The module's worker, once its liveness record says it pulls jobs."""
    await worker.wait_ready(nc.jetstream(), lc_settings)
    return worker
