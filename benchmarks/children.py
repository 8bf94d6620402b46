"""Child runs: fan-out 1 → N children and fan-in latency, against plain submits side by side.

One gateway and one worker host (``--concurrency``, default 2) on a private nats-server.

* **fan-out**: a parent spawns ``--children`` (100) no-op children and waits; measured from
  the parent's submit until it is COMPLETED (every child ran, the parent resumed and ended),
  beside the time the same host needs for the same number of no-op runs submitted one by one
  with ``POST /runs`` (the baseline: ratio = fan-out / baseline). Also: how long the parent
  took to create all its children (first claim → last child's ``submitted_at``).
* **fan-in latency**: ``--samples`` parents with 3 children each, one after the other; for
  each, the time from the last child's ``end_time`` until the parent's resumed attempt was
  claimed (its final ``start_time``). Shown with the baseline pickup latency of a plain run
  (``submitted_at`` → ``start_time``) measured in the same run.

Usage: ``.venv/bin/python benchmarks/children.py [--children 100] [--samples 20]``. Prints a
table, then one JSON document (the last line) with every figure. Quote the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pyoco_server.embedded import EmbeddedNats  # noqa: E402
from pyoco_server.testing import PyocoSystem, start_system  # noqa: E402

RESOLVER = f"{ROOT}/benchmarks/child_flows.py:resolve"


def wait_terminal(system: PyocoSystem, run_id: str, timeout: float = 300.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snapshot = system.client.get_run(run_id)
        if snapshot["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
            return snapshot
        time.sleep(0.02)
    raise TimeoutError(run_id)


def fan_out(system: PyocoSystem, children: int) -> dict[str, float]:
    started = time.perf_counter()
    run_id = system.submit("fan", {"n": children})
    final = wait_terminal(system, run_id)
    total = time.perf_counter() - started
    assert final["status"] == "COMPLETED", final
    kids = [system.client.get_run(child) for child in final["child_run_ids"]]
    assert len(kids) == children
    first_claim = min(k["submitted_at"] for k in kids)
    last_created = max(k["submitted_at"] for k in kids)
    return {"fan_out_total_s": total, "spawn_all_s": last_created - first_claim}


def baseline(system: PyocoSystem, runs: int) -> float:
    started = time.perf_counter()
    ids = [system.submit("leaf") for _ in range(runs)]
    for run_id in ids:
        wait_terminal(system, run_id)
    return time.perf_counter() - started


def fan_in(system: PyocoSystem, samples: int) -> tuple[list[float], list[float]]:
    resumes, pickups = [], []
    for _ in range(samples):
        final = wait_terminal(system, system.submit("fan", {"n": 3}))
        kids = [system.client.get_run(child) for child in final["child_run_ids"]]
        resumes.append(final["start_time"] - max(k["end_time"] for k in kids))
        plain = wait_terminal(system, system.submit("leaf"))
        pickups.append(plain["start_time"] - plain["submitted_at"])
    return resumes, pickups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=100)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-children-"))
    nats = EmbeddedNats(work / "nats")
    nats.start()
    try:
        with start_system(
            nats.url, work / "logs", flow_resolver=RESOLVER, concurrency=args.concurrency
        ) as system:
            wait_terminal(system, system.submit("leaf"))  # warm-up
            fan = fan_out(system, args.children)
            plain = baseline(system, args.children)
            resumes, pickups = fan_in(system, args.samples)
    finally:
        nats.stop()
    figures = {
        "children": args.children,
        "concurrency": args.concurrency,
        **fan,
        "baseline_plain_runs_s": plain,
        "fan_out_vs_plain_ratio": fan["fan_out_total_s"] / plain,
        "fan_in_p50_ms": statistics.median(resumes) * 1000,
        "fan_in_max_ms": max(resumes) * 1000,
        "plain_pickup_p50_ms": statistics.median(pickups) * 1000,
        "fan_in_vs_pickup_ratio": statistics.median(resumes) / statistics.median(pickups),
        "load_average": os.getloadavg()[0],
    }
    print(
        f"fan-out 1 → {args.children}: {fan['fan_out_total_s']:.2f} s to parent COMPLETED "
        f"(children created within {fan['spawn_all_s'] * 1000:.0f} ms)"
    )
    print(
        f"{args.children} plain submits:  {plain:.2f} s  "
        f"→ ratio {figures['fan_out_vs_plain_ratio']:.2f}"
    )
    print(
        f"fan-in p50 {figures['fan_in_p50_ms']:.0f} ms (max {figures['fan_in_max_ms']:.0f}) "
        f"vs plain pickup p50 {figures['plain_pickup_p50_ms']:.0f} ms "
        f"→ ratio {figures['fan_in_vs_pickup_ratio']:.2f}; load {figures['load_average']:.1f}"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
