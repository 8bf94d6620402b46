"""Schedules at full size (issue 17): exactly-once with two gateways, lateness and CPU.

Starts its own nats-server and ``pyoco-server up`` gateways (no workers: runs stay PENDING, the
jobs stay in the work stream, so both can be counted exactly) and runs:

* ``exactly-once``: two gateways, ``--schedules`` (200) schedules every second for
  ``--seconds`` (60) — 12,000 slots — with one gateway SIGKILLed half-way (``--no-kill`` to
  keep both). Checks that every slot of every schedule has exactly one run and the work stream
  exactly one job per run;
* ``lateness``: one gateway, 200 then 1,000 active 1-second schedules for ``--measure`` seconds
  each: firing lateness p50/p99 (run creation time minus the slot's nominal time, read from the
  stored snapshots) and the gateway's CPU seconds per firing (``/proc/<pid>/stat``, user +
  system). Target: p99 <= 250 ms at 200 schedules/s on 2 cores.

    .venv/bin/python benchmarks/schedules.py [--scenario all|exactly-once|lateness]
        [--schedules 200] [--seconds 60] [--measure 20] [--sizes 200,1000]

Prints a table, then one JSON document (the last line) with every figure and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

import httpx  # noqa: E402
import nats  # noqa: E402

from pyoco_server.embedded import EmbeddedNats  # noqa: E402
from pyoco_server.gateway.schedules.repair import nominal_of  # noqa: E402
from pyoco_server.testing import PyocoSystem, isolation_env, start_system  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LATENESS_TARGET_P99_SEC = 0.25


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def create_schedules(system: PyocoSystem, count: int, start: float, end: float | None) -> list[str]:
    ids = []
    with httpx.Client(base_url=system.url, timeout=30) as http:
        for n in range(count):
            body: dict[str, Any] = {
                "flow_name": "bench",
                "params": {"n": n},
                "interval_seconds": 1,
                "start_at": start,
            }
            if end is not None:
                body["end_at"] = end
            answer = http.post("/schedules", json=body)
            answer.raise_for_status()
            ids.append(answer.json()["schedule_id"])
    return ids


async def stored_runs(url: str, env: dict[str, str]) -> list[dict[str, Any]]:
    """Every run snapshot of the runs bucket (one KV watch pass)."""
    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream(timeout=30).key_value(env["PYOCO_RUNS_KV_BUCKET"])
        watcher = await kv.watch(">", ignore_deletes=True)
        runs = []
        while (entry := await watcher.updates(timeout=30)) is not None:
            runs.append(json.loads(entry.value))
        await watcher.stop()
        return runs
    finally:
        await nc.close()


async def work_messages(url: str, env: dict[str, str]) -> int:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(env["PYOCO_WORK_STREAM"])
        return info.state.messages
    finally:
        await nc.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def exactly_once(nats_url: str, logs: Path, schedules: int, seconds: int, kill: bool) -> dict:
    env = {**isolation_env(), "PYOCO_RECONCILE_INTERVAL_SEC": "2", "PYOCO_LOG_LEVEL": "WARNING"}
    first = start_system(nats_url, logs / "gw1", worker=False, env=env)
    second = start_system(nats_url, logs / "gw2", worker=False, env=env)
    try:
        start = round(time.time()) + 10.0 + schedules / 20
        end = start + seconds - 1
        ids = create_schedules(first, schedules // 2, start, end)
        ids += create_schedules(second, schedules - schedules // 2, start, end)
        cpu_before = {"gw1": cpu_seconds(first.pids["gateway"])}
        if kill:
            time.sleep(max(0.0, start + seconds / 2 - time.time()))
            os.kill(second.pids["gateway"], signal.SIGKILL)
        time.sleep(max(0.0, end + 15.0 - time.time()))  # the repair window included
        expected = {round(start + k, 3) for k in range(seconds)}
        runs = asyncio.run(stored_runs(nats_url, env))
        by_schedule: dict[str, list[float]] = {sid: [] for sid in ids}
        for run in runs:
            decoded = nominal_of(run["run_id"])
            if decoded is not None and decoded[0] in by_schedule:
                by_schedule[decoded[0]].append(round(decoded[1], 3))
        missing = sum(len(expected - set(slots)) for slots in by_schedule.values())
        duplicated = sum(len(slots) - len(set(slots)) for slots in by_schedule.values())
        jobs = asyncio.run(work_messages(nats_url, env))
        return {
            "schedules": schedules,
            "seconds": seconds,
            "expected_runs": schedules * seconds,
            "runs": len(runs),
            "missing_slots": missing,
            "duplicated_slots": duplicated,
            "jobs": jobs,
            "gateway_killed": kill,
            "gw1_cpu_sec": round(cpu_seconds(first.pids["gateway"]) - cpu_before["gw1"], 2),
            "ok": missing == 0 and duplicated == 0 and jobs == len(runs) == schedules * seconds,
        }
    finally:
        first.stop()
        second.stop()


def lateness(nats_url: str, nats_pid: int, logs: Path, size: int, measure: int) -> dict:
    env = {**isolation_env(), "PYOCO_LOG_LEVEL": "WARNING"}
    gateway = start_system(nats_url, logs / f"late{size}", worker=False, env=env)
    try:
        warmup = 5.0
        start = round(time.time()) + 5.0 + size / 20
        create_schedules(gateway, size, start, start + warmup + measure)
        time.sleep(max(0.0, start + warmup - time.time()))
        pid = gateway.pids["gateway"]
        cpu_start, nats_start = cpu_seconds(pid), cpu_seconds(nats_pid)
        time.sleep(measure)
        cpu_used = cpu_seconds(pid) - cpu_start
        nats_used = cpu_seconds(nats_pid) - nats_start
        time.sleep(2.0)
        runs = asyncio.run(stored_runs(nats_url, env))
        window = (start + warmup, start + warmup + measure)
        delays = []
        for run in runs:
            decoded = nominal_of(run["run_id"])
            if decoded and window[0] <= decoded[1] < window[1]:
                delays.append(float(run["submitted_at"]) - decoded[1])
        return {
            "active_schedules": size,
            "firings_measured": len(delays),
            "lateness_p50_ms": round(1000 * statistics.median(delays), 1),
            "lateness_p99_ms": round(1000 * percentile(delays, 0.99), 1),
            "lateness_max_ms": round(1000 * max(delays), 1),
            "gateway_cpu_ms_per_firing": round(1000 * cpu_used / max(1, len(delays)), 3),
            "gateway_cpu_share": round(cpu_used / measure, 3),
            "nats_server_cpu_ms_per_firing": round(1000 * nats_used / max(1, len(delays)), 3),
            "nats_server_cpu_share": round(nats_used / measure, 3),
        }
    finally:
        gateway.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=("all", "exactly-once", "lateness"), default="all")
    parser.add_argument("--schedules", type=int, default=200, help="exactly-once: schedules [200]")
    parser.add_argument("--seconds", type=int, default=60, help="exactly-once: slots each [60]")
    parser.add_argument("--no-kill", action="store_true", help="exactly-once: kill no gateway")
    parser.add_argument("--measure", type=int, default=20, help="lateness: seconds measured [20]")
    parser.add_argument("--sizes", default="200,1000", help="lateness: active schedules [200,1000]")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"load_average_before": os.getloadavg(), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="pyoco-sched-bench-") as tmp:
        server = EmbeddedNats(Path(tmp) / "nats")
        server.start()
        try:
            if args.scenario in ("all", "lateness"):
                result["lateness"] = [
                    lateness(server.url, server.pid, Path(tmp), int(size), args.measure)
                    for size in args.sizes.split(",")
                ]
                for row in result["lateness"]:
                    print(
                        f"{row['active_schedules']:>5} schedules/s: lateness p50 "
                        f"{row['lateness_p50_ms']} ms, p99 {row['lateness_p99_ms']} ms, max "
                        f"{row['lateness_max_ms']} ms; gateway CPU "
                        f"{row['gateway_cpu_ms_per_firing']} ms/firing "
                        f"({row['gateway_cpu_share']:.0%} of a core); nats-server "
                        f"{row['nats_server_cpu_ms_per_firing']} ms/firing "
                        f"({row['nats_server_cpu_share']:.0%} of a core)"
                    )
                first = result["lateness"][0]
                result["target_p99_met"] = (
                    first["active_schedules"] != 200
                    or first["lateness_p99_ms"] <= 1000 * LATENESS_TARGET_P99_SEC
                )
            if args.scenario in ("all", "exactly-once"):
                once = exactly_once(
                    server.url, Path(tmp), args.schedules, args.seconds, not args.no_kill
                )
                result["exactly_once"] = once
                print(
                    f"exactly-once: {once['runs']}/{once['expected_runs']} runs, "
                    f"{once['missing_slots']} missing, {once['duplicated_slots']} duplicated, "
                    f"{once['jobs']} jobs, gateway killed: {once['gateway_killed']} -> "
                    f"{'OK' if once['ok'] else 'FAILED'}"
                )
        finally:
            server.stop()
    result["load_average_after"] = os.getloadavg()
    print(json.dumps(result))
    ok = result.get("exactly_once", {}).get("ok", True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
