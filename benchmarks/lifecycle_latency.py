"""Cancel and watch latency through a real gateway (uvicorn), a real worker and nats-server.

Scenarios:

* cancel PENDING: ``POST /runs/{id}/cancel`` round trip on a run no worker has taken (it answers
  CANCELLED itself);
* cancel RUNNING (cooperative): a 20-task chain of 50 ms tasks, cancelled mid-run; time from the
  POST until the watch delivers CANCELLED (the worker notices at its next run heartbeat,
  ``PYOCO_RUN_HEARTBEAT_INTERVAL_SEC`` = 1 s, and the running task finishes);
* cancel RUNNING (hard stop): a task sleeping 60 s, ``PYOCO_CANCEL_GRACE_PERIOD_SEC`` = 1;
* watch event latency: a snapshot written through ``RunStore`` until a watching client has
  parsed the event, with 1 and with 100 clients watching the same run (all of them);
* watch cost: time to the first event, and the gateway's RSS per open watch.

Usage: ``.venv/bin/python benchmarks/lifecycle_latency.py [--samples 30]``. Prints a table, then
one JSON document (the last line) with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pyoco_server.client import SseParser  # noqa: E402
from pyoco_server.config import Settings  # noqa: E402
from pyoco_server.embedded import EmbeddedNats  # noqa: E402
from pyoco_server.nats_client import connect  # noqa: E402
from pyoco_server.plugins import build_plugin_manager  # noqa: E402
from pyoco_server.run_store import RunStore  # noqa: E402
from pyoco_server.testing import GatewayProcess, WorkerProcess, unique_names  # noqa: E402

RESOLVER = f"{ROOT}/benchmarks/flows.py:resolve"
#: What the benchmark's gateway and worker run with besides their settings.
ENV = {"PYOCO_LOG_LEVEL": "WARNING", "PYOCO_CANCEL_GRACE_PERIOD_SEC": "1"}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return {"n": len(values), "p50_ms": at(0.5), "p90_ms": at(0.9), "max_ms": at(1.0)}


async def events(response: httpx.Response):
    parser = SseParser()
    async for line in response.aiter_lines():
        event = parser.feed(line)
        if event is not None:
            yield event.event, event.id, event.data


async def submit(http: httpx.AsyncClient, flow: str, tag: str = "default", **params) -> str:
    answer = await http.post("/runs", json={"flow_name": flow, "tag": tag, "params": params})
    answer.raise_for_status()
    return answer.json()["run_id"]


async def until_status(http: httpx.AsyncClient, run_id: str, wanted: set[str]) -> float:
    """Watch the run; the monotonic time at which a snapshot with a wanted status arrived."""
    async with http.stream("GET", f"/runs/{run_id}/watch") as response:
        async for name, _, data in events(response):
            if name == "snapshot" and data["status"] in wanted:
                return time.monotonic()
    raise RuntimeError(f"{run_id} ended without {wanted}")


async def cancel_pending(http: httpx.AsyncClient, samples: int) -> dict[str, float]:
    took = []
    for _ in range(samples):
        run_id = await submit(http, "noop", tag="nobody")
        started = time.monotonic()
        answer = (await http.post(f"/runs/{run_id}/cancel")).json()
        took.append(time.monotonic() - started)
        assert answer["status"] == "CANCELLED", answer
    return summary(took)


async def cancel_running(http: httpx.AsyncClient, flow: str, samples: int, **params) -> dict:
    took = []
    for _ in range(samples):
        run_id = await submit(http, flow, **params)
        await until_status(http, run_id, {"RUNNING"})
        await asyncio.sleep(0.3)
        ended = asyncio.ensure_future(until_status(http, run_id, {"CANCELLED", "COMPLETED"}))
        started = time.monotonic()
        assert (await http.post(f"/runs/{run_id}/cancel")).json()["status"] == "CANCELLING"
        took.append(await ended - started)
    return summary(took)


async def watch_latency(
    http: httpx.AsyncClient, store: RunStore, watchers: int, writes: int
) -> dict[str, Any]:
    run_id = await submit(http, "noop", tag="nobody")
    written: dict[str, float] = {}
    delays: list[float] = []
    opened: list[float] = []
    ready = asyncio.Event()
    connected = 0

    async def watch() -> None:
        nonlocal connected
        began = time.monotonic()
        async with http.stream("GET", f"/runs/{run_id}/watch") as response:
            async for name, _, data in events(response):
                if name != "snapshot":
                    continue
                if data.get("mark") is None:
                    opened.append(time.monotonic() - began)
                    connected += 1
                    if connected == watchers:
                        ready.set()
                    continue
                delays.append(time.monotonic() - written[data["mark"]])
                if data["status"] == "CANCELLED":
                    return

    tasks = [asyncio.ensure_future(watch()) for _ in range(watchers)]
    await asyncio.wait_for(ready.wait(), 60)
    for index in range(writes):
        mark = f"m{index}"
        last = index == writes - 1

        def change(snapshot: dict[str, Any], mark: str = mark, last: bool = last) -> dict:
            snapshot["mark"] = mark
            if last:
                snapshot["status"] = "CANCELLED"
            return snapshot

        written[mark] = time.monotonic()
        await store.update(run_id, change, "benchmark")
        await asyncio.sleep(0.02)
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return {"event": summary(delays), "first_event": summary(opened)}


async def watch_memory(http: httpx.AsyncClient, gateway_pid: int, count: int) -> dict:
    run_id = await submit(http, "noop", tag="nobody")
    before = rss_kib(gateway_pid)
    contexts = []
    for _ in range(count):
        context = http.stream("GET", f"/runs/{run_id}/watch")
        response = await context.__aenter__()
        await anext(events(response))
        contexts.append(context)
    during = rss_kib(gateway_pid)
    for context in contexts:
        await context.__aexit__(None, None, None)
    return {"watches": count, "rss_kib_per_watch": round((during - before) / count, 1)}


async def scenario(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    server = EmbeddedNats(work / "nats")
    server.start()
    settings = Settings(nats_url=server.url, **unique_names())
    gateway = GatewayProcess(work, settings=settings, env=ENV, cwd=ROOT)
    worker = WorkerProcess(work, "--flow-resolver", RESOLVER, settings=settings, env=ENV, cwd=ROOT)
    nc = await connect(server.url, "benchmark")
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    http = httpx.AsyncClient(base_url=gateway.url, timeout=60, limits=limits)
    try:
        await gateway.wait_ready_async(30, interval=0.1)
        kv = await nc.jetstream().key_value(settings.runs_kv_bucket)
        store = RunStore(kv, build_plugin_manager(plugins=[]), settings)
        await until_status(http, await submit(http, "noop"), {"COMPLETED"})  # worker warm
        n = args.samples
        return {
            "cancel_pending_http": await cancel_pending(http, n),
            "cancel_running_cooperative": await cancel_running(
                http, "chain", max(5, n // 3), seconds=0.05
            ),
            "cancel_running_hard_stop": await cancel_running(http, "sleep", 3, seconds=60),
            "watch_1_client": await watch_latency(http, store, 1, n * 3),
            "watch_100_clients": await watch_latency(http, store, 100, n),
            "watch_memory": await watch_memory(http, gateway.pid, 200),
        }
    finally:
        await http.aclose()
        await nc.close()
        for process in (worker, gateway):
            process.signal()
        for process in (worker, gateway):
            process.stop(30)
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pyoco-lc-bench-") as work:
        figures = asyncio.run(scenario(args, Path(work)))
    rows = [
        ("cancel PENDING (HTTP round trip)", figures["cancel_pending_http"]),
        ("cancel RUNNING -> CANCELLED (cooperative)", figures["cancel_running_cooperative"]),
        ("cancel RUNNING -> CANCELLED (hard stop, 1 s)", figures["cancel_running_hard_stop"]),
        ("KV write -> SSE event, 1 watcher", figures["watch_1_client"]["event"]),
        ("KV write -> SSE event, 100 watchers", figures["watch_100_clients"]["event"]),
        ("watch open -> first event", figures["watch_1_client"]["first_event"]),
    ]
    print(f"{'scenario':48} {'n':>5} {'p50 ms':>9} {'p90 ms':>9} {'max ms':>9}")
    for name, row in rows:
        print(f"{name:48} {row['n']:>5} {row['p50_ms']:>9} {row['p90_ms']:>9} {row['max_ms']:>9}")
    print(f"gateway memory per open watch: {figures['watch_memory']['rss_kib_per_watch']} KiB")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
