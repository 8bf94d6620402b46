"""Helpers of the child-run tests: extra worker hosts on a test system, run counting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pyoco_server.testing import PyocoSystem

RESOLVER = str(Path(__file__).with_name("child_flows.py")) + ":resolve"
REPO_ROOT = Path(__file__).resolve().parents[2]
#: YAML callables of the bundle tests.
TASKS = "tests.children.child_flows"
#: At most this many children of one parent run at once (every test of the package).
MAX_PARALLEL = 3
#: Short AckWait, so the job of a killed worker comes back within seconds.
FAST_REDELIVERY = {
    "PYOCO_CONSUMER_ACK_WAIT_SEC": "3",
    "PYOCO_ACK_PROGRESS_INTERVAL_SEC": "0.5",
    "PYOCO_RECONCILE_INTERVAL_SEC": "1",
}


class WorkerHost:
    """A ``pyoco-worker`` started on a test system's NATS resources."""

    def __init__(
        self,
        system: PyocoSystem,
        worker_id: str,
        tags: list[str],
        concurrency: int,
        extra_env: dict[str, str] | None = None,
    ):
        self.worker_id = worker_id
        self.log_path = system.log_dir / f"{worker_id}.log"
        command = [sys.executable, "-m", "pyoco_server.cli.worker"]
        command += ["--nats-url", system.nats_url, "--worker-id", worker_id]
        command += ["--poll-timeout", "0.5", "--concurrency", str(concurrency)]
        command += ["--tags", ",".join(tags), "--flow-resolver", RESOLVER]
        base = {k: v for k, v in os.environ.items() if not k.startswith("PYOCO_")}
        with open(self.log_path, "wb") as log_file:
            self.popen = subprocess.Popen(
                command,
                cwd=system.log_dir,
                env={**base, **system.env, **(extra_env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        self.system = system

    def wait_listed(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            workers = self.system.client.list_workers()
            if any(w.get("worker_id") == self.worker_id and w.get("alive") for w in workers):
                return
            assert self.popen.poll() is None, self.log_path.read_text()[-3000:]
            time.sleep(0.1)
        raise AssertionError(f"worker {self.worker_id} not listed")

    def kill9(self) -> None:
        os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def api_key(system: PyocoSystem, tenant: str) -> str:
    """A new API key of ``tenant`` (``pyoco-server-admin api-key create``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYOCO_")}
    env.update(system.env, PYOCO_NATS_URL=system.nats_url)
    done = subprocess.run(
        [sys.executable, "-m", "pyoco_server.cli.admin", "api-key", "create", "--tenant", tenant],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["api_key"]


def pyoco_client(system: PyocoSystem, *args: str, key: str | None = None, timeout: float = 90):
    """Run ``pyoco-client --server <gateway> [--api-key KEY] ARGS`` as a real process."""
    command = [sys.executable, "-m", "pyoco_server.cli.client", "--server", system.url]
    command += ["--api-key", key] if key else []
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYOCO_")}
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def children_of(system: PyocoSystem, run_id: str) -> list[dict[str, Any]]:
    """``GET /runs?parent_run_id=``."""
    response = system.client._http.get("/runs", params={"parent_run_id": run_id, "limit": 200})
    assert response.status_code == 200, response.text
    return response.json()


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


#: A spawn bundle: ``main`` prepares, spawns one ``child`` and reports.
BUNDLE = f"""
version: 1
workflows:
  main:
    flow:
      graph: "prepare >> fan >> report"
      defaults: {{n: 2}}
    tasks:
      prepare: {{callable: "{TASKS}:prepare"}}
      fan:
        spawn: child
        inputs: {{i: "$node.prepare.output"}}
      report: {{callable: "{TASKS}:report"}}
  child:
    flow: {{graph: "square"}}
    tasks:
      square: {{callable: "CHILD_CALLABLE"}}
submit:
  entry_workflow: main
  inputs: {{n: 3}}
"""


def bundle(child_callable: str = f"{TASKS}:square", target: str = "child") -> bytes:
    text = BUNDLE.replace("CHILD_CALLABLE", child_callable).replace(
        "spawn: child", f"spawn: {target}"
    )
    return text.encode()
