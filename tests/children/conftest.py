"""One gateway for every child-run test module; worker hosts started per test or module."""

from __future__ import annotations

import pytest
from childkit import FAST_REDELIVERY, MAX_PARALLEL, REPO_ROOT, RESOLVER, TASKS, WorkerHost

from pyoco_server.testing import start_system


@pytest.fixture(scope="package")
def gateway(nats_server, tmp_path_factory):
    """A gateway alone; each test brings worker hosts on tags of its own."""
    env = {
        **FAST_REDELIVERY,
        "PYOCO_CANCEL_GRACE_PERIOD_SEC": "1",
        "PYOCO_SPAWN_MAX_PARALLEL": str(MAX_PARALLEL),
        "PYTHONPATH": str(REPO_ROOT),
        "PYOCO_YAML_ALLOWED_CALLABLES": TASKS,
    }
    logs = tmp_path_factory.mktemp("logs")
    with start_system(
        nats_server.url, logs, worker=False, flow_resolver=RESOLVER, env=env
    ) as started:
        yield started


@pytest.fixture
def hosts(gateway):
    """``hosts(worker_id, tags, concurrency)`` starts a worker host, stopped after the test."""
    started: list[WorkerHost] = []

    def start(worker_id: str, tags: list[str], concurrency: int = 1) -> WorkerHost:
        host = WorkerHost(gateway, worker_id, tags, concurrency)
        started.append(host)
        host.wait_listed()
        return host

    yield start
    for host in started:
        host.stop()
