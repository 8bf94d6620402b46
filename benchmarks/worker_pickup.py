"""Worker pickup latency and fairness across tags, through a real nats-server.

* pickup: an idle host serving 1, 3 and 10 tags; one job at a time on a random tag of its,
  each published when the previous run has ended and the host is idle again. Latency =
  the run's ``start_time`` (written by the worker when it claims the job) minus the wall
  clock just before the publish: publish to claim. Targets: p50 <= 3 ms, p99 <= 20 ms.
* fairness: a host with tags ``busy`` and ``quiet``: a backlog of 200-ms runs on ``busy``,
  and a trickle of runs on ``quiet``. For each quiet run: how many busy runs were claimed
  between its publish and its claim (docs/worker.md's bound: at most K - 1 = 1 taken, plus one
  taken just before the publish and claimed just after it) and its wait.

Usage: ``.venv/bin/python benchmarks/worker_pickup.py [--jobs 200] [--concurrency N]``
(default: the worker's own default concurrency). Prints a table, then one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worker_drain import Workers, fresh_settings

from pyoco_server.config import Settings
from pyoco_server.embedded import EmbeddedNats
from pyoco_server.jobs import build_job, encode_job, message_id, pending_snapshot, with_pending
from pyoco_server.nats_client import connect, ensure_resources
from pyoco_server.plugins import build_plugin_manager
from pyoco_server.run_store import RunStore


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class Host:
    """One worker host on fresh resources, serving ``tags``."""

    def __init__(self, nc: Any, url: str, log_dir: Path, tags: list[str], concurrency: int):
        self.nc = nc
        self.settings: Settings = fresh_settings(url)
        self.tags = tags
        self.concurrency = concurrency
        self.log_dir = log_dir

    async def __aenter__(self) -> Host:
        self.js = self.nc.jetstream()
        await ensure_resources(self.js, self.settings)
        self.kv = await self.js.key_value(self.settings.runs_kv_bucket)
        self.store = RunStore(self.kv, build_plugin_manager(plugins=[]), self.settings)
        extra = ["--tags", ",".join(self.tags)]
        if self.concurrency:
            extra += ["--concurrency", str(self.concurrency)]
        self.workers = Workers(self.settings, 1, 0, self.log_dir, extra=extra)
        await self.workers.wait_ready(self.js, self.settings)
        self.ended: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.subscription = await self.nc.subscribe(
            f"$KV.{self.settings.runs_kv_bucket}.>", cb=self._seen
        )
        return self

    async def _seen(self, msg: Any) -> None:
        future = self.ended.get(msg.subject.rsplit(".", 1)[-1])
        if future is None or future.done() or not msg.data:
            return
        snapshot = json.loads(msg.data)
        if snapshot.get("status") in ("COMPLETED", "FAILED", "CANCELLED"):
            future.set_result(snapshot)

    async def submit(self, flow: str, tag: str, params: dict[str, Any] | None = None) -> Any:
        """Publish a job; returns (run id, wall clock just before the publish)."""
        job = build_job(str(uuid.uuid4()), flow, tag, [tag], params or {})
        self.ended[job["run_id"]] = asyncio.get_running_loop().create_future()
        snapshot = pending_snapshot(job)
        revision = await self.store.create(snapshot, job)
        published = time.time()
        await self.js.publish(
            self.settings.work_subject(tag),
            encode_job(with_pending(job, snapshot, revision)),
            headers={"Nats-Msg-Id": message_id(job)},
        )
        return job["run_id"], published

    async def __aexit__(self, *exc: object) -> None:
        await self.subscription.unsubscribe()
        self.workers.stop()


async def pickup(host: Host, jobs: int) -> dict[str, Any]:
    latencies = []
    for _ in range(jobs):
        run_id, published = await host.submit("noop", random.choice(host.tags))
        snapshot = await asyncio.wait_for(host.ended[run_id], 30)
        latencies.append(1000 * (snapshot["start_time"] - published))
        await asyncio.sleep(0.02)  # idle again: its result written and ACKed
    return {
        "tags": len(host.tags),
        "jobs": jobs,
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(max(latencies), 2),
    }


async def fairness(host: Host, backlog: int, trickle: int) -> dict[str, Any]:
    busy = [await host.submit("sleep", "busy", {"seconds": 0.2}) for _ in range(backlog)]
    await asyncio.sleep(0.5)
    quiet = []
    for _ in range(trickle):
        quiet.append(await host.submit("noop", "quiet"))
        await asyncio.sleep(0.3)
    quiet_runs = [await asyncio.wait_for(host.ended[run_id], 120) for run_id, _ in quiet]
    busy_runs = [await asyncio.wait_for(host.ended[run_id], 300) for run_id, _ in busy]
    overtaken, waits = [], []
    for (_, published), run in zip(quiet, quiet_runs, strict=True):
        overtaken.append(
            sum(1 for other in busy_runs if published < other["start_time"] < run["start_time"])
        )
        waits.append(1000 * (run["start_time"] - published))
    return {
        "concurrency": host.concurrency or "default",
        "busy_backlog": backlog,
        "quiet_runs": trickle,
        "busy_claimed_before_a_quiet_run_max": max(overtaken),
        "quiet_wait_p50_ms": round(statistics.median(waits), 1),
        "quiet_wait_max_ms": round(max(waits), 1),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pyoco-bench-") as tmp:
        server = EmbeddedNats(Path(tmp) / "nats")
        server.start()
        nc = await connect(server.url, "bench")
        results: dict[str, Any] = {"load_average_before": os.getloadavg()}
        try:
            for count in (1, 3, 10):
                tags = [f"tag{index}" for index in range(count)]
                async with Host(nc, server.url, Path(tmp), tags, args.concurrency) as host:
                    results[f"pickup_{count}_tags"] = await pickup(host, args.jobs)
            for concurrency in sorted({args.concurrency, 1, 2}):
                async with Host(nc, server.url, Path(tmp), ["busy", "quiet"], concurrency) as host:
                    results[f"fairness_c{concurrency or 'default'}"] = await fairness(
                        host, backlog=40, trickle=8
                    )
        finally:
            await nc.close()
            server.stop()
        results["load_average_after"] = os.getloadavg()
        return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="jobs per pickup scenario [200]")
    parser.add_argument("--concurrency", type=int, default=0, help="[the worker's default]")
    results = asyncio.run(main(parser.parse_args()))
    for name, figures in results.items():
        print(f"{name}: {figures}")
    print(json.dumps(results))
