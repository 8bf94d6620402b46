"""Idle memory of one worker host and its process tree, per process, at several concurrencies.

For each ``--concurrency`` in ``--slots`` (default 1, 2, 4): a fresh nats-server, one
``pyoco-worker --flow-resolver benchmarks/flows.py:resolve --tags default,main`` (two tags, the
default concurrency otherwise), ``--runs`` runs of the 1-task no-op flow spread over both
tags, then one second idle; then, from ``/proc/PID/smaps_rollup`` of the host and every
process below it: RSS, PSS and USS (``Private_Clean + Private_Dirty``), per process and summed,
and which heavy native modules each process has mapped (``_ssl``/``_asyncio``: asyncio and
ssl; ``_rust``: cryptography; ``_yaml``: PyYAML's C loader).

RSS counts a page shared by several processes once in every one of them; PSS divides it among
them; USS is what the process alone holds (what killing it would free). Execution processes
are forked from one fork server (``pyoco_server.worker.child``), so most of their pages are
shared with it and with each other: counted in full by RSS, fairly by PSS. Targets (issue 14
point 5): one slot <= 48 MiB in total, each further slot <= 12 MiB more.

Also: how long an execution process killed with ``SIGKILL`` takes to be replaced (kill to a
new process ready and idle in the pool), ``--kills`` times at concurrency 1.

Usage: ``.venv/bin/python benchmarks/worker_memory.py [--runs 200] [--slots 1,2,4] [--kills 20]``.
Prints a table per concurrency, a summary, then one JSON document (the last line).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worker_defaults import RESOLVER, ROOT, process_tree, stop_worker, submit_ours

from pyoco_server.config import Settings
from pyoco_server.embedded import EmbeddedNats
from pyoco_server.jobs import build_job
from pyoco_server.nats_client import connect, ensure_resources
from pyoco_server.worker.child import settings_to_wire
from pyoco_server.worker.pool import ExecutionPool

TAGS = ("default", "main")
#: Native modules whose presence in a process's memory map says what it imported.
MARKERS = {"_ssl": "ssl", "_asyncio": "asyncio", "_rust": "cryptography", "_yaml": "yaml"}


def memory_of(pid: int, host_pid: int) -> dict[str, Any]:
    """RSS, PSS and USS in KiB, the process's role (host, fork server, execution) and the
    marker modules it has mapped."""
    figures = {"rss": 0, "pss": 0, "uss": 0}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key == "Rss":
                figures["rss"] = int(rest.split()[0])
            elif key == "Pss":
                figures["pss"] = int(rest.split()[0])
            elif key in ("Private_Clean", "Private_Dirty"):
                figures["uss"] += int(rest.split()[0])
    mapped: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
            name = line.rsplit("/", 1)[-1]
            mapped.update(label for marker, label in MARKERS.items() if name.startswith(marker))
    cmdline = b""
    with contextlib.suppress(OSError):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    parent = -1
    with contextlib.suppress(OSError):
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    role = "host"
    if b"pyoco_server.worker.child" in cmdline:
        role = "forkserver" if parent == host_pid else "execution"
    return {"pid": pid, "role": role, **figures, "imports": sorted(mapped)}


async def measure(slots: int, runs: int, tmp: Path, timeout: float = 120.0) -> dict[str, Any]:
    """One host at ``--concurrency slots``: run ``runs`` jobs, idle, measure its tree."""
    server = EmbeddedNats(tmp / f"nats-{uuid.uuid4().hex[:6]}")
    server.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYOCO_") and k != "PYTHONPATH"}
    env.update({"PYOCO_NATS_URL": server.url, "PYOCO_LOG_LEVEL": "WARNING"})
    nc = await connect(server.url, "bench-memory")
    worker = None
    log = open(tmp / f"worker-c{slots}.log", "ab")  # noqa: SIM115
    try:
        js = nc.jetstream()
        await ensure_resources(js, Settings(nats_url=server.url))
        kv = await js.key_value("pyoco_runs")
        jobs = [
            build_job(str(uuid.uuid4()), "noop", TAGS[i % 2], [TAGS[i % 2]], {})
            for i in range(runs)
        ]
        pending = {job["run_id"] for job in jobs}
        drained = asyncio.get_running_loop().create_future()

        async def seen(msg: Any) -> None:
            key = msg.subject.rsplit(".", 1)[-1]
            if key not in pending or not msg.data:
                return
            if json.loads(msg.data).get("status") in ("COMPLETED", "FAILED", "CANCELLED"):
                pending.discard(key)
                if not pending and not drained.done():
                    drained.set_result(None)

        watcher = await nc.subscribe("$KV.pyoco_runs.>", cb=seen)
        for job in jobs:
            await submit_ours(js, kv, job)
        command = [sys.executable, "-m", "pyoco_server.cli.worker", "--flow-resolver", RESOLVER]
        command += ["--concurrency", str(slots), "--tags", ",".join(TAGS)]
        worker = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        await asyncio.wait_for(drained, timeout)
        await watcher.unsubscribe()
        await asyncio.sleep(1.0)  # idle again
        processes = [memory_of(pid, worker.pid) for pid in process_tree(worker.pid)]
        total = {key: sum(p[key] for p in processes) for key in ("rss", "pss", "uss")}
        return {"slots": slots, "processes": processes, "total_kib": total}
    finally:
        await nc.close()
        stop_worker(worker)
        log.close()
        server.stop()


async def replacement_ms(kills: int, tmp: Path) -> list[float]:
    """Kill the only execution process of a pool ``kills`` times; ms until it is replaced."""
    config = {
        "settings": settings_to_wire(Settings()),
        "plugins": {"allow": None},
        "flow_resolver": RESOLVER,
        "work_dir": str(tmp / "replace"),
        "worker_id": "bench-memory",
    }
    pool = ExecutionPool(1, config)
    await pool.start()
    times = []
    try:
        for _ in range(kills):
            (old,) = pool.pids
            started = time.perf_counter()
            os.kill(old, signal.SIGKILL)
            while pool.pids in ([], [old]) or pool._idle.empty():
                await asyncio.sleep(0.001)
            times.append(round((time.perf_counter() - started) * 1000, 1))
    finally:
        await pool.stop()
    return sorted(times)


def mib(kib: float) -> str:
    return f"{kib / 1024:8.1f}"


def report(results: list[dict[str, Any]]) -> None:
    for result in results:
        print(f"--concurrency {result['slots']}")
        print(f"  {'pid':>8} {'role':10} {'RSS MiB':>8} {'PSS MiB':>8} {'USS MiB':>8}  imports")
        for p in result["processes"]:
            print(
                f"  {p['pid']:>8} {p['role']:10} {mib(p['rss'])} {mib(p['pss'])} {mib(p['uss'])}"
                f"  {','.join(p['imports']) or '-'}"
            )
        total = result["total_kib"]
        print(f"  {'total':>8} {'':10} {mib(total['rss'])} {mib(total['pss'])} {mib(total['uss'])}")
    first = results[0]
    print(f"summary (target: {first['slots']} slot <= 48 MiB, each further slot <= 12 MiB)")
    for result in results:
        line = f"  c{result['slots']}: total RSS {mib(result['total_kib']['rss'])}"
        line += f"  PSS {mib(result['total_kib']['pss'])}  USS {mib(result['total_kib']['uss'])}"
        extra = result["slots"] - first["slots"]
        if extra > 0:
            per = {
                key: (result["total_kib"][key] - first["total_kib"][key]) / extra
                for key in ("rss", "pss", "uss")
            }
            line += f"  | per further slot RSS {mib(per['rss'])} PSS {mib(per['pss'])}"
            line += f" USS {mib(per['uss'])}"
        print(line)
    print(f"load average {os.getloadavg()}")


async def main(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[float]]:
    slots = [int(item) for item in args.slots.split(",")]
    with tempfile.TemporaryDirectory(prefix="pyoco-bench-memory-") as tmp:
        results = [await measure(count, args.runs, Path(tmp)) for count in slots]
        return results, await replacement_ms(args.kills, Path(tmp))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="runs before measuring [200]")
    parser.add_argument("--slots", default="1,2,4", help="concurrencies to measure [1,2,4]")
    parser.add_argument("--kills", type=int, default=20, help="replacements to time [20]")
    results, replacements = asyncio.run(main(parser.parse_args()))
    report(results)
    middle = replacements[len(replacements) // 2] if replacements else None
    print(f"replacement of a killed execution process: median {middle} ms, all {replacements}")
    document = {"results": results, "replacement_ms": replacements}
    print(json.dumps({**document, "load_average": os.getloadavg()}))
