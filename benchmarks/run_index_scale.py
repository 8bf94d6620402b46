"""Benchmark: a gateway over 100,000 and 1,000,000 stored runs — start to ``/ready`` (from
nothing, and with the index kept from its last run), RSS, ``GET /runs?limit=50`` per filter
(status, flow, tag; tenant through an API key with authentication on), exact counts and
cursor paging, and submits per second alone and while the retention sweeper works through a
backlog, side by side.

Fills the runs bucket directly (pipelined JetStream publishes, ~1 KB snapshots over 10 days
of ``updated_at``; 5 % FAILED, 3 % PENDING, 2 % RUNNING, the rest COMPLETED; 20 flows, 5 tags,
10 tenants) on an embedded nats-server, then runs the real gateway (``pyoco-server up``) as a
subprocess. Needs about 2.5 GB of disk per million runs (NATS store + index) under ``--dir``.

    .venv/bin/python benchmarks/run_index_scale.py [--sizes 100000,1000000] [--dir /tmp]
    # fill once, keep the store and the index, measure again later without the fill:
    .venv/bin/python benchmarks/run_index_scale.py --sizes 1000000 --dir /tmp/pyoco-1m \
        --reuse --no-sweep [--skip-build]

Targets at 1,000,000 runs: ready ≤ 5 s with the kept index, RSS ≤ 160 MiB, every list median
≤ 10 ms, cursor walk = count; submits while sweeping within 20 % of submits alone. Not run by
CI (it takes several minutes per million runs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from pyoco_server.api_keys import ApiKeyStore, open_auth_kv
from pyoco_server.config import Settings
from pyoco_server.embedded import EmbeddedNats, free_port
from pyoco_server.gateway.run_index import RunIndex
from pyoco_server.nats_client import connect, ensure_resources
from pyoco_server.stream_reader import StreamRecord

DAY = 86400.0
#: Seconds the sweeper is watched working alone (it is not waited for to finish).
SWEEP_WATCH_SEC = 30.0
#: Seconds of sequential submits per submit figure.
SUBMIT_SEC = 10.0
#: Off/on pairs of submit phases in the sweeping side-by-side (medians reported).
SWEEP_PHASES = 3
FLOWS = [f"flow_{n}" for n in range(20)]
TAGS = ["default", "gpu", "cpu", "io", "batch"]
TENANTS = [f"tenant_{n}" for n in range(10)]


def snapshot(index: int, now: float, rng: random.Random) -> dict:
    roll = rng.random()
    status = (
        "FAILED"
        if roll < 0.05
        else "PENDING"
        if roll < 0.08
        else "RUNNING"
        if roll < 0.10
        else "COMPLETED"
    )
    updated = now - rng.random() * 10 * DAY
    tag = TAGS[index % len(TAGS)]
    return {
        "run_id": str(uuid.UUID(int=rng.getrandbits(128))),
        "flow_name": FLOWS[index % len(FLOWS)],
        "status": status,
        "params": {"n": index, "x": "y" * 40},
        "tag": tag,
        "tags": [tag],
        "tenant_id": TENANTS[index % len(TENANTS)],
        "api_key_id": "k1",
        "worker_id": f"worker-{index % 8}",
        "submitted_at": updated - 5,
        "start_time": updated - 4,
        "end_time": updated if status in ("COMPLETED", "FAILED") else None,
        "heartbeat_at": updated,
        "updated_at": updated,
        "tasks": {f"task_{t}": "SUCCEEDED" for t in range(5)},
        "task_records": {
            f"task_{t}": {"state": "SUCCEEDED", "duration_ms": 1.5, "output": t} for t in range(5)
        },
        "error": "RuntimeError: boom" if status == "FAILED" else None,
        "attempt": 1,
    }


async def fill(url: str, settings: Settings, start: int, count: int) -> float:
    """Publish ``count`` snapshots; returns runs per second."""
    nc = await connect(url, "benchmark")
    js = nc.jetstream()
    await ensure_resources(js, settings)
    prefix = f"$KV.{settings.runs_kv_bucket}."
    rng, now = random.Random(start), time.time()
    began = time.perf_counter()
    pending = []
    for index in range(start, start + count):
        data = snapshot(index, now, rng)
        pending.append(await js.publish_async(prefix + data["run_id"], json.dumps(data).encode()))
        if len(pending) >= 2000:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    await nc.close()
    return count / (time.perf_counter() - began)


def start_gateway(url: str, port: int, env: dict[str, str]) -> subprocess.Popen:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PYOCO_")}
    command = [sys.executable, "-m", "pyoco_server.cli.server", "up", "--nats-url", url]
    command += ["--port", str(port)]
    return subprocess.Popen(
        command,
        env={**base, "PYOCO_LOG_LEVEL": "WARNING", **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_ready(base: str, timeout: float = 1800.0) -> float:
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/ready", timeout=5).status_code == 200:
                return round(time.perf_counter() - started, 2)
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit("gateway did not become ready")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return -1.0


def median_ms(client: httpx.Client, params: dict, requests: int, full: bool = True) -> float:
    """Median time of ``GET /runs?limit=50`` with ``params``; ``full``: every page must hold
    50 runs (the filter matches enough of them)."""
    for _ in range(10):
        client.get("/runs", params={**params, "limit": 50}).raise_for_status()
    timings = []
    for _ in range(requests):
        began = time.perf_counter()
        answer = client.get("/runs", params={**params, "limit": 50})
        timings.append((time.perf_counter() - began) * 1000)
        answer.raise_for_status()
        assert len(answer.json()) == 50 or not full, params
    return round(statistics.median(timings), 2)


def tenant_checks(client: httpx.Client, requests: int) -> dict:
    """With authentication on, as ``tenant_3``'s API key: the tenant's lists (alone and with
    a status), and its FAILED runs walked by ``Next-Cursor`` against ``/runs/counts``."""
    medians = {
        "tenant=tenant_3": median_ms(client, {}, requests),
        "tenant=tenant_3&status=FAILED": median_ms(
            client, {"status": "FAILED"}, requests, full=False
        ),
    }
    walked, pages, cursor = 0, 0, None
    while True:
        params = {"status": "FAILED", "limit": 200, **({"cursor": cursor} if cursor else {})}
        answer = client.get("/runs", params=params)
        answer.raise_for_status()
        walked += len(answer.json())
        pages += 1
        cursor = answer.headers.get("Next-Cursor")
        if cursor is None:
            break
    counted = client.get("/runs/counts").json()["by_status"]["FAILED"]
    return {
        "list_median_ms_auth_on": medians,
        "cursor_walk_tenant3_failed": walked,
        "counts_tenant3_failed": counted,
        "cursor_pages": pages,
    }


async def create_tenant_key(url: str, settings: Settings, tenant: str) -> str:
    """A new API key of ``tenant`` (no pepper, as the gateway the benchmark starts)."""
    nc = await connect(url, "benchmark")
    try:
        kv = await open_auth_kv(nc.jetstream(), settings)

        async def get_kv() -> object:
            return kv

        plain, _ = await ApiKeyStore(get_kv, b"").create(tenant, "run_index_scale")
        return plain
    finally:
        await nc.close()


def submit_rate(client: httpx.Client, seconds: float) -> tuple[int, float]:
    """Sequential submits for ``seconds``: (runs submitted, runs per second)."""
    deadline, done = time.monotonic() + seconds, 0
    began = time.perf_counter()
    while time.monotonic() < deadline:
        client.post("/runs", json={"flow_name": "bench", "params": {}}).raise_for_status()
        done += 1
    return done, round(done / (time.perf_counter() - began), 1)


def total(client: httpx.Client) -> int:
    """Runs stored, per ``/runs/counts`` (a 503 is retried and reported)."""
    for _ in range(100):
        answer = client.get("/runs/counts")
        if answer.status_code == 200:
            return answer.json()["total"]
        print(f"  /runs/counts answered {answer.status_code}: {answer.text[:200]}", flush=True)
        time.sleep(0.2)
    raise SystemExit("/runs/counts kept failing")


def nats_port(remembered: Path, reuse: bool) -> int:
    """The NATS port: with ``reuse``, the one of the previous invocation when it is free
    (the index file's name is keyed by the server address, so a kept index needs it)."""
    if reuse and remembered.exists():
        port = int(remembered.read_text())
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return port
        print(f"port {port} is taken: the kept index will be rebuilt", flush=True)
    port = free_port()
    if reuse:
        remembered.write_text(f"{port}\n")
    return port


def stop(gateway: subprocess.Popen) -> None:
    gateway.send_signal(signal.SIGTERM)
    gateway.wait(60)


def run_size(size: int, directory: Path, requests: int, options: argparse.Namespace) -> dict:
    """The HTTP figures at ``size`` runs: fill (or, with ``--reuse``, a store filled by an
    earlier invocation), build from nothing (unless ``--skip-build``), restart with the kept
    index (auth off: lists per filter, counts, RSS; auth on: the tenant's lists and cursor
    walk), then submits alone and while the sweeper works (unless ``--no-sweep``, which keeps
    the store as filled for the next ``--reuse``)."""
    settings = Settings()
    store = directory / f"nats-{size}"
    filled = directory / f"nats-{size}.filled"
    index_dir = directory / f"index-{size}"
    server = EmbeddedNats(store, port=nats_port(directory / f"nats-{size}.port", options.reuse))
    server.start()
    result: dict = {"stored_runs": size}
    gateway = None
    try:
        if options.reuse and filled.exists():
            result["fill"] = f"reused {store}"
        else:
            filled.unlink(missing_ok=True)
            result["fill_runs_per_sec"] = round(asyncio.run(fill(server.url, settings, 0, size)))
            filled.write_text(f"{size}\n")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {"PYOCO_INDEX_DIR": str(index_dir), "PYOCO_RUN_RETENTION_SEC": "0"}
        if not options.skip_build or not any(index_dir.glob("runs-index-*.sqlite3")):
            for stale in index_dir.glob("runs-index-*"):
                stale.unlink()
            gateway = start_gateway(server.url, port, env)
            result["ready_from_nothing_sec"] = wait_ready(base)
            print(json.dumps(result), flush=True)
            stop(gateway)
        gateway = start_gateway(server.url, port, env)
        result["ready_with_kept_index_sec"] = wait_ready(base)
        with httpx.Client(base_url=base, timeout=30) as client:
            lists = {
                "unfiltered": {},
                "status=FAILED": {"status": "FAILED"},
                "flow=flow_3": {"flow": "flow_3"},
                "tag=gpu": {"tag": "gpu"},
                "status=RUNNING&flow=flow_4": {"status": "RUNNING", "flow": "flow_4"},
            }
            result["list_median_ms"] = {
                name: median_ms(client, params, requests, full=len(params) < 2)
                for name, params in lists.items()
            }
            result["counts_total"] = client.get("/runs/counts").json()["total"]
            result["rss_mib"] = rss_mib(gateway.pid)
        stop(gateway)
        # authentication on: the tenant filter is the caller's API key
        key = asyncio.run(create_tenant_key(server.url, settings, "tenant_3"))
        gateway = start_gateway(server.url, port, {**env, "PYOCO_HTTP_AUTH_MODE": "api_key"})
        result["ready_with_kept_index_auth_on_sec"] = wait_ready(base)
        headers = {settings.http_api_key_header: key}
        with httpx.Client(base_url=base, timeout=30, headers=headers) as client:
            result.update(tenant_checks(client, requests))
            result["rss_mib_auth_on"] = rss_mib(gateway.pid)
        print(json.dumps(result), flush=True)
        stop(gateway)
        gateway = None
        if not options.no_sweep:
            result.update(sweep_side_by_side(server.url, port, env))
    finally:
        if gateway is not None and gateway.poll() is None:
            stop(gateway)
        server.stop()
    disk = sum(p.stat().st_size for p in index_dir.glob("*"))
    result["index_file_mib"] = round(disk / 2**20, 1)
    return result


def sweep_side_by_side(url: str, port: int, env: dict[str, str]) -> dict:
    """Submits per second with retention off and with a retention of 7 days over 10 days of
    runs (about 27 % of the terminal runs expire, a backlog the sweeper works through),
    alternated :data:`SWEEP_PHASES` times — off, on, off, on, ... each on a freshly started
    gateway, so that a slow stretch of the machine hits both sides — then the sweeper's pace
    alone. Reports every phase and the medians. Purges runs: the store is no longer as
    filled afterwards."""
    base = f"http://127.0.0.1:{port}"
    off: list[float] = []
    on: list[float] = []
    swept_during: list[int] = []
    result: dict = {}
    retention_env = {**env, "PYOCO_RUN_RETENTION_SEC": str(7 * DAY)}
    for phase in range(SWEEP_PHASES):
        for sweeping in (False, True):
            gateway = start_gateway(url, port, retention_env if sweeping else env)
            try:
                wait_ready(base)
                with httpx.Client(base_url=base, timeout=30) as client:
                    before = total(client)
                    began = time.perf_counter()
                    submitted, rate = submit_rate(client, SUBMIT_SEC)
                    elapsed = time.perf_counter() - began
                    (on if sweeping else off).append(rate)
                    if sweeping:
                        swept = before + submitted - total(client)
                        swept_during.append(round(swept / elapsed))
                    if sweeping and phase == SWEEP_PHASES - 1:
                        # then let the sweeper work alone for a while and measure its pace
                        before, began = total(client), time.perf_counter()
                        time.sleep(SWEEP_WATCH_SEC)
                        last = total(client)
                        result["swept_runs_per_sec_alone"] = round(
                            (before - last) / (time.perf_counter() - began)
                        )
                        result["runs_after_sweep"] = last
                        result["rss_mib_after_sweep"] = rss_mib(gateway.pid)
            finally:
                stop(gateway)
    result.update(
        submits_per_sec_retention_off=statistics.median(off),
        submits_per_sec_while_sweeping=statistics.median(on),
        swept_runs_per_sec_during_submits=statistics.median(swept_during),
        submits_per_sec_phases={"retention_off": off, "while_sweeping": on},
        swept_runs_per_sec_phases=swept_during,
    )
    return result


def index_only(size: int, directory: Path, requests: int) -> dict:
    """Without NATS or HTTP: build the index file of ``size`` runs the way a gateway does (bulk
    apply), then time what a restart with that file costs (open + counts), the page queries
    per filter, and the process's RSS with the index open."""
    path = directory / f"index-only-{size}.sqlite3"
    index = RunIndex("pyoco_runs", path)
    rng, now = random.Random(7), time.time()
    began = time.perf_counter()
    index.begin_bulk()
    batch = []
    for n in range(size):
        data = snapshot(n, now, rng)
        batch.append(
            StreamRecord(n + 1, f"$KV.pyoco_runs.{data['run_id']}", json.dumps(data).encode())
        )
        if len(batch) == 8192:
            index.apply(batch)
            batch = []
    index.apply(batch)
    index.end_bulk()
    result: dict = {
        "stored_runs": size,
        "build_runs_per_sec": round(size / (time.perf_counter() - began)),
    }
    index.close()
    began = time.perf_counter()
    index = RunIndex("pyoco_runs", path)
    result["open_with_counts_sec"] = round(time.perf_counter() - began, 3)
    filters = {
        "unfiltered": (None, {}),
        "status=FAILED": (None, {"status": "FAILED"}),
        "flow=flow_3": (None, {"flow": "flow_3"}),
        "tag=gpu": (None, {"tag": "gpu"}),
        "tenant=tenant_3": ("tenant_3", {}),
        "tenant+status": ("tenant_3", {"status": "FAILED"}),
    }
    medians = {}
    for name, (tenant, extra) in filters.items():
        timings = []
        for _ in range(requests):
            t = time.perf_counter()
            page = index.select_page(tenant, limit=50, **extra)
            timings.append((time.perf_counter() - t) * 1000)
            assert len(page.runs) == 50, name
        medians[name] = round(statistics.median(timings), 3)
    result["page_median_ms"] = medians
    walked, cursor = 0, None
    while True:
        page = index.select_page(None, status="FAILED", limit=1000, cursor=cursor)
        walked += len(page.runs)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    result["cursor_walk_failed"] = walked
    result["counts_failed"] = index.status_counts()["FAILED"]
    result["rss_mib_with_index_open"] = rss_mib(os.getpid())
    result["index_file_mib"] = round(
        sum(p.stat().st_size for p in directory.glob("index-only-*")) / 2**20, 1
    )
    index.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--dir",
        default=None,
        help="where NATS and the index store: a temporary directory under it, or, with "
        "--reuse, this directory itself (default: the system's temporary directory)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the filled NATS store and the index in --dir and use them again next time "
        "(the fill happens once per size)",
    )
    parser.add_argument(
        "--skip-build",
        action="store_true",
        help="do not time a build from nothing when --dir already holds the index",
    )
    parser.add_argument(
        "--no-sweep",
        action="store_true",
        help="skip the submit/sweep figures (they purge runs and add some: use with --reuse "
        "to keep the store as filled)",
    )
    parser.add_argument(
        "--index-only",
        action="store_true",
        help="only the index file, in process (no NATS, no HTTP): quicker at 1,000,000 runs",
    )
    args = parser.parse_args()
    if args.reuse and not args.dir:
        parser.error("--reuse needs --dir")
    print(f"load average at start: {os.getloadavg()}", flush=True)
    with contextlib.ExitStack() as stack:
        if args.reuse:
            directory = Path(args.dir)
            directory.mkdir(parents=True, exist_ok=True)
        else:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=args.dir)))
        for size in (int(s) for s in args.sizes.split(",")):
            if args.index_only:
                result = index_only(size, directory, args.requests)
            else:
                result = run_size(size, directory, args.requests, args)
            result["load_average"] = [round(x, 2) for x in os.getloadavg()]
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
