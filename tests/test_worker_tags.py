"""A worker serves every one of its tags, fairly, at every concurrency (real processes).

The bound checked here is the one docs/worker.md states: once a job waits on one of a host's
K tags, at most K - 1 jobs of its other tags are taken before it (seen through claim times,
plus one that was taken just before the publish and claimed just after it).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pyoco_server.embedded import EmbeddedNats
from pyoco_server.nats_client import connect
from pyoco_server.testing import PyocoSystem, start_system

ROOT = Path(__file__).resolve().parent.parent
RESOLVER = f"{ROOT}/tests/flows/resolver.py:resolve"


@pytest.fixture
def make_system(nats_server: EmbeddedNats, tmp_path: Path) -> Iterator:
    systems: list[PyocoSystem] = []

    def make(**kwargs) -> PyocoSystem:
        system = start_system(
            nats_server.url,
            tmp_path / f"s{len(systems)}",
            flow_resolver=RESOLVER,
            env={"PYTHONPATH": str(ROOT)},
            **kwargs,
        )
        systems.append(system)
        return system

    yield make
    for system in systems:
        system.stop()


@pytest.mark.parametrize("concurrency", [1, 2])
@pytest.mark.parametrize("tags", [["default"], ["alpha", "beta", "gamma"]])
def test_jobs_on_every_tag_complete(make_system, concurrency: int, tags: list[str]):
    system = make_system(tags=tags, concurrency=concurrency)
    # The last tag first: a worker whose first tag is quiet must still serve the others.
    run_ids = {tag: [system.submit("noop", tag=tag) for _ in range(3)] for tag in reversed(tags)}
    for tag, ids in run_ids.items():
        for run_id in ids:
            snapshot = system.wait(run_id, timeout=30)
            assert snapshot["status"] == "COMPLETED", snapshot
            assert snapshot["tag"] == tag
            assert snapshot["worker_id"] == system.worker_id


def test_a_tag_empty_at_start_is_served_when_a_job_arrives(make_system):
    system = make_system(tags=["first", "second", "third"], concurrency=1)
    time.sleep(2.5)  # several recheck rounds with every queue empty
    run_id = system.submit("noop", tag="third")
    snapshot = system.wait(run_id, timeout=10)
    assert snapshot["status"] == "COMPLETED"
    # Picked up on the publish, not on a later poll round (generous for a loaded machine).
    assert snapshot["start_time"] - snapshot["submitted_at"] < 0.45


@pytest.mark.parametrize("concurrency", [1, 2])
def test_a_quiet_tag_is_not_starved_by_a_busy_one(make_system, concurrency: int):
    system = make_system(tags=["busy", "quiet"], concurrency=concurrency)
    busy = [system.submit("nap", {"seconds": 0.1}, tag="busy") for _ in range(16)]
    system.wait(busy[concurrency], statuses={"RUNNING", "COMPLETED"}, timeout=30)
    quiet = system.submit("nap", {"seconds": 0.1}, tag="quiet")
    quiet_run = system.wait(quiet, timeout=30)
    assert quiet_run["status"] == "COMPLETED"
    others = [system.get(run_id) for run_id in busy]
    started_between = [
        run
        for run in others
        if run["start_time"] is not None
        and quiet_run["submitted_at"] < run["start_time"] < quiet_run["start_time"]
    ]
    # K = 2 tags: at most K - 1 = 1 busy job is taken after the quiet one is ready. start_time
    # is written after the take, so each slot may also show one busy job taken just before the
    # quiet job was published whose claim (start_time) lands just after it.
    assert len(started_between) <= 1 + concurrency, (quiet_run, started_between)
    # ...and the quiet run did not wait for the busy backlog to drain.
    assert (
        any(run["status"] in ("PENDING", "RUNNING") for run in others)
        or max(run["start_time"] for run in others) > quiet_run["start_time"]
    )
    for run_id in busy:
        assert system.wait(run_id, timeout=60)["status"] == "COMPLETED"


def test_every_consumer_exists_when_the_worker_first_shows_in_workers(make_system, nats_server):
    system = make_system(worker=False)
    tags = [f"t{index}" for index in range(6)]
    worker_id = f"pytest-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYOCO_")}
    env.update(system.env, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "pyoco_server.cli.worker", "--nats-url", nats_server.url]
    command += ["--worker-id", worker_id, "--tags", ",".join(tags), "--exit-with-parent"]
    log = open(system.log_dir / "worker-ready.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=system.url, timeout=5) as http:
            while time.monotonic() < deadline:
                listed = [w for w in http.get("/workers").json() if w["worker_id"] == worker_id]
                if listed:
                    break
                time.sleep(0.005)
            else:
                pytest.fail("the worker never showed in GET /workers")
        missing = asyncio.run(_missing_consumers(nats_server.url, system.env, tags))
        assert missing == [], f"no consumer yet for tags {missing}"
    finally:
        worker.terminate()
        worker.wait(30)
        log.close()


async def _missing_consumers(url: str, env: dict[str, str], tags: list[str]) -> list[str]:
    nc = await connect(url, "pytest")
    try:
        js = nc.jetstream()
        missing = []
        for tag in tags:
            try:
                await js.consumer_info(
                    env["PYOCO_WORK_STREAM"], f"{env['PYOCO_WORK_STREAM']}_{tag}"
                )
            except Exception:
                missing.append(tag)
        return missing
    finally:
        await nc.close()
