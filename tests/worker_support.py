"""Helpers for worker tests: publish jobs like the gateway does, run real worker processes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pyoco_server.config import Settings, env_var
from pyoco_server.jobs import build_job, encode_job, message_id, pending_snapshot
from pyoco_server.model import is_terminal
from pyoco_server.nats_client import ensure_resources
from pyoco_server.plugins import build_plugin_manager
from pyoco_server.runs import RunNotFound, RunStore

REPO_ROOT = Path(__file__).resolve().parent.parent
RESOLVER = f"{REPO_ROOT}/tests/flows/resolver.py:resolve"

#: A workflow YAML whose callables are allowed with PYOCO_YAML_ALLOWED_CALLABLES=tests.flows.
YAML_FLOW = b"""\
version: 1
flow:
  graph: |
    add_one >> to_text
  defaults:
    x: 1
tasks:
  add_one:
    callable: tests.flows.sample_tasks:add_one
  to_text:
    callable: tests.flows.sample_tasks:to_text
"""


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as the PYOCO_* environment of a worker process."""
    env: dict[str, str] = {}
    for spec in dataclasses.fields(Settings):
        value = getattr(settings, spec.name)
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, tuple):
            text = ",".join(value)
        else:
            text = str(value)
        env[env_var(spec.name)] = text
    return env


async def open_store(nc: Any, settings: Settings) -> tuple[Any, RunStore]:
    """JetStream context (resources created) and a RunStore with the built-in plugins."""
    js = nc.jetstream()
    await ensure_resources(js, settings)
    kv = await js.key_value(settings.runs_kv_bucket)
    return js, RunStore(kv, build_plugin_manager(plugins=[]), settings)


def make_job(
    flow_name: str, params: dict[str, Any] | None = None, tag: str = "default", **extra: Any
) -> dict[str, Any]:
    return build_job(str(uuid.uuid4()), flow_name, tag, [tag], params or {}, **extra)


async def submit(js: Any, store: RunStore, settings: Settings, job: dict[str, Any]) -> str:
    """Exactly what the gateway does: PENDING snapshot first, then the job message."""
    await store.create(pending_snapshot(job), job)
    await js.publish(
        settings.work_subject(job["tag"]),
        encode_job(job),
        headers={"Nats-Msg-Id": message_id(job)},
    )
    return job["run_id"]


async def wait_for_run(
    store: RunStore,
    run_id: str,
    statuses: Iterable[str] | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Poll until the run has one of ``statuses`` (default: any terminal status)."""
    wanted = set(statuses) if statuses is not None else None
    deadline = time.monotonic() + timeout
    snapshot: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        try:
            snapshot, _ = await store.get(run_id)
        except RunNotFound:
            snapshot = None
        if snapshot is not None:
            status = snapshot.get("status")
            if (wanted is None and is_terminal(status)) or (wanted and status in wanted):
                return snapshot
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} did not reach {wanted or 'a terminal status'}: {snapshot}")


async def wait_until(predicate: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll an async predicate until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def worker_record(js: Any, settings: Settings, worker_id: str) -> dict[str, Any] | None:
    kv = await js.key_value(settings.workers_kv_bucket)
    try:
        entry = await kv.get(worker_id)
    except Exception:
        return None
    return json.loads(entry.value) if entry.value else None


async def dead_letter(
    js: Any, settings: Settings, match: Any, timeout: float = 10.0
) -> dict[str, Any]:
    """The newest DLQ entry for which ``match(entry)`` is true (waits for it to appear)."""

    async def find() -> dict[str, Any] | None:
        info = await js.stream_info(settings.dlq_stream)
        for seq in range(info.state.last_seq, info.state.first_seq - 1, -1):
            if seq <= 0:
                break
            entry = json.loads((await js.get_msg(settings.dlq_stream, seq)).data)
            if match(entry):
                return entry
        return None

    return await wait_until(find, timeout, "a dead letter")


def for_run(run_id: str) -> Any:
    return lambda entry: entry.get("run_id") == run_id


async def queue_is_empty(js: Any, settings: Settings) -> bool:
    info = await js.stream_info(settings.work_stream)
    return info.state.messages == 0


class WorkerProcess:
    """A real ``pyoco-worker`` process (``python -m pyoco_server.cli.worker``)."""

    def __init__(
        self,
        settings: Settings,
        log_dir: Path,
        *args: str,
        worker_id: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.worker_id = worker_id or f"w-{uuid.uuid4().hex[:8]}"
        self.log_path = log_dir / f"{self.worker_id}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("PYOCO_")}
        full_env.update(settings_env(settings))
        full_env["PYTHONPATH"] = str(REPO_ROOT)
        full_env.update(env or {})
        self.log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pyoco_server.cli.worker",
                "--worker-id",
                self.worker_id,
                "--flow-resolver",
                RESOLVER,
                "--poll-timeout",
                "0.5",
                *args,
            ],
            cwd=log_dir,
            env=full_env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        if not self.log_file.closed:
            self.log_file.flush()
        return self.log_path.read_text(errors="replace")

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
        return events

    async def wait_ready(self, js: Any, settings: Settings, timeout: float = 30.0) -> None:
        async def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log()[-3000:]}")
            record = await worker_record(js, settings, self.worker_id)
            return bool(record and record.get("state") in ("IDLE", "RUNNING"))

        await wait_until(ready, timeout, f"worker {self.worker_id} to be ready")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log_file.close()


def child_pids(pid: int) -> list[int]:
    result = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in result.stdout.split()]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
