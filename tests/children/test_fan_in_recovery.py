"""Fan-in survives the gateway: a child that ends while no gateway runs still resumes its
parent, through the sweep of the gateway started afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from childkit import RESOLVER, WorkerHost, lines

from pyoco_server.embedded import free_port
from pyoco_server.testing import start_system


@pytest.mark.slow
def test_a_child_ending_while_the_gateway_is_down_still_resumes_its_parent(nats_server, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {"PYOCO_RECONCILE_INTERVAL_SEC": "1"}
    system = start_system(
        nats_server.url, tmp_path / "logs", worker=False, flow_resolver=RESOLVER, env=env
    )
    host = WorkerHost(system, "steady", ["g"], 2)
    replacement = None
    try:
        host.wait_listed()
        params = {"n": 2, "child_sleep": 1.5, "marker_dir": str(markers)}
        run_id = system.submit("parent", params, tag="g")
        system.wait(run_id, timeout=30, statuses={"WAITING"})
        os.kill(system.pids["gateway"], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while lines(markers / "child-1.txt") < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2.0)  # both children end while no gateway follows the runs bucket

        port = free_port()
        command = [sys.executable, "-m", "pyoco_server.cli.server", "up", "--host", "127.0.0.1"]
        command += ["--port", str(port), "--nats-url", system.nats_url]
        base = {k: v for k, v in os.environ.items() if not k.startswith("PYOCO_")}
        with open(tmp_path / "replacement.log", "wb") as log:
            replacement = subprocess.Popen(
                command, env={**base, **system.env}, stdout=log, stderr=subprocess.STDOUT
            )
        final: dict = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                final = httpx.get(f"http://127.0.0.1:{port}/runs/{run_id}", timeout=2).json()
            except httpx.HTTPError:
                final = {}
            if final.get("status") in ("COMPLETED", "FAILED"):
                break
            time.sleep(0.1)
        assert final.get("status") == "COMPLETED", final
        assert final["children_done"] == {c: "COMPLETED" for c in final["child_run_ids"]}
        assert lines(markers / "prepare.txt") == 1
    finally:
        if replacement is not None:
            replacement.send_signal(signal.SIGTERM)
            replacement.wait(15)
        host.stop()
        system.stop()
