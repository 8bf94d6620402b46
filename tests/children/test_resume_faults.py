"""A gateway killed (SIGKILL) in the middle of resuming a parent or of approving a bundle
loses nothing.

The gateway that notes a parent's last child publishes the resumption job, then writes the
parent PENDING; an approval publishes the bundle run's job, then writes the approval. The test
hook ``PYOCO_TEST_CRASH_AT`` kills the gateway exactly before the publish, or between the
publish and the write; the run still completes (a parent with its earlier tasks not executed
again and exactly its declared children).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from childkit import REPO_ROOT, RESOLVER, TASKS, WorkerHost, bundle, lines

from pyoco_server.children.crash_points import (
    BEFORE_APPROVAL_WRITE,
    BEFORE_RESUME_PUBLISH,
    BEFORE_RESUME_WRITE,
    CRASH_ENV,
)
from pyoco_server.embedded import free_port
from pyoco_server.testing import start_system


def _start_gateway(system, log_path: Path) -> tuple[subprocess.Popen, str]:
    """A second gateway on the same resources, without the crash hook."""
    port = free_port()
    command = [sys.executable, "-m", "pyoco_server.cli.server", "up", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--nats-url", system.nats_url]
    base = {k: v for k, v in os.environ.items() if not k.startswith("PYOCO_")}
    env = {k: v for k, v in system.env.items() if k != CRASH_ENV}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, env={**base, **env}, stdout=log, stderr=subprocess.STDOUT
        )
    return process, f"http://127.0.0.1:{port}"


def _final(base_url: str, run_id: str, timeout: float) -> dict:
    snapshot: dict = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            snapshot = httpx.get(f"{base_url}/runs/{run_id}", timeout=2).json()
        except httpx.HTTPError:
            snapshot = {}
        if snapshot.get("status") in ("COMPLETED", "FAILED", "CANCELLED"):
            break
        time.sleep(0.1)
    return snapshot


@pytest.mark.slow
@pytest.mark.parametrize("concurrency", [1, 3])
@pytest.mark.parametrize("point", [BEFORE_RESUME_PUBLISH, BEFORE_RESUME_WRITE])
def test_a_gateway_killed_while_resuming_a_parent_loses_nothing(
    nats_server, tmp_path, point, concurrency
):
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {"PYOCO_RECONCILE_INTERVAL_SEC": "1", CRASH_ENV: point}
    system = start_system(
        nats_server.url, tmp_path / "logs", worker=False, flow_resolver=RESOLVER, env=env
    )
    # The default users run (one worker at concurrency 1, two tags) and a wider host; the
    # parent's children run on its tag.
    host = WorkerHost(system, f"host-{point}-{concurrency}", ["g", "other"], concurrency)
    replacement = None
    try:
        host.wait_listed()
        params = {"n": 3, "child_sleep": 0.2, "marker_dir": str(markers)}
        run_id = system.submit("parent", params, tag="g")
        deadline = time.monotonic() + 60
        while system.running("gateway") and time.monotonic() < deadline:
            time.sleep(0.1)
        if system.running("gateway"):
            pytest.fail(f"the gateway never reached {point}")
        replacement, base_url = _start_gateway(system, tmp_path / "replacement.log")
        final = _final(base_url, run_id, timeout=60)
        assert final.get("status") == "COMPLETED", final
        assert len(final["child_run_ids"]) == 3
        assert final["children_done"] == {c: "COMPLETED" for c in final["child_run_ids"]}
        assert lines(markers / "prepare.txt") == 1  # finished tasks were not run again
        assert sum(lines(markers / f"child-{i}.txt") for i in range(3)) == 3
    finally:
        if replacement is not None:
            replacement.send_signal(signal.SIGTERM)
            replacement.wait(15)
        host.stop()
        system.stop()


@pytest.mark.slow
def test_a_gateway_killed_between_an_approvals_publish_and_its_write_loses_nothing(
    nats_server, tmp_path
):
    env = {
        CRASH_ENV: BEFORE_APPROVAL_WRITE,
        "PYTHONPATH": str(REPO_ROOT),
        "PYOCO_YAML_ALLOWED_CALLABLES": TASKS,
    }
    system = start_system(
        nats_server.url, tmp_path / "logs", worker=False, flow_resolver=RESOLVER, env=env
    )
    host = WorkerHost(system, "approvals", ["b", "other"], 1)
    replacement = None
    try:
        host.wait_listed()
        answer = httpx.post(
            f"{system.url}/runs/bundle",
            files={"bundle": ("bundle.yaml", bundle(), "application/yaml")},
            data={"tag": "b"},
            timeout=10,
        )
        run_id = answer.json()["run_id"]
        assert answer.json()["status"] == "PENDING_APPROVAL"
        with pytest.raises(httpx.HTTPError):  # the gateway dies answering
            httpx.post(f"{system.url}/runs/{run_id}/approve", timeout=10)
        replacement, base_url = _start_gateway(system, tmp_path / "replacement.log")
        final = _final(base_url, run_id, timeout=60)
        assert final.get("status") == "COMPLETED", final
        assert final["approval"]["state"] == "approved"
        assert final["child_run_ids"] == [f"{run_id}.fan.0"]
    finally:
        if replacement is not None:
            replacement.send_signal(signal.SIGTERM)
            replacement.wait(15)
        host.stop()
        system.stop()
