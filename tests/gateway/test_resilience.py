"""NATS outages: bounded 503s, then recovery without restarting the gateway."""

from __future__ import annotations

import asyncio
import time

from gwtools import assert_error, start_gateway

from pyoco_server.config import Settings
from pyoco_server.embedded import EmbeddedNats

#: Generous bound for one request while NATS is down (the JetStream timeout is 2 s).
OUTAGE_ANSWER_SEC = 8.0


async def test_nats_stopped_is_503_and_restarted_is_200_again(tmp_path, settings: Settings):
    store = tmp_path / "nats"
    server = EmbeddedNats(store)
    server.start()
    try:
        async with start_gateway(settings.with_overrides(nats_url=server.url)) as gateway:
            first = await gateway.simulate_post("/runs", json={"flow_name": "before"})
            assert first.status_code == 200
            run_id = first.json["run_id"]

            server.stop()
            requests = [
                ("POST", "/runs", {"json": {"flow_name": "during"}}),
                ("GET", "/runs", {}),
                ("GET", f"/runs/{run_id}", {}),
                ("GET", f"/runs/{run_id}/tasks", {}),
                ("POST", f"/runs/{run_id}/cancel", {}),
                ("GET", f"/runs/{run_id}/watch", {}),
                ("GET", "/workers", {}),
                ("GET", "/metrics", {}),
                ("GET", "/ready", {}),
            ]
            for method, path, options in requests:
                started = time.monotonic()
                result = await gateway.simulate_request(method, path, **options)
                assert time.monotonic() - started < OUTAGE_ANSWER_SEC, path
                assert_error(result, 503, "ERR-PYOCO-0003")
            assert (await gateway.simulate_get("/health")).status_code == 200

            server = EmbeddedNats(store, port=server.port)
            server.start()
            deadline = time.monotonic() + 30
            while True:
                again = await gateway.simulate_post("/runs", json={"flow_name": "after"})
                if again.status_code == 200:
                    break
                assert time.monotonic() < deadline, again.text
                await asyncio.sleep(0.2)
            assert (await gateway.simulate_get(f"/runs/{run_id}")).json["flow_name"] == "before"
            listed = (await gateway.simulate_get("/runs")).json
            assert [run["flow_name"] for run in listed] == ["after", "before"]
            assert (await gateway.simulate_get("/ready")).status_code == 200
    finally:
        server.stop()


async def test_gateway_starts_without_nats_and_serves_once_it_appears(tmp_path, settings: Settings):
    server = EmbeddedNats(tmp_path / "late")
    async with start_gateway(settings.with_overrides(nats_url=server.url)) as gateway:
        assert_error(await gateway.simulate_get("/runs"), 503, "ERR-PYOCO-0003")
        assert_error(await gateway.simulate_get("/ready"), 503, "ERR-PYOCO-0003")
        server.start()
        try:
            deadline = time.monotonic() + 30
            while (await gateway.simulate_get("/ready")).status_code != 200:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
            assert (await gateway.simulate_get("/runs")).json == []
        finally:
            server.stop()
