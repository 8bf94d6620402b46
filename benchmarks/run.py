"""pyoco-server end to end, measured against the raw NATS floor (issue 9).

Starts its own nats-server, ``pyoco-server up --nats-url`` gateways and ``pyoco-worker`` hosts on
loopback (each scenario on fresh streams and buckets) and measures:

* floor: nats-py alone, awaited KV put + JetStream publish pairs per second, sequential and
  pipelined (batches of 64 pairs in flight): what one submit minimally costs;
* submit: ``POST /runs`` at 16 keep-alive connections from a lean client (:mod:`lean_http`) on a
  tag no worker consumes: runs/s, p50/p99, CPU seconds of gateway and client;
* auth: the same with API keys on (``X-API-Key``), interleaved with the unauthenticated rounds;
* drain: runs of a 1-task no-op flow with 1, then 2 worker hosts, submit of the first to
  COMPLETED of the last; a 200 ms-sleep flow at ``--concurrency`` 1 vs 4;
* latency: sequential runs on an idle host, submit → COMPLETED seen by the client polling
  ``GET /runs/{id}`` (and by a KV watch, for reference);
* list: median ``GET /runs?limit=50`` at 100, 1,000 and 10,000 stored runs;
* memory: RSS of the gateways and of a worker host, idle and after its runs.

    .venv/bin/python benchmarks/run.py [--submits 2000] [--rounds 2] [--quick]

Prints a readable table, then one JSON document (the last line) with every figure, the
targets and whether each was met, and the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from importlib import util as importlib_util
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import httpx  # noqa: E402
from lean_http import LeanConnection  # noqa: E402
from list_runs import measure as measure_list  # noqa: E402
from list_runs import store_runs  # noqa: E402
from worker_drain import Workers, rss_kib  # noqa: E402

from pyoco_server.api_keys import ApiKeyStore  # noqa: E402
from pyoco_server.config import Settings  # noqa: E402
from pyoco_server.embedded import EmbeddedNats, find_nats_server  # noqa: E402
from pyoco_server.jobs import (  # noqa: E402
    build_job,
    encode_job,
    message_id,
    pending_snapshot,
)
from pyoco_server.log import configure_logging  # noqa: E402
from pyoco_server.model import is_terminal  # noqa: E402
from pyoco_server.nats_client import connect, ensure_resources  # noqa: E402
from pyoco_server.testing import GatewayProcess, unique_names  # noqa: E402
from pyoco_server.testing.terminal_runs import TerminalRuns  # noqa: E402

PEPPER = "benchmark-pepper-0123456789abcdef"
#: Every process logs at the product's default level (one JSON line per run event).
LOG_LEVEL = "INFO"
CONNECTIONS = 16
#: Targets of issue 9 on a 2-core machine.
TARGETS = {
    "submit_runs_per_sec": 4000,
    "submit_vs_pipelined_floor": 0.5,
    "drain_1host_runs_per_sec": 400,
    "drain_2hosts_runs_per_sec": 550,
    "sleep_c4_vs_c1": 3.5,
    "latency_p50_ms": 8.0,
    "list_10k_vs_100": 1.3,
    "list_10k_ms": 20.0,
    "gateway_rss_mib": 64.0,
    "worker_host_idle_rss_mib": 40.0,
    "auth_vs_unauth": 0.8,
}
LOWER_IS_BETTER = {
    "latency_p50_ms",
    "list_10k_vs_100",
    "list_10k_ms",
    "gateway_rss_mib",
    "worker_host_idle_rss_mib",
}


def fresh_settings(url: str, **overrides: Any) -> Settings:
    """Settings on ``url`` with streams and buckets of their own (product defaults otherwise)."""
    return Settings(nats_url=url, **unique_names(), **overrides)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Gateway(GatewayProcess):
    """A ``pyoco-server up --nats-url`` process for one set of settings, with its CPU time and
    RSS."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        super().__init__(log_dir, settings=settings)
        self.settings = settings

    @property
    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    @property
    def rss_mib(self) -> float:
        return rss_kib(self.pid) / 1024


async def connections(gateway: Gateway, headers: dict[str, str] | None = None) -> list:
    return [
        await LeanConnection("127.0.0.1", gateway.port, headers).open() for _ in range(CONNECTIONS)
    ]


async def submit_all(conns: list, bodies: list[bytes]) -> tuple[list[str], list[float]]:
    """POST every body, ``len(conns)`` at a time; run ids in order and latencies (s)."""
    run_ids: list[str] = [""] * len(bodies)
    latencies: list[float] = []
    position = 0

    async def drive(conn: LeanConnection) -> None:
        nonlocal position
        while position < len(bodies):
            index = position
            position += 1
            started = time.perf_counter()
            status, body = await conn.request("POST", "/runs", bodies[index])
            latencies.append(time.perf_counter() - started)
            if status != 200:
                raise SystemExit(f"POST /runs answered {status}: {body[:300]!r}")
            run_ids[index] = json.loads(body)["run_id"]

    await asyncio.gather(*(drive(conn) for conn in conns))
    return run_ids, latencies


def run_body(flow: str, tag: str = "default", **params: Any) -> bytes:
    return json.dumps({"flow_name": flow, "params": params, "tag": tag}).encode()


# -- scenarios -----------------------------------------------------------------------------


async def floor(nc: Any, url: str, pairs: int) -> dict[str, Any]:
    """Awaited KV put + JetStream publish pairs per second, nats-py alone."""
    settings = fresh_settings(url)
    js = nc.jetstream()
    await ensure_resources(js, settings)
    kv = await js.key_value(settings.runs_kv_bucket)
    subject = settings.work_subject("nobody")
    job = build_job(str(uuid.uuid4()), "noop", "nobody", ["nobody"], {"i": 1})
    snapshot = json.dumps(pending_snapshot(job)).encode()
    payload = encode_job(job)

    async def pair() -> None:
        run_id = str(uuid.uuid4())
        await kv.put(run_id, snapshot)
        await js.publish(subject, payload, headers={"Nats-Msg-Id": message_id({"run_id": run_id})})

    for _ in range(200):  # warm-up
        await pair()
    started = time.perf_counter()
    for _ in range(pairs):
        await pair()
    sequential = pairs / (time.perf_counter() - started)
    batches = pairs // 64
    client_cpu = time.process_time()
    started = time.perf_counter()
    for _ in range(batches):
        await asyncio.gather(*(pair() for _ in range(64)))
    pipelined = batches * 64 / (time.perf_counter() - started)
    return {
        "pairs": pairs,
        "sequential_per_sec": round(sequential),
        "pipelined_per_sec": round(pipelined),
        "pipelined_client_cpu_us_per_pair": round(
            1e6 * (time.process_time() - client_cpu) / (batches * 64)
        ),
    }


async def submit_round(gateway: Gateway, total: int, headers: dict[str, str] | None = None):
    conns = await connections(gateway, headers)
    try:
        await submit_all(conns, [run_body("noop", "nobody")] * 200)  # warm-up
        bodies = [run_body("noop", "nobody", i=i) for i in range(total)]
        gateway_cpu, client_cpu = gateway.cpu, time.process_time()
        started = time.perf_counter()
        _, latencies = await submit_all(conns, bodies)
        elapsed = time.perf_counter() - started
        return {
            "runs": total,
            "connections": CONNECTIONS,
            "runs_per_sec": round(total / elapsed),
            "p50_ms": round(1000 * percentile(latencies, 0.5), 2),
            "p99_ms": round(1000 * percentile(latencies, 0.99), 2),
            "gateway_cpu_sec": round(gateway.cpu - gateway_cpu, 2),
            "gateway_cpu_us_per_run": round(1e6 * (gateway.cpu - gateway_cpu) / total),
            "client_cpu_sec": round(time.process_time() - client_cpu, 2),
            "seconds": round(elapsed, 3),
        }
    finally:
        for conn in conns:
            conn.close()


async def api_key_for(nc: Any, settings: Settings) -> str:
    store = ApiKeyStore(lambda: nc.jetstream().key_value(settings.auth_kv_bucket), PEPPER.encode())
    api_key, _ = await store.create("bench")
    return api_key


async def drain(
    nc: Any,
    gateway: Gateway,
    log_dir: Path,
    *,
    hosts: int,
    concurrency: int,
    flow: str,
    runs: int,
    **params: Any,
) -> dict[str, Any]:
    """Submit ``runs`` over HTTP to idle hosts; seconds from the first submit to the last
    COMPLETED."""
    settings = gateway.settings
    js = nc.jetstream()
    workers = Workers(settings, hosts, concurrency, log_dir, log_level=LOG_LEVEL)
    completions = TerminalRuns()
    conns = await connections(gateway)
    try:
        records = await workers.wait_ready(js, settings)
        idle_rss = [rss_kib(record["pid"]) / 1024 for record in records]
        await completions.start(await js.key_value(settings.runs_kv_bucket))
        # Warm up every execution process (first imports, first flow) outside the timing.
        warm, _ = await submit_all(conns, [run_body(flow, **params)] * (2 * hosts * concurrency))
        await completions.wait(warm, timeout=60)
        started = time.perf_counter()
        run_ids, _ = await submit_all(conns, [run_body(flow, **params)] * runs)
        submitted = time.perf_counter() - started
        last = await completions.wait(run_ids, timeout=120 + runs)
        elapsed = last - started
        return {
            "hosts": hosts,
            "concurrency": concurrency,
            "flow": flow,
            "runs": runs,
            "runs_per_sec": round(runs / elapsed, 1),
            "seconds": round(elapsed, 3),
            "submit_seconds": round(submitted, 3),
            "host_idle_rss_mib": [round(value, 1) for value in idle_rss],
            "host_rss_after_mib": [round(rss_kib(r["pid"]) / 1024, 1) for r in records],
        }
    finally:
        for conn in conns:
            conn.close()
        await completions.stop()
        workers.stop()


async def latency(nc: Any, gateway: Gateway, log_dir: Path, runs: int) -> dict[str, Any]:
    """Sequential runs on an idle host: submit → COMPLETED, as the client sees it."""
    settings = gateway.settings
    js = nc.jetstream()
    workers = Workers(settings, 1, 1, log_dir, log_level=LOG_LEVEL)
    completions = TerminalRuns()
    conn = await LeanConnection("127.0.0.1", gateway.port).open()
    try:
        await workers.wait_ready(js, settings)
        await completions.start(await js.key_value(settings.runs_kv_bucket))
        seen_by_client, seen_by_watch = [], []
        for index in range(runs + 3):  # the first three warm the execution path up
            started = time.perf_counter()
            status, body = await conn.post_json("/runs", {"flow_name": "noop"})
            run_id = body["run_id"]
            while True:
                status, snapshot = await conn.get_json(f"/runs/{run_id}")
                if status == 200 and is_terminal(snapshot["status"]):
                    break
                await asyncio.sleep(0.0005)
            done = time.perf_counter()
            if snapshot["status"] != "COMPLETED":
                raise SystemExit(f"latency run ended {snapshot['status']}")
            if index >= 3:
                seen_by_client.append(1000 * (done - started))
                seen_by_watch.append(1000 * (await completions.wait([run_id], 10) - started))
            await asyncio.sleep(0.02)  # idle between runs
        return {
            "runs": runs,
            "p50_ms": round(statistics.median(seen_by_client), 2),
            "p95_ms": round(percentile(seen_by_client, 0.95), 2),
            "kv_watch_p50_ms": round(statistics.median(seen_by_watch), 2),
        }
    finally:
        conn.close()
        await completions.stop()
        workers.stop()


async def listing(url: str, log_dir: Path, requests: int) -> dict[str, Any]:
    settings = fresh_settings(url)
    nc = await connect(url, "benchmark-list")
    await ensure_resources(nc.jetstream(), settings)
    await nc.close()
    gateway = Gateway(settings, log_dir)
    try:
        await gateway.wait_ready_async()
        stored, results = 0, {}
        with httpx.Client(base_url=gateway.url, timeout=10) as client:
            for size in (100, 1000, 10000):
                await store_runs(url, settings, size - stored, stored)
                stored = size
                await asyncio.sleep(1.0)  # measure the steady state, not the ingest burst
                results[size] = await asyncio.to_thread(measure_list, client, requests)
        return {
            "requests_per_size": requests,
            "median_ms": {str(size): r["median_ms"] for size, r in results.items()},
            "p90_ms": {str(size): r["p90_ms"] for size, r in results.items()},
            "ratio_10k_vs_100": round(results[10000]["median_ms"] / results[100]["median_ms"], 2),
            "gateway_rss_mib_at_10k": round(gateway.rss_mib, 1),
        }
    finally:
        gateway.stop()


# -- the whole run -------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    version = subprocess.run(
        [find_nats_server(), "--version"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "nats_server": version,
        "uvloop": importlib_util.find_spec("uvloop") is not None,
        "httptools": importlib_util.find_spec("httptools") is not None,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    configure_logging(Settings(log_level="WARNING"), "benchmark")
    results: dict[str, Any] = {"machine": machine(), "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="pyoco-bench-") as tmp:
        log_dir = Path(tmp)
        server = EmbeddedNats(log_dir / "nats")
        server.start()
        nc = await connect(server.url, "benchmark")
        gateways: list[Gateway] = []
        try:
            results["floor"] = await floor(nc, server.url, args.floor_pairs)
            # Listing first, while the server holds nothing else and no other process is busy.
            results["list"] = await listing(server.url, log_dir, args.list_requests)

            plain = Gateway(fresh_settings(server.url), log_dir)
            keyed_settings = fresh_settings(
                server.url, http_auth_mode="api_key", auth_pepper=PEPPER
            )
            await ensure_resources(nc.jetstream(), keyed_settings)
            keyed = Gateway(keyed_settings, log_dir)
            gateways += [plain, keyed]
            await plain.wait_ready_async()
            await keyed.wait_ready_async()
            header = {keyed_settings.http_api_key_header: await api_key_for(nc, keyed_settings)}
            rounds: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
            for _ in range(args.rounds):
                rounds["off"].append(await submit_round(plain, args.submits))
                rounds["on"].append(await submit_round(keyed, args.submits, header))

            def best(samples: list[dict[str, Any]]) -> dict[str, Any]:
                return max(samples, key=lambda sample: sample["runs_per_sec"])

            results["submit"] = {**best(rounds["off"]), "rounds": rounds["off"]}
            results["submit_auth"] = {**best(rounds["on"]), "rounds": rounds["on"]}
            results["gateway_rss_mib_after_submits"] = round(plain.rss_mib, 1)
            plain.stop()  # an idle gateway still works in the background (index, reconciler)
            keyed.stop()

            runner = Gateway(fresh_settings(server.url), log_dir)
            gateways.append(runner)
            await runner.wait_ready_async()
            run = lambda **kw: drain(nc, runner, log_dir, **kw)  # noqa: E731
            results["latency"] = await latency(nc, runner, log_dir, args.latency_runs)
            results["drain_1host"] = await run(
                hosts=1, concurrency=args.concurrency, flow="noop", runs=args.drain_runs
            )
            results["drain_2hosts"] = await run(
                hosts=2, concurrency=args.concurrency, flow="noop", runs=args.drain_runs
            )
            results["drain_1host_c1"] = await run(
                hosts=1, concurrency=1, flow="noop", runs=args.drain_runs
            )
            results["sleep_c1"] = await run(
                hosts=1, concurrency=1, flow="sleep", runs=args.sleep_runs, seconds=0.2
            )
            results["sleep_c4"] = await run(
                hosts=1, concurrency=4, flow="sleep", runs=args.sleep_runs, seconds=0.2
            )
            results["gateway_rss_mib_after_runs"] = round(runner.rss_mib, 1)
            runner.stop()
        finally:
            for gateway in gateways:
                gateway.stop()
            await nc.close()
            server.stop()
    results["load_after"] = os.getloadavg()
    results["targets"] = evaluate(results)
    return results


def evaluate(results: dict[str, Any]) -> dict[str, Any]:
    submit = results["submit"]["runs_per_sec"]
    figures = {
        "submit_runs_per_sec": submit,
        "submit_vs_pipelined_floor": round(submit / results["floor"]["pipelined_per_sec"], 2),
        "drain_1host_runs_per_sec": results["drain_1host"]["runs_per_sec"],
        "drain_2hosts_runs_per_sec": results["drain_2hosts"]["runs_per_sec"],
        "sleep_c4_vs_c1": round(
            results["sleep_c4"]["runs_per_sec"] / results["sleep_c1"]["runs_per_sec"], 2
        ),
        "latency_p50_ms": results["latency"]["p50_ms"],
        "list_10k_vs_100": results["list"]["ratio_10k_vs_100"],
        "list_10k_ms": results["list"]["median_ms"]["10000"],
        "gateway_rss_mib": max(
            results["gateway_rss_mib_after_submits"], results["gateway_rss_mib_after_runs"]
        ),
        "worker_host_idle_rss_mib": max(results["drain_1host"]["host_idle_rss_mib"]),
        "auth_vs_unauth": round(results["submit_auth"]["runs_per_sec"] / submit, 2),
    }
    return {
        name: {
            "value": value,
            "target": TARGETS[name],
            "met": value <= TARGETS[name] if name in LOWER_IS_BETTER else value >= TARGETS[name],
        }
        for name, value in figures.items()
    }


def table(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"pyoco-server benchmarks, {m['date']}: {m['cpus']} CPUs ({m['cpu_model']}), "
        f"Python {m['python']}, {m['nats_server']}, uvloop={m['uvloop']}, "
        f"httptools={m['httptools']}",
        "load average before {:.2f} {:.2f} {:.2f}, after {:.2f} {:.2f} {:.2f}".format(
            *results["load_before"], *results["load_after"]
        ),
        "",
        f"{'figure':<44}{'measured':>14}{'target':>10}  met",
    ]
    for name, target in results["targets"].items():
        lines.append(
            f"{name:<44}{target['value']:>14}{target['target']:>10}  "
            + ("yes" if target["met"] else "NO")
        )
    floor_, submit, auth = results["floor"], results["submit"], results["submit_auth"]
    lines += [
        "",
        f"floor: {floor_['sequential_per_sec']} pairs/s sequential, "
        f"{floor_['pipelined_per_sec']} pairs/s pipelined (64 in flight; client CPU "
        f"{floor_['pipelined_client_cpu_us_per_pair']} us per pair)",
        f"submit: {submit['runs_per_sec']} runs/s, p50 {submit['p50_ms']} ms, p99 "
        f"{submit['p99_ms']} ms; gateway CPU {submit['gateway_cpu_sec']} s "
        f"({submit['gateway_cpu_us_per_run']} us per run), client CPU "
        f"{submit['client_cpu_sec']} s for {submit['runs']} runs",
        f"submit with API keys: {auth['runs_per_sec']} runs/s, p50 {auth['p50_ms']} ms, "
        f"gateway CPU {auth['gateway_cpu_sec']} s ({auth['gateway_cpu_us_per_run']} us per run)",
        "submit rounds (runs/s), auth off: "
        + ", ".join(str(r["runs_per_sec"]) for r in submit["rounds"])
        + "; on: "
        + ", ".join(str(r["runs_per_sec"]) for r in auth["rounds"]),
    ]
    for name in ("drain_1host", "drain_2hosts", "drain_1host_c1", "sleep_c1", "sleep_c4"):
        d = results[name]
        lines.append(
            f"{name}: {d['runs']} runs of {d['flow']} on {d['hosts']} host(s) at concurrency "
            f"{d['concurrency']}: {d['runs_per_sec']} runs/s ({d['seconds']} s)"
        )
    lat, listing_ = results["latency"], results["list"]
    lines += [
        f"latency: p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms (client polling); KV watch "
        f"p50 {lat['kv_watch_p50_ms']} ms",
        "list GET /runs?limit=50 median ms: "
        + ", ".join(f"{k} runs {v}" for k, v in listing_["median_ms"].items()),
        f"RSS: gateway {results['gateway_rss_mib_after_submits']} MiB after submits, "
        f"{results['gateway_rss_mib_after_runs']} MiB after runs, "
        f"{listing_['gateway_rss_mib_at_10k']} MiB with 10,000 runs indexed; worker host idle "
        f"{results['drain_1host']['host_idle_rss_mib']} MiB, after its runs "
        f"{results['drain_1host']['host_rss_after_mib']} MiB",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submits", type=int, default=2000, help="POST /runs per round [2000]")
    parser.add_argument("--rounds", type=int, default=3, help="submit rounds, auth off/on [3]")
    parser.add_argument("--floor-pairs", type=int, default=4096, help="floor pairs [4096]")
    parser.add_argument("--drain-runs", type=int, default=300, help="runs per drain [300]")
    parser.add_argument("--concurrency", type=int, default=4, help="drain concurrency [4]")
    parser.add_argument("--sleep-runs", type=int, default=24, help="200 ms-sleep runs [24]")
    parser.add_argument("--latency-runs", type=int, default=30, help="sequential runs [30]")
    parser.add_argument("--list-requests", type=int, default=300, help="per size [300]")
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke test")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.submits, arguments.rounds, arguments.floor_pairs = 300, 1, 640
        arguments.drain_runs, arguments.sleep_runs, arguments.latency_runs = 50, 8, 5
        arguments.list_requests = 30
    if importlib_util.find_spec("uvloop") is not None:
        import uvloop  # the gateway runs on it too (uvicorn picks it up)

        report = uvloop.run(main(arguments))
    else:
        report = asyncio.run(main(arguments))
    print(table(report))
    print(json.dumps(report))
