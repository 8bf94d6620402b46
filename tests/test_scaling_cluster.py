"""docs/scaling.md: two gateways and two workers on a 3-node NATS cluster with R3 resources.

Everything is real: three nats-server processes clustered on loopback, two
``pyoco-server up --nats-url <seed list>`` gateways and two ``pyoco-worker`` hosts sharing one
set of streams and buckets created with ``PYOCO_JETSTREAM_REPLICAS=3``. A run submitted through
one gateway is visible through the other; after the NATS node with the most client connections
is killed, runs keep completing and earlier runs are still there.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyoco_server.embedded import EmbeddedNats
from pyoco_server.nats_client import connect
from pyoco_server.testing import isolation_env, start_system
from pyoco_server.testing.cluster import start_nats_cluster

REPO_ROOT = Path(__file__).resolve().parent.parent
HELLO_RESOLVER = f"{REPO_ROOT}/examples/hello_flows.py:resolve"


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[list[EmbeddedNats]]:
    """Three clustered nats-servers with JetStream, stopped by PID at the end."""
    nodes = start_nats_cluster(tmp_path, 3)
    try:
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def _connections(node: EmbeddedNats) -> int:
    """Client connections to ``node`` (its monitoring endpoint)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{node.monitor_port}/connz", timeout=5) as r:
        return json.load(r)["num_connections"]


async def _replicas(url: str, env: dict[str, str]) -> dict[str, int]:
    client = await connect(url, "pytest-scaling")
    try:
        js = client.jetstream(timeout=10)
        names = [env["PYOCO_WORK_STREAM"], env["PYOCO_DLQ_STREAM"]]
        names += [f"KV_{env[f'PYOCO_{kind}_KV_BUCKET']}" for kind in ("RUNS", "WORKERS")]
        return {name: (await js.stream_info(name)).config.num_replicas for name in names}
    finally:
        await client.close()


def test_gateways_and_workers_share_a_replicated_cluster_and_survive_a_node_loss(
    nats_cluster: list[EmbeddedNats], tmp_path: Path
):
    urls = [node.url for node in nats_cluster]
    env = {**isolation_env(), "PYOCO_JETSTREAM_REPLICAS": "3"}
    systems = [
        start_system(
            ",".join(seeds),
            tmp_path / name,
            env=env,
            flow_resolver=HELLO_RESOLVER,
        )
        for name, seeds in (("a", urls), ("b", [urls[2], urls[1]]))
    ]
    try:
        first, second = systems
        assert asyncio.run(_replicas(urls[1], env)) == {
            env["PYOCO_WORK_STREAM"]: 3,
            env["PYOCO_DLQ_STREAM"]: 3,
            f"KV_{env['PYOCO_RUNS_KV_BUCKET']}": 3,
            f"KV_{env['PYOCO_WORKERS_KV_BUCKET']}": 3,
        }
        workers = {w["worker_id"] for w in second.client.list_workers() if w["alive"]}
        assert workers == {first.worker_id, second.worker_id}

        run_ids = [first.submit("sum", {"n": n}) for n in range(1, 7)]
        finished = [second.wait(run_id) for run_id in run_ids]  # seen through the other gateway
        assert [s["task_records"]["total"]["output"] for s in finished] == [1, 3, 6, 10, 15, 21]

        busiest = max(nats_cluster, key=_connections)
        assert _connections(busiest) > 0
        busiest.kill()  # the node most clients use dies; R3 keeps a quorum of two
        deadline = time.monotonic() + 60
        while True:  # clients on the dead node reconnect; stream leaders may move
            try:
                after = first.run("hello", {"name": "after the loss"}, timeout=30)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert after["status"] == "COMPLETED"
        assert second.get(run_ids[0])["status"] == "COMPLETED"  # still there
    finally:
        for system in systems:
            system.stop()
