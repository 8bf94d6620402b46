"""Execution processes without NATS: pyoco quirks, cancel, hard stop, change functions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from worker_support import RESOLVER, alive, wait_until

from pyoco_server.config import Settings
from pyoco_server.jobs import build_job, pending_snapshot
from pyoco_server.worker.child import settings_to_wire
from pyoco_server.worker.pool import ExecutionPool, ExecutionProcessError
from pyoco_server.worker.snapshots import Claim, Finish, Progress


@pytest.fixture
async def pool(tmp_path: Path) -> AsyncIterator[ExecutionPool]:
    config = {
        "settings": settings_to_wire(Settings()),
        "plugins": {"allow": None},
        "flow_resolver": RESOLVER,
        "work_dir": str(tmp_path / "work"),
        "worker_id": "pytest",
    }
    pool = ExecutionPool(1, config)
    await pool.start()
    try:
        yield pool
    finally:
        await pool.stop()


def job(flow_name: str, **params) -> dict:
    return build_job(f"run-{flow_name}", flow_name, "default", ["default"], params)


async def _wait_until_waiting(execution) -> None:
    await wait_until(
        lambda: asyncio.sleep(0, execution.tasks.get("wait_for_file") == "RUNNING"),
        what="wait_for_file to run",
    )


async def test_cancel_during_the_last_task_completes_otherwise_cancels(pool, tmp_path):
    # pyoco returns CANCELLING when the cancel arrives during the last task: every task
    # succeeded, so the run is COMPLETED.
    release = tmp_path / "release"
    execution = await pool.run(
        job("marker_wait", marker=str(tmp_path / "m1"), release=str(release))
    )
    await _wait_until_waiting(execution)  # the last task runs: the cancel lands during it
    execution.request_cancel()
    release.touch()
    outcome = await execution.outcome()
    assert (outcome.status, outcome.kind) == ("COMPLETED", None)
    assert set(outcome.tasks.values()) == {"SUCCEEDED"}

    # With a task still to come, the run ends CANCELLED and that task never runs.
    release.unlink()
    execution = await pool.run(
        job("marker_wait_nap", marker=str(tmp_path / "m2"), release=str(release), seconds=0)
    )
    await _wait_until_waiting(execution)
    execution.request_cancel()
    release.touch()
    outcome = await execution.outcome()
    assert outcome.status == "CANCELLED"
    assert outcome.tasks == {
        "append_marker": "SUCCEEDED",
        "wait_for_file": "SUCCEEDED",
        "nap": "CANCELLED",
    }


async def test_hard_stop_kills_the_flow_and_the_process_is_replaced(pool, tmp_path):
    execution = await pool.run(
        job("marker_wait", marker=str(tmp_path / "m"), release=str(tmp_path / "never"))
    )
    await wait_until(
        lambda: asyncio.sleep(0, execution.tasks.get("wait_for_file") == "RUNNING"),
        what="progress",
    )
    old_pid = execution.pid
    execution.abort()
    outcome = await execution.outcome()
    assert execution.aborted and outcome.kind == "execution_error"
    assert "signal 9" in outcome.error
    assert outcome.tasks["append_marker"] == "SUCCEEDED"  # progress seen before the kill
    assert not alive(old_pid)
    replacement = await pool.run(job("add", x=1))
    assert replacement.pid != old_pid
    assert (await replacement.outcome()).status == "COMPLETED"


async def test_progress_is_streamed_and_flows_are_fresh_per_run(pool, tmp_path):
    release = tmp_path / "release"
    execution = await pool.run(job("marker_wait", marker=str(tmp_path / "m"), release=str(release)))
    seen: list[dict] = []
    execution.on_progress(lambda: seen.append(dict(execution.tasks)))
    midway = {"append_marker": "SUCCEEDED", "wait_for_file": "RUNNING"}
    await wait_until(lambda: asyncio.sleep(0, midway in seen), what="progress")
    release.touch()
    assert (await execution.outcome()).status == "COMPLETED"
    # the same flow again works: task objects are not shared between runs
    again = await pool.run(job("marker_wait", marker=str(tmp_path / "m"), release=str(release)))
    assert (await again.outcome()).status == "COMPLETED"


async def test_a_short_run_reports_only_its_outcome(pool):
    execution = await pool.run(job("noop"))
    progress: list[int] = []
    execution.on_progress(lambda: progress.append(1))
    assert (await execution.outcome()).status == "COMPLETED"
    assert progress == []


async def test_bad_flow_resolver_fails_the_pool_start(tmp_path):
    config = {
        "settings": settings_to_wire(Settings()),
        "plugins": {"allow": None},
        "flow_resolver": "no_such_module_xyz:resolve",
        "work_dir": str(tmp_path),
    }
    with pytest.raises(ExecutionProcessError) as raised:
        await ExecutionPool(1, config).start()
    assert raised.value.err_id == "ERR-PYOCO-0017"
    assert "no_such_module_xyz" in str(raised.value)


def test_change_functions_keep_foreign_fields_and_honour_cancelling():
    job_ = build_job("r1", "f", "default", ["default"], {}, tenant_id="t", api_key_id="k")
    snapshot = pending_snapshot(job_) | {"cancel_reason": "x"}
    claim = Claim("w1")
    running = claim(dict(snapshot))
    assert claim.decision == Claim.RUN and running["status"] == "RUNNING"
    assert (running["tenant_id"], running["api_key_id"], running["cancel_reason"]) == (
        "t",
        "k",
        "x",
    )

    cancelling = running | {"status": "CANCELLING"}
    progress = Progress("w1", {"a": "RUNNING"}, {})
    written = progress(dict(cancelling))
    assert written["status"] == "CANCELLING" and progress.cancel_requested
    assert Progress("w2")(dict(running)) is None  # another worker owns the run now

    claim = Claim("w2")
    cancelled = claim(dict(cancelling) | {"tasks": {"a": "PENDING"}})
    assert claim.decision == Claim.CANCELLED
    assert cancelled["status"] == "CANCELLED" and cancelled["tasks"] == {"a": "CANCELLED"}

    done = Finish("COMPLETED", worker_id="w1")(dict(cancelling))
    assert done["status"] == "COMPLETED" and done["tenant_id"] == "t"
    assert Finish("FAILED")(dict(done)) is None  # a terminal snapshot is never replaced
    claim = Claim("w1")
    assert claim(dict(done)) is None and claim.decision == Claim.FINISHED
