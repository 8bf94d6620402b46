"""Worker throughput and latency, end to end through a real nats-server (no gateway needed).

Jobs are submitted exactly as the gateway does (PENDING snapshot, then the job message); a run
counts as done when a KV watch sees its terminal snapshot. Scenarios:

* drain: 300 runs of a 1-task no-op flow, 1 and 2 worker hosts (default concurrency 4 each);
* scaling: a flow whose task sleeps 200 ms, one host at --concurrency 1 vs 4;
* latency: one run at a time on an idle host, p50/p90 from submit to terminal snapshot;
* memory: RSS of an idle worker host and of each of its execution processes.

Usage: ``.venv/bin/python benchmarks/worker_drain.py [--runs 300] [--concurrency 4]``.
Prints a table, then one JSON document (the last line) with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pyoco_server.config import Settings  # noqa: E402
from pyoco_server.embedded import EmbeddedNats  # noqa: E402
from pyoco_server.jobs import (  # noqa: E402
    build_job,
    encode_job,
    message_id,
    pending_snapshot,
    with_pending,
)
from pyoco_server.log import configure_logging  # noqa: E402
from pyoco_server.model import is_terminal  # noqa: E402
from pyoco_server.nats_client import connect, ensure_resources  # noqa: E402
from pyoco_server.plugins import build_plugin_manager  # noqa: E402
from pyoco_server.run_store import RunStore  # noqa: E402
from pyoco_server.testing import WorkerProcess, unique_names  # noqa: E402

RESOLVER = f"{ROOT}/benchmarks/flows.py:resolve"


def fresh_settings(url: str) -> Settings:
    return Settings(nats_url=url, **unique_names())


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Workers:
    """Worker host processes for one scenario."""

    def __init__(
        self,
        settings: Settings,
        hosts: int,
        concurrency: int,
        log_dir: Path,
        log_level: str = "WARNING",
        extra: list[str] | None = None,
    ) -> None:
        """``concurrency`` 0 leaves ``--concurrency`` out (the worker's default)."""
        args = (
            *(("--concurrency", str(concurrency)) if concurrency else ()),
            "--flow-resolver",
            RESOLVER,
            *(extra or []),
        )
        self.processes = [
            WorkerProcess(
                log_dir,
                *args,
                settings=settings,
                env={"PYOCO_LOG_LEVEL": log_level},
                worker_id=f"bench-{uuid.uuid4().hex[:6]}",
            )
            for _ in range(hosts)
        ]
        self.ids = [process.worker_id for process in self.processes]

    async def wait_ready(self, js: Any, settings: Settings) -> list[dict[str, Any]]:
        kv = await js.key_value(settings.workers_kv_bucket)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            records = []
            for worker_id in self.ids:
                with contextlib.suppress(Exception):
                    records.append(json.loads((await kv.get(worker_id)).value))
            if len(records) == len(self.ids) and all(r["state"] == "IDLE" for r in records):
                return records
            await asyncio.sleep(0.05)
        raise RuntimeError("workers did not become ready")

    def stop(self) -> None:
        for process in self.processes:
            process.signal()
        for process in self.processes:
            process.stop(30)


class Finishes:
    """A KV watch that resolves a future per run when its terminal snapshot appears."""

    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[float]] = {}
        self.watcher: Any = None
        self.task: asyncio.Task[None] | None = None

    async def start(self, kv: Any) -> None:
        self.watcher = await kv.watchall()
        self.task = asyncio.get_running_loop().create_task(self._loop())

    def expect(self, run_id: str) -> asyncio.Future[float]:
        future = asyncio.get_running_loop().create_future()
        self.waiting[run_id] = future
        return future

    async def _loop(self) -> None:
        async for entry in self.watcher:
            if entry is None or not entry.value:
                continue
            future = self.waiting.get(entry.key)
            if future is None or future.done():
                continue
            snapshot = json.loads(entry.value)
            if is_terminal(snapshot.get("status")):
                if snapshot["status"] != "COMPLETED":
                    future.set_exception(RuntimeError(f"run ended {snapshot['status']}"))
                else:
                    future.set_result(time.perf_counter())

    async def stop(self) -> None:
        await self.watcher.stop()
        if self.task is not None:
            await asyncio.wait([self.task], timeout=5)


async def submit(js: Any, store: RunStore, settings: Settings, job: dict[str, Any]) -> None:
    """As the gateway does: PENDING snapshot, then the job telling its revision."""
    snapshot = pending_snapshot(job)
    revision = await store.create(snapshot, job)
    await js.publish(
        settings.work_subject(job["tag"]),
        encode_job(with_pending(job, snapshot, revision)),
        headers={"Nats-Msg-Id": message_id(job)},
    )


async def scenario(
    nc: Any,
    url: str,
    log_dir: Path,
    *,
    hosts: int,
    concurrency: int,
    flow: str,
    runs: int,
    params: dict[str, Any] | None = None,
    sequential: bool = False,
) -> dict[str, Any]:
    settings = fresh_settings(url)
    js = nc.jetstream()
    await ensure_resources(js, settings)
    kv = await js.key_value(settings.runs_kv_bucket)
    store = RunStore(kv, build_plugin_manager(plugins=[]), settings)
    workers = Workers(settings, hosts, concurrency, log_dir)
    finishes = Finishes()
    try:
        records = await workers.wait_ready(js, settings)
        memory = {
            "host_rss_kib": [rss_kib(r["pid"]) for r in records],
            "execution_rss_kib": [rss_kib(pid) for r in records for pid in r["execution_pids"]],
        }
        await finishes.start(kv)
        jobs = [
            build_job(str(uuid.uuid4()), flow, "default", ["default"], params or {})
            for _ in range(runs)
        ]
        if sequential:
            latencies = []
            for job in jobs:
                done = finishes.expect(job["run_id"])
                started = time.perf_counter()
                await submit(js, store, settings, job)
                latencies.append((await asyncio.wait_for(done, 30)) - started)
            latencies_ms = sorted(1000 * value for value in latencies)
            return {
                "runs": runs,
                "p50_ms": round(statistics.median(latencies_ms), 2),
                "p90_ms": round(latencies_ms[int(0.9 * (len(latencies_ms) - 1))], 2),
                "max_ms": round(latencies_ms[-1], 2),
                **memory,
            }
        futures = [finishes.expect(job["run_id"]) for job in jobs]
        started = time.perf_counter()
        for batch in range(0, runs, 50):
            await asyncio.gather(
                *(submit(js, store, settings, j) for j in jobs[batch : batch + 50])
            )
        submitted = time.perf_counter()
        ends = await asyncio.wait_for(asyncio.gather(*futures), 300)
        elapsed = max(ends) - started
        return {
            "hosts": hosts,
            "concurrency": concurrency,
            "flow": flow,
            "runs": runs,
            "seconds": round(elapsed, 3),
            "runs_per_sec": round(runs / elapsed, 1),
            "submit_seconds": round(submitted - started, 3),
            **memory,
        }
    finally:
        with contextlib.suppress(Exception):
            await finishes.stop()
        workers.stop()


def table(results: dict[str, Any]) -> str:
    rows = [("scenario", "runs", "runs/s", "seconds")]
    for name, value in results.items():
        if isinstance(value, dict) and "runs_per_sec" in value:
            rows.append(
                (name, str(value["runs"]), str(value["runs_per_sec"]), str(value["seconds"]))
            )
    lines = []
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
    latency = results["latency_noop_c1"]
    lines.append(
        f"latency (1 run at a time, c=1): p50 {latency['p50_ms']} ms, p90 {latency['p90_ms']} ms, "
        f"max {latency['max_ms']} ms"
    )
    lines.append(
        f"idle worker host RSS {latency['host_rss_kib'][0] / 1024:.1f} MiB; execution process "
        f"RSS {latency['execution_rss_kib'][0] / 1024:.1f} MiB each"
    )
    lines.append(f"sleep-flow speed-up c=4 vs c=1: {results['speedup_sleep_c4_vs_c1']}x")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    configure_logging(Settings(log_level="WARNING"), "benchmark")
    with tempfile.TemporaryDirectory(prefix="pyoco-bench-") as tmp:
        server = EmbeddedNats(Path(tmp) / "nats")
        server.start()
        nc = await connect(server.url, "bench")
        log_dir = Path(tmp)
        try:
            run = lambda **kw: scenario(nc, server.url, log_dir, **kw)  # noqa: E731
            results = {
                "latency_noop_c1": await run(
                    hosts=1, concurrency=1, flow="noop", runs=args.latency_runs, sequential=True
                ),
                "drain_noop_1host_c1": await run(
                    hosts=1, concurrency=1, flow="noop", runs=args.runs
                ),
                f"drain_noop_1host_c{args.concurrency}": await run(
                    hosts=1, concurrency=args.concurrency, flow="noop", runs=args.runs
                ),
                f"drain_noop_2hosts_c{args.concurrency}": await run(
                    hosts=2, concurrency=args.concurrency, flow="noop", runs=args.runs
                ),
                "sleep200ms_1host_c1": await run(
                    hosts=1, concurrency=1, flow="sleep", runs=args.sleep_runs
                ),
                "sleep200ms_1host_c4": await run(
                    hosts=1, concurrency=4, flow="sleep", runs=args.sleep_runs
                ),
            }
            results["speedup_sleep_c4_vs_c1"] = round(
                results["sleep200ms_1host_c4"]["runs_per_sec"]
                / results["sleep200ms_1host_c1"]["runs_per_sec"],
                2,
            )
            results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
            return results
        finally:
            await nc.close()
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="runs per drain scenario [300]")
    parser.add_argument("--concurrency", type=int, default=4, help="drain concurrency [4]")
    parser.add_argument("--sleep-runs", type=int, default=24, help="runs of the sleep flow [24]")
    parser.add_argument("--latency-runs", type=int, default=100, help="sequential runs [100]")
    results = asyncio.run(main(parser.parse_args()))
    print(table(results))
    print(json.dumps(results))
