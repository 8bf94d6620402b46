"""Helpers for worker tests: publish jobs like the gateway does, run real worker processes
(:class:`pyoco_server.testing.WorkerProcess` with this suite's flow resolver)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pyoco_server.config import Settings
from pyoco_server.jobs import build_job, encode_job, message_id, pending_snapshot, with_pending
from pyoco_server.model import is_terminal
from pyoco_server.nats_client import ensure_resources
from pyoco_server.plugins import build_plugin_manager
from pyoco_server.run_store import RunNotFound, RunStore
from pyoco_server.testing import WorkerProcess as HarnessWorker
from pyoco_server.testing.processes import worker_record as harness_worker_record

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
    """Exactly what the gateway does: PENDING snapshot first, then the job message (which
    tells the snapshot's revision, see :func:`pyoco_server.jobs.with_pending`)."""
    snapshot = pending_snapshot(job)
    revision = await store.create(snapshot, job)
    await js.publish(
        settings.work_subject(job["tag"]),
        encode_job(with_pending(job, snapshot, revision)),
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
    """The worker's liveness record (``None`` while it has none)."""
    return await harness_worker_record(js, settings.workers_kv_bucket, worker_id)


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


@contextlib.contextmanager
def running_worker(settings: Settings, directory: Path, *args: str) -> Iterator[WorkerProcess]:
    """A worker process (this suite's resolver, ``args`` added), stopped on leaving; for the
    module-scoped worker fixtures that serve a whole test module."""
    process = WorkerProcess(settings, directory, *args)
    try:
        yield process
    finally:
        process.stop()


class WorkerProcess(HarnessWorker):
    """A real ``pyoco-worker`` for ``settings`` with this suite's flow resolver, short polls and
    the repository on ``PYTHONPATH``; ``args`` are further flags."""

    def __init__(
        self,
        settings: Settings,
        log_dir: Path,
        *args: str,
        worker_id: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            log_dir,
            "--flow-resolver",
            RESOLVER,
            "--poll-timeout",
            "0.5",
            *args,
            settings=settings,
            env={"PYTHONPATH": str(REPO_ROOT), **(env or {})},
            worker_id=worker_id,
        )
        self.settings = settings

    async def wait_ready(self, js: Any, settings: Settings, timeout: float = 30.0) -> None:
        """Until its liveness record says it pulls jobs."""
        await self.wait_ready_async(js, settings.workers_kv_bucket, timeout)


def child_pids(pid: int) -> list[int]:
    result = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in result.stdout.split()]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
