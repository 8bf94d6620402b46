"""Benchmark: what a ``GET /dlq`` page costs as the dead-letter queue grows.

Runs a real nats-server (embedded, temporary store), fills the DLQ stream with realistic dead
letters (each carrying its ~300-byte job) and times :meth:`DeadLetterQueue.page`, the code
behind ``GET /dlq``, at several DLQ sizes:

* ``newest 50``: an unfiltered page (what the dashboard asks for);
* ``tag filter``: one tag of ten (filtered by JetStream on the subject);
* ``reason 1%``: a reason one entry in a hundred has (filtered in memory);
* ``no match``: a reason nobody has, so the read stops at ``PYOCO_DLQ_LIST_SCAN_MAX``.

    .venv/bin/python benchmarks/dlq_list.py [--sizes 1000,10000,100000] [--repeat 20]

Prints one JSON document, then a table. Target: the unfiltered page costs the same at every
size (it reads about ``limit`` messages), and no request examines more than the scan cap.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid

from pyoco_server.config import Settings
from pyoco_server.embedded import EmbeddedNats
from pyoco_server.gateway.dead_letters import DeadLetterQueue
from pyoco_server.gateway.tenancy import Caller
from pyoco_server.jobs import build_job
from pyoco_server.nats_client import connect, ensure_resources

TAGS = [f"tag{n}" for n in range(10)]


def dead_letter(index: int) -> tuple[str, bytes]:
    tag = TAGS[index % len(TAGS)]
    run_id = str(uuid.uuid4())
    reason = "lost" if index % 100 == 0 else "execution_error"
    entry = {
        "timestamp": time.time(),
        "reason": reason,
        "error": "RuntimeError: task 'load' failed: connection refused",
        "run_id": run_id,
        "flow_name": f"flow_{index % 7}",
        "tag": tag,
        "tags": [tag],
        "worker_id": "worker-1",
        "num_delivered": 1,
        "max_deliver": 20,
        "attempt": 1,
        "job": build_job(run_id, f"flow_{index % 7}", tag, [tag], {"n": index, "x": "y" * 40}),
    }
    return tag, json.dumps(entry).encode()


async def fill(js, settings: Settings, count: int) -> None:
    for start in range(0, count, 1000):
        await asyncio.gather(
            *(
                js.publish(settings.dlq_subject(tag), data)
                for tag, data in map(dead_letter, range(start, min(start + 1000, count)))
            )
        )


async def timed(queue: DeadLetterQueue, repeat: int, **query) -> dict:
    times, scanned, found = [], 0, 0
    for _ in range(repeat):
        started = time.perf_counter()
        page = await queue.page(Caller(), **query)
        times.append((time.perf_counter() - started) * 1000)
        scanned, found = page.scanned, len(page.entries)
    return {"median_ms": round(statistics.median(times), 2), "scanned": scanned, "found": found}


async def main(sizes: list[int], repeat: int) -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as store:
        server = EmbeddedNats(store)
        server.start()
        try:
            settings = Settings(nats_url=server.url, dlq_max_msgs=max(sizes) + 1)
            nc = await connect(server.url, "benchmark")
            js = nc.jetstream(timeout=30)
            await ensure_resources(js, settings)
            queue = DeadLetterQueue(js, settings)
            stored = 0
            for size in sorted(sizes):
                await fill(js, settings, size - stored)
                stored = size
                results[size] = {
                    "newest 50": await timed(queue, repeat, limit=50),
                    "tag filter": await timed(queue, repeat, limit=50, tag="tag3"),
                    "reason 1%": await timed(queue, repeat, limit=50, reason="lost"),
                    "no match": await timed(queue, max(3, repeat // 5), limit=50, reason="x"),
                }
            await nc.close()
        finally:
            server.stop()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    figures = asyncio.run(main([int(s) for s in args.sizes.split(",")], args.repeat))
    print(json.dumps(figures))
    print(f"{'DLQ size':>9}  {'query':<11} {'median ms':>9} {'scanned':>8} {'found':>6}")
    for size, rows in figures.items():
        for name, row in rows.items():
            print(
                f"{size:>9}  {name:<11} {row['median_ms']:>9} {row['scanned']:>8} {row['found']:>6}"
            )
