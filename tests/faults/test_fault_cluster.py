"""A 3-node JetStream cluster on loopback loses a node under load; every run still finishes.

Streams and KV buckets are created with ``PYOCO_JETSTREAM_REPLICAS=3``; the gateway and the
workers get all three client URLs in ``PYOCO_NATS_URL`` (comma-separated) and fail over on
their own. The node killed is the leader of the work stream, the harshest choice: its
replicas must elect a new leader while jobs are being published and pulled.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from faultkit import start_gateway, submit_http, wait_terminal_http
from worker_support import WorkerProcess

from pyoco_server.nats_client import NatsConnection
from pyoco_server.testing import isolated_settings
from pyoco_server.testing.cluster import cluster_url, start_nats_cluster

RUNS = 60
ACKS = {"consumer_ack_wait_sec": 4.0, "ack_progress_interval_sec": 0.5}
#: How long one submit may keep answering 503 while the cluster elects new leaders.
FAILOVER_SEC = 45.0


@pytest.mark.slow
async def test_losing_a_cluster_node_under_load_loses_no_run(tmp_path):
    nodes = start_nats_cluster(tmp_path / "cluster", 3)
    settings = isolated_settings(cluster_url(nodes), jetstream_replicas=3, **ACKS)
    nats = NatsConnection(settings, "pytest")
    gateway = None
    workers: list[WorkerProcess] = []
    try:
        await nats.start()
        assert await nats.wait_ready(60), "the cluster did not elect a JetStream leader"
        js = nats.js
        for stream in (settings.work_stream, f"KV_{settings.runs_kv_bucket}"):
            info = await js.stream_info(stream)
            assert info.config.num_replicas == 3
            assert len(info.cluster.replicas) == 2

        gateway = start_gateway(settings, tmp_path)
        workers = [
            WorkerProcess(settings, tmp_path, "--concurrency", "2", worker_id=f"w{i}")
            for i in range(2)
        ]
        await gateway.wait_ready_async()
        for worker in workers:
            await worker.wait_ready(js, settings)

        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:

            def submit_batch(count: int):
                return asyncio.gather(
                    *(
                        submit_http(client, "nap", {"seconds": 0.1}, retry_for=FAILOVER_SEC)
                        for _ in range(count)
                    )
                )

            accepted = await submit_batch(RUNS // 2)
            leader = (await js.stream_info(settings.work_stream)).cluster.leader
            victim = next(node for node in nodes if node.server_name == leader)
            victim.kill()
            killed = time.monotonic()
            accepted += await submit_batch(RUNS - len(accepted))
            submitted = time.monotonic() - killed

            finished = await wait_terminal_http(client, accepted, timeout=120)
            assert len(finished) == RUNS
            assert {s["status"] for s in finished.values()} == {"COMPLETED"}
            print(
                f"\ncluster: killed {leader} (work stream leader); the next {RUNS // 2} submits "
                f"took {submitted:.1f}s (503s retried); all {RUNS} runs completed "
                f"{time.monotonic() - killed:.1f}s after the kill"
            )

        assert gateway.process.poll() is None, "the gateway exited"
        assert all(worker.process.poll() is None for worker in workers)
        info = await nats.js.stream_info(settings.work_stream)
        assert info.cluster.leader != leader
    finally:
        for worker in workers:
            worker.stop()
        if gateway is not None:
            gateway.stop()
        await nats.stop()
        for node in nodes:
            node.stop()
