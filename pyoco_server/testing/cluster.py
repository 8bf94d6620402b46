"""A NATS cluster on loopback for tests and benchmarks (usable without pytest)."""

from __future__ import annotations

from pathlib import Path

from ..embedded import EmbeddedNats, free_port

#: How long the nodes of a cluster may take to elect a JetStream meta leader.
CLUSTER_READY_SEC = 60.0


def start_nats_cluster(
    store: Path, size: int = 3, name: str = "pyoco-test", timeout: float = CLUSTER_READY_SEC
) -> list[EmbeddedNats]:
    """``size`` nats-servers with JetStream routed to each other (one cluster), data under
    ``store/n<i>``.

    Every node is started before any is waited for: JetStream elects its meta leader, and so
    answers, only once a majority runs. Stop each node (``stop()``) at the end.
    """
    ports = [free_port() for _ in range(size)]
    routes = [f"nats://127.0.0.1:{port}" for port in ports]
    nodes = [
        EmbeddedNats(
            Path(store) / f"n{index}",
            server_name=f"n{index}",
            cluster_name=name,
            cluster_port=ports[index],
            routes=[route for i, route in enumerate(routes) if i != index],
        )
        for index in range(size)
    ]
    try:
        for node in nodes:
            node.spawn()
        for node in nodes:
            node.wait_ready(timeout)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes


def cluster_url(nodes: list[EmbeddedNats]) -> str:
    """The comma-separated client URL of every node (what ``PYOCO_NATS_URL`` takes)."""
    return ",".join(node.url for node in nodes)
