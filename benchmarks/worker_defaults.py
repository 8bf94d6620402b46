"""Worker hosts side by side in one run: this code at its defaults vs pyoco-server 0.5.1.

Each contender gets its own nats-server (temporary storage) and one worker host with
``--flow-resolver benchmarks/flows.py:resolve``; runs of the 1-task no-op flow are submitted in
the contender's own job format (PENDING snapshot, then the job message: this code's
``pyoco_server.jobs`` for ours, 0.5.1's client format for 0.5.1) before the worker starts;
the drain is timed from the first claim to the last terminal snapshot (the workers' own
``start_time``/``end_time``), so neither start-up nor the way a worker idles counts. Rounds
are interleaved (A B C A B C ...) so a loaded machine hurts every contender alike; each
figure is the best round. Memory: RSS and PSS of the host, idle after its runs, and of every
process it started (``/proc/PID/smaps_rollup``), summed. A contender that does not finish
within the timeout is reported as stalled.

Contenders: ``ours`` at its defaults (no flags) and at ``--concurrency`` 1 and 4; ``before``:
the same for another checkout (``--before DIR``, e.g. the main branch), run with this venv's
Python; ``0.5.1``: ``--baseline-python``'s ``pyoco-worker`` (install it with
``python -m venv /tmp/venv051 && /tmp/venv051/bin/pip install pyoco-server==0.5.1``).

Usage: ``.venv/bin/python benchmarks/worker_defaults.py [--runs 300] [--rounds 3]
[--baseline-python /tmp/venv051/bin/python] [--before /work/main]``.
Prints a table, then one JSON document (the last line).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
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
from pyoco_server.nats_client import connect, ensure_resources  # noqa: E402

RESOLVER = f"{ROOT}/benchmarks/flows.py:resolve"


@dataclass
class Contender:
    """One worker command line and the job format it understands."""

    name: str
    command: list[str]
    legacy_jobs: bool = False  # 0.5.1's job format and resource names
    cwd: Path = ROOT
    env: dict[str, str] = field(default_factory=dict)


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in KiB."""
    rss = pss = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


async def submit_ours(js: Any, kv: Any, job: dict[str, Any]) -> None:
    """As the gateway does: PENDING snapshot, then the job telling its revision."""
    snapshot = pending_snapshot(job)
    snapshot["updated_at"] = time.time()
    revision = await kv.create(job["run_id"], json.dumps(snapshot).encode())
    await js.publish(
        f"pyoco.work.{job['tag']}",
        encode_job(with_pending(job, snapshot, revision)),
        headers={"Nats-Msg-Id": message_id(job)},
    )


async def submit_legacy(js: Any, kv: Any, job: dict[str, Any]) -> None:
    """0.5.1's client: KV put of the PENDING snapshot, then a plain JetStream publish."""
    now = time.time()
    snapshot = {
        "run_id": job["run_id"],
        "flow_name": job["flow_name"],
        "tag": "default",
        "tags": ["default"],
        "status": "PENDING",
        "params": {},
        "tasks": {},
        "task_records": {},
        "start_time": None,
        "end_time": None,
        "heartbeat_at": now,
        "updated_at": now,
        "error": None,
    }
    await kv.put(job["run_id"], json.dumps(snapshot).encode())
    payload = {k: job[k] for k in ("run_id", "flow_name", "tag", "tags", "params")}
    await js.publish("pyoco.work.default", json.dumps({**payload, "submitted_at": now}).encode())


async def one_round(
    contender: Contender, runs: int, tmp: Path, timeout: float = 120.0
) -> dict[str, Any]:
    """Publish ``runs`` jobs, start the worker, time the drain (see the module docstring)."""
    server = EmbeddedNats(tmp / f"nats-{uuid.uuid4().hex[:6]}")
    server.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYOCO_") and k != "PYTHONPATH"}
    env.update({"PYOCO_NATS_URL": server.url, "PYOCO_LOG_LEVEL": "WARNING", **contender.env})
    nc = await connect(server.url, "bench")
    worker = None
    log = open(tmp / f"{contender.name.replace(' ', '-')}.log", "ab")  # noqa: SIM115
    try:
        js = nc.jetstream()
        await ensure_resources(js, Settings(nats_url=server.url))
        kv = await js.key_value("pyoco_runs")
        done = {}
        everything = asyncio.get_running_loop().create_future()

        async def seen(msg: Any) -> None:
            """Every KV write is a message on $KV.<bucket>.<key>: no watch consumer needed."""
            key = msg.subject.rsplit(".", 1)[-1]
            if key not in done or done[key] or not msg.data:
                return
            if json.loads(msg.data).get("status") in ("COMPLETED", "FAILED", "CANCELLED"):
                done[key] = True
                if all(done.values()) and not everything.done():
                    everything.set_result(None)

        watcher = await nc.subscribe("$KV.pyoco_runs.>", cb=seen)
        submit = submit_legacy if contender.legacy_jobs else submit_ours
        jobs = [
            build_job(str(uuid.uuid4()), "noop", "default", ["default"], {}) for _ in range(runs)
        ]
        done.update((job["run_id"], False) for job in jobs)
        for batch in range(0, runs, 50):
            await asyncio.gather(*(submit(js, kv, job) for job in jobs[batch : batch + 50]))
        worker = subprocess.Popen(
            contender.command, env=env, cwd=contender.cwd, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            await asyncio.wait_for(everything, timeout)
        except asyncio.TimeoutError:
            return {"stalled_after_sec": timeout, "completed": sum(done.values()), "runs": runs}
        await watcher.unsubscribe()
        snapshots = [json.loads((await kv.get(job["run_id"])).value) for job in jobs]
        statuses = {snapshot["status"] for snapshot in snapshots}
        assert statuses == {"COMPLETED"}, f"{contender.name}: {statuses}"
        first = min(snapshot["start_time"] for snapshot in snapshots)
        last = max(snapshot["end_time"] for snapshot in snapshots)
        await asyncio.sleep(1.0)  # idle again
        memory = [memory_kib(pid) for pid in process_tree(worker.pid)]
        return {
            "runs_per_sec": round(runs / (last - first), 1),
            "processes": len(memory),
            "idle_rss_mib": round(sum(m[0] for m in memory) / 1024, 1),
            "idle_pss_mib": round(sum(m[1] for m in memory) / 1024, 1),
        }
    finally:
        await nc.close()
        stop_worker(worker)
        log.close()
        server.stop()


def stop_worker(worker: subprocess.Popen[bytes] | None) -> None:
    """Stop a worker host: SIGTERM (its graceful shutdown), SIGKILL after 30 s."""
    if worker is None:
        return
    worker.terminate()
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        worker.kill()


def contenders(args: argparse.Namespace) -> list[Contender]:
    ours = [sys.executable, "-m", "pyoco_server.cli.worker", "--flow-resolver", RESOLVER]
    result = [
        Contender("ours default", ours),
        Contender("ours c1", [*ours, "--concurrency", "1"]),
        Contender("ours c4", [*ours, "--concurrency", "4"]),
    ]
    if args.before:
        before = Path(args.before).resolve()
        env = {"PYTHONPATH": str(before)}
        result += [
            Contender("before default", ours, cwd=before, env=env),
            Contender("before c4", [*ours, "--concurrency", "4"], cwd=before, env=env),
        ]
    if args.baseline_python and Path(args.baseline_python).exists():
        # Its console script, run outside this checkout so that its own package is imported.
        legacy = [str(Path(args.baseline_python).parent / "pyoco-worker")]
        result.append(
            Contender(
                "0.5.1",
                [*legacy, "--flow-resolver", RESOLVER],
                legacy_jobs=True,
                cwd=Path(tempfile.gettempdir()),
                # 0.5.1 wedges on 3.11's wait_for; see the sitecustomize's docstring.
                env={"PYTHONPATH": str(ROOT / "benchmarks" / "baseline_py312_wait_for")},
            )
        )
    return result


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="pyoco-bench-") as tmp:
        logs = Path(args.log_dir or tmp)
        logs.mkdir(parents=True, exist_ok=True)
        for _ in range(args.rounds):
            for contender in contenders(args):
                if args.only and args.only not in contender.name:
                    continue
                figures = await one_round(contender, args.runs, logs)
                results.setdefault(contender.name, []).append(figures)
                print(contender.name, figures, file=sys.stderr)
    best = {
        name: max(rounds, key=lambda figures: figures.get("runs_per_sec", 0))
        for name, rounds in results.items()
    }
    return {
        "best": best,
        "rounds": results,
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="runs per drain [300]")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds [3]")
    parser.add_argument("--baseline-python", default="/tmp/venv051/bin/python")
    parser.add_argument("--log-dir", help="keep the worker logs here")
    parser.add_argument("--only", help="run only the contenders whose name contains this")
    parser.add_argument("--before", help="another checkout to compare with (e.g. /work/main)")
    results = asyncio.run(main(parser.parse_args()))
    base = results["best"].get("0.5.1")
    print(f"{'worker':16} {'runs/s':>8} {'x 0.5.1':>8} {'procs':>6} {'RSS MiB':>8} {'PSS MiB':>8}")
    for name, figures in results["best"].items():
        if "runs_per_sec" not in figures:
            print(f"{name:16} stalled: {figures}")
            continue
        ratio = "-"
        if base and "runs_per_sec" in base:
            ratio = f"{figures['runs_per_sec'] / base['runs_per_sec']:.2f}"
        print(
            f"{name:16} {figures['runs_per_sec']:>8} {ratio:>8} {figures['processes']:>6} "
            f"{figures['idle_rss_mib']:>8} {figures['idle_pss_mib']:>8}"
        )
    print(f"load average {results['load_average']}")
    print(json.dumps(results))
