"""NATS crashes and comes back while runs are submitted and executing.

A real gateway process and two worker hosts work against one nats-server; the server is
killed (SIGKILL, like a crash) while runs are in flight and started again on the same port and
storage a few seconds later. What a user must see: submits during the outage answer 503
ERR-PYOCO-0003 quickly (never a 500, never a hang), the runs accepted before the crash finish
once NATS is back, and the same gateway and worker processes serve new runs without a restart.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from faultkit import OUTAGE_ANSWER_SEC, start_gateway, submit_http, wait_terminal_http
from worker_support import WorkerProcess, wait_until, worker_record

from pyoco_server.embedded import EmbeddedNats, free_port
from pyoco_server.nats_client import connect
from pyoco_server.testing import isolated_settings

ACKS = {"consumer_ack_wait_sec": 3.0, "ack_progress_interval_sec": 0.5}


async def _running(client: httpx.AsyncClient) -> int:
    response = await client.get("/runs", params={"status": "RUNNING"})
    return len(response.json()) if response.status_code == 200 else 0


@pytest.mark.slow
async def test_nats_crash_under_load_is_survived_without_restarts(tmp_path):
    server = EmbeddedNats(tmp_path / "nats", port=free_port())
    server.start()
    settings = isolated_settings(server.url, **ACKS)
    gateway = start_gateway(settings, tmp_path)
    workers = [
        WorkerProcess(settings, tmp_path, "--concurrency", "2", worker_id=f"w{i}") for i in range(2)
    ]
    nc = await connect(server.url, "pytest")
    try:
        await gateway.wait_ready_async()
        js = nc.jetstream()
        for worker in workers:
            await worker.wait_ready(js, settings)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
            accepted = await asyncio.gather(
                *(submit_http(client, "nap", {"seconds": 0.4}) for _ in range(30))
            )
            await wait_until(lambda: _running(client), 30, "runs to be executing")

            server.kill()
            outage_started = time.monotonic()
            answers = []

            async def during_outage(request) -> None:
                started = time.monotonic()
                response = await request
                answers.append((response, time.monotonic() - started))

            await asyncio.gather(
                *(during_outage(client.post("/runs", json={"flow_name": "nap"})) for _ in range(8)),
                during_outage(client.get(f"/runs/{accepted[0]}")),
                during_outage(client.get("/runs")),
            )
            for response, took in answers:
                assert response.status_code == 503, response.text
                assert response.json()["err_id"] == "ERR-PYOCO-0003"
                assert took < OUTAGE_ANSWER_SEC
            await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - outage_started)))

            server = EmbeddedNats(tmp_path / "nats", port=server.port)
            server.start()
            # The same gateway process serves again (no restart): retry until NATS is back.
            later = [await submit_http(client, "nap", {"seconds": 0.05}, retry_for=30)]
            later += await asyncio.gather(
                *(submit_http(client, "nap", {"seconds": 0.05}) for _ in range(9))
            )
            finished = await wait_terminal_http(client, accepted + later, timeout=90)
            assert {s["status"] for s in finished.values()} == {"COMPLETED"}
            ran_later_on = {finished[run_id]["worker_id"] for run_id in later}
            assert ran_later_on <= {"w0", "w1"}

        assert gateway.process.poll() is None, "the gateway exited"
        for worker in workers:
            assert worker.process.poll() is None, f"{worker.worker_id} exited"
            record = await worker_record(nc.jetstream(), settings, worker.worker_id)
            assert record is not None and record["pid"] == worker.pid
        server_errors = [
            event
            for event in gateway.log_events()
            if event.get("event") == "http_error"
            and event.get("status") not in (None, 503)
            and event["status"] >= 500
        ]
        assert not server_errors
    finally:
        for worker in workers:
            worker.stop()
        gateway.stop()
        await nc.close()
        server.stop()
