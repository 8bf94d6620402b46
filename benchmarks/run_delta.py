"""Benchmark: delta listings (``GET /runs?updated_after=&cursor=``) from the run index.

In process, no NATS: fills a :class:`~pyoco_server.gateway.run_index.RunIndex` with N run
snapshots (as the KV stream would deliver them, writers' clocks a little out of order) and
times, at each size:

* a first delta page (``updated_after=0, limit=50``), a page in the middle (from a cursor),
  and a poll that finds the 10 runs changed since the last one;
* applying the writes (µs per write, the ``(updated_at, run_id)`` indexes and per-day counts
  included).

    .venv/bin/python benchmarks/run_delta.py [--sizes 1000,10000,100000] [--repeat 200]

Prints one JSON document, then a table. Target: a page at 100,000 runs within 2x of a page at
1,000 (O(limit), not O(runs)).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time

from pyoco_server.gateway.run_delta.cursor import decode_cursor
from pyoco_server.gateway.run_delta.listing import DeltaQuery, delta_page
from pyoco_server.gateway.run_index import RunIndex
from pyoco_server.stream_reader import StreamRecord

BUCKET = "runs_bench"
STATUSES = ("COMPLETED", "COMPLETED", "COMPLETED", "FAILED", "RUNNING", "PENDING")


def records(count: int, start: float) -> list[StreamRecord]:
    """``count`` puts in stream order; ``updated_at`` rises with a little writer clock skew."""
    rng = random.Random(7)
    out = []
    for seq in range(1, count + 1):
        snapshot = {
            "run_id": f"run-{seq:08d}",
            "flow_name": f"flow_{seq % 7}",
            "tag": "default",
            "tags": ["default"],
            "status": STATUSES[seq % len(STATUSES)],
            "updated_at": start + seq * 0.01 + rng.uniform(-0.05, 0.05),
            "heartbeat_at": start,
            "worker_id": f"worker-{seq % 4}",
        }
        subject = f"$KV.{BUCKET}.{snapshot['run_id']}"
        out.append(StreamRecord(seq, subject, json.dumps(snapshot).encode()))
    return out


def page_ms(index: RunIndex, query: DeltaQuery, repeat: int) -> float:
    """Median milliseconds of one 50-run delta page over ``repeat`` calls."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        delta_page(index, None, query, limit=50)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def apply_seconds(batch: list[StreamRecord]) -> float:
    index = RunIndex(BUCKET)
    started = time.perf_counter()
    index.apply(batch)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=200, help="timed calls per figure")
    args = parser.parse_args()
    start = time.time() - 86400
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        batch = records(size, start)
        applied = [apply_seconds(batch) for _ in range(3)]
        index = RunIndex(BUCKET)
        index.apply(batch)
        first = delta_page(index, None, DeltaQuery(updated_after=0.0), limit=50)
        assert len(first.items) == 50 and first.next_cursor
        middle_key = (start + size * 0.005, "run-")
        newest = max(item["updated_at"] for item in first.items)
        queries = {
            "first_page_ms": DeltaQuery(updated_after=0.0),
            "middle_page_ms": DeltaQuery(updated_after=0.0, cursor=middle_key),
            "poll_10_changed_ms": DeltaQuery(updated_after=newest - 0.1),
        }
        row: dict = {"stored_runs": size}
        for name, query in queries.items():
            row[name] = round(page_ms(index, query, args.repeat), 4)
        row["apply_us_per_write"] = round(min(applied) / size * 1e6, 2)
        results.append(row)
        assert decode_cursor(first.next_cursor)
    smallest, largest = results[0], results[-1]
    report = {
        "benchmark": "delta listing from the run index (in process)",
        "results": results,
        "first_page_ratio_largest_to_smallest": round(
            largest["first_page_ms"] / smallest["first_page_ms"], 3
        ),
        "load_average": os.getloadavg(),
        "python": sys.version.split()[0],
    }
    print(json.dumps(report, indent=2))
    print()
    print(f"{'runs':>9}  {'first ms':>9}  {'middle ms':>9}  {'poll ms':>8}  {'apply µs/write':>14}")
    for row in results:
        print(
            f"{row['stored_runs']:>9,}  {row['first_page_ms']:>9.3f}  {row['middle_page_ms']:>9.3f}"
            f"  {row['poll_10_changed_ms']:>8.3f}  {row['apply_us_per_write']:>14.2f}"
        )


if __name__ == "__main__":
    main()
