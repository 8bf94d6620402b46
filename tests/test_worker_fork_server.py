"""The fork server and lean execution processes, with real worker processes.

A worker host starts one fork server (``python -m pyoco_server.worker.child``) that forks its
execution processes. What an operator relies on: execution processes never load asyncio/ssl
(the design that keeps them small), a killed execution process or a killed fork server is
replaced and the next runs on every tag succeed (at ``--concurrency 1`` with two tags, the
default a new user runs), and nothing outlives a killed host.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from worker_support import (
    WorkerProcess,
    alive,
    child_pids,
    make_job,
    open_store,
    submit,
    wait_for_run,
    wait_until,
)

from pyoco_server.config import Settings
from pyoco_server.testing import isolated_settings
from pyoco_server.worker.child import settings_to_wire
from pyoco_server.worker.pool import ExecutionPool, ExecutionProcessError

TWO_TAGS = ("--concurrency", "1", "--tags", "default,main")


def mapped_modules(pid: int) -> set[str]:
    """Native modules in a process's memory map (``_asyncio``, ``_ssl``, ...)."""
    names = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        name = line.rsplit("/", 1)[-1]
        if name.endswith(".so") or ".cpython-" in name:
            names.add(name.split(".", 1)[0])
    return names


def tree(host_pid: int) -> tuple[int, list[int]]:
    """The host's fork server and the execution processes it forked."""
    (server,) = child_pids(host_pid)
    return server, child_pids(server)


async def new_tree(host_pid: int, old: list[int], slots: int) -> tuple[int, list[int]]:
    """Once the host runs ``slots`` execution processes again, none of them in ``old``."""

    async def ready() -> tuple[int, list[int]] | None:
        await asyncio.sleep(0.05)
        servers = child_pids(host_pid)
        if len(servers) != 1:
            return None
        pids = [pid for pid in child_pids(servers[0]) if alive(pid)]
        return (servers[0], pids) if len(pids) == slots and not set(pids) & set(old) else None

    return await wait_until(ready, 20, "replacement execution processes")


async def run_on_every_tag(js, store, settings, tags=("default", "main")) -> None:
    for tag in tags:
        run_id = await submit(js, store, settings, make_job("add", {"x": 1}, tag=tag))
        snapshot = await wait_for_run(store, run_id, timeout=30)
        assert snapshot["status"] == "COMPLETED", snapshot


async def test_execution_processes_are_forked_without_asyncio(nc, nats_server, tmp_path):
    settings = isolated_settings(nats_server.url)
    js, store = await open_store(nc, settings)
    worker = WorkerProcess(settings, tmp_path, "--concurrency", "2", "--tags", "default,main")
    try:
        await worker.wait_ready(js, settings)
        await run_on_every_tag(js, store, settings)
        server, executors = tree(worker.process.pid)
        assert len(executors) == 2
        assert "_asyncio" in mapped_modules(worker.process.pid)  # the host: NATS, asyncio
        for pid in (server, *executors):
            loaded = mapped_modules(pid)
            assert not loaded & {"_asyncio", "_ssl"}, (pid, sorted(loaded))
    finally:
        worker.stop()


async def test_killed_execution_process_is_replaced_at_concurrency_1(nc, nats_server, tmp_path):
    settings = isolated_settings(nats_server.url)
    js, store = await open_store(nc, settings)
    worker = WorkerProcess(settings, tmp_path, *TWO_TAGS)
    try:
        await worker.wait_ready(js, settings)
        await run_on_every_tag(js, store, settings)
        server, (victim,) = tree(worker.process.pid)
        os.kill(victim, signal.SIGKILL)
        same_server, _ = await new_tree(worker.process.pid, [victim], 1)
        assert same_server == server  # only the execution process was replaced
        await run_on_every_tag(js, store, settings)
    finally:
        worker.stop()


async def test_killed_fork_server_is_restarted_and_a_running_flow_fails(nc, nats_server, tmp_path):
    settings = isolated_settings(nats_server.url)
    js, store = await open_store(nc, settings)
    worker = WorkerProcess(settings, tmp_path, *TWO_TAGS)
    try:
        await worker.wait_ready(js, settings)
        release = tmp_path / "release"
        marker = tmp_path / "marker"
        job = make_job("marker_wait", {"marker": str(marker), "release": str(release)}, tag="main")
        run_id = await submit(js, store, settings, job)
        await wait_for_run(store, run_id, {"RUNNING"})
        server, executors = tree(worker.process.pid)
        os.kill(server, signal.SIGKILL)
        # Its execution process dies with it (PR_SET_PDEATHSIG): the run fails, it is not lost.
        for pid in executors:
            await wait_until(lambda pid=pid: asyncio.sleep(0, not alive(pid)), 10, "exit")
        snapshot = await wait_for_run(store, run_id, timeout=30)
        assert snapshot["status"] == "FAILED"
        assert "died" in snapshot["error"]
        new_server, _ = await new_tree(worker.process.pid, executors, 1)
        assert new_server != server
        await run_on_every_tag(js, store, settings)
    finally:
        worker.stop()


async def test_nothing_outlives_a_killed_host(nc, nats_server, tmp_path):
    settings = isolated_settings(nats_server.url)
    js, _ = await open_store(nc, settings)
    worker = WorkerProcess(settings, tmp_path, "--concurrency", "2", "--tags", "default,main")
    try:
        await worker.wait_ready(js, settings)
        server, executors = tree(worker.process.pid)
        worker.process.kill()
        worker.wait(10)
        for pid in (server, *executors):
            await wait_until(lambda pid=pid: asyncio.sleep(0, not alive(pid)), 10, "exit")
    finally:
        worker.stop()


THREADED_RESOLVER = """
import threading, time

threading.Thread(target=time.sleep, args=(3600,), name="background-poller", daemon=True).start()


def resolve(name):
    return None
"""


async def test_a_resolver_that_starts_a_thread_at_import_stops_the_start(tmp_path):
    """Forking a process with threads is unsafe: the start fails with ERR-PYOCO-0023 and says
    which thread, instead of forking anyway."""
    resolver = tmp_path / "threaded.py"
    resolver.write_text(THREADED_RESOLVER)
    config = {
        "settings": settings_to_wire(Settings()),
        "plugins": {"allow": None},
        "flow_resolver": f"{resolver}:resolve",
        "work_dir": str(tmp_path / "work"),
    }
    with pytest.raises(ExecutionProcessError) as raised:
        await ExecutionPool(1, config).start()
    assert raised.value.err_id == "ERR-PYOCO-0023"
    assert "background-poller" in str(raised.value)
