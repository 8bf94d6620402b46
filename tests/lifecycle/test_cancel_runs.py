"""``POST /runs/{run_id}/cancel`` end to end: real gateway (uvicorn), real worker processes,
real JetStream. Every run ends terminal — never RUNNING or CANCELLING after its worker is done."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import uuid

from lctools import poll, sse_events, submit, wait_status, wait_tasks
from worker_support import WorkerProcess, alive, wait_until

from pyoco_server.model import TERMINAL_STATUSES


def _tag(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


async def _queued(nc, settings, tag: str) -> int:
    """Jobs stored on the tag's work subject (not yet ACKed)."""
    subject = settings.work_subject(tag)
    info = await nc.jetstream().stream_info(settings.work_stream, subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


def _noticed_cancel(worker: WorkerProcess, run_id: str) -> bool:
    return any(
        event.get("event") == "run_cancel_requested" and event.get("run_id") == run_id
        for event in worker.log_events()
    )


async def test_pending_run_is_cancelled_at_once_and_its_job_never_executes(
    client, nc, lc_settings, tmp_path
):
    tag = _tag("idle")  # no worker serves this tag yet
    marker = tmp_path / "executed"
    run_id = await submit(client, "marker", params={"marker": str(marker)}, tag=tag)

    answer = await client.post(f"/runs/{run_id}/cancel")
    assert answer.status_code == 200, answer.text
    snapshot = answer.json()
    assert snapshot["status"] == "CANCELLED"
    assert snapshot["end_time"] >= snapshot["cancel_requested_at"] > 0
    assert "cancel_requested_by" not in snapshot  # authentication is off
    stored = (await client.get(f"/runs/{run_id}")).json()
    assert stored["status"] == "CANCELLED"
    assert await _queued(nc, lc_settings, tag) == 1, "the job is still queued"

    late = WorkerProcess(lc_settings, tmp_path, "--tags", tag)
    try:

        async def acked() -> bool:
            skipped = any(
                e.get("event") == "run_already_terminal" and e.get("run_id") == run_id
                for e in late.log_events()
            )
            return skipped and await _queued(nc, lc_settings, tag) == 0

        await wait_until(acked, 30, "the late worker to ACK the cancelled job")
    finally:
        late.stop()
    assert not marker.exists(), "the cancelled run was executed"
    after = (await client.get(f"/runs/{run_id}")).json()
    assert after["updated_at"] == stored["updated_at"], "the terminal snapshot was rewritten"


async def test_cancel_mid_run_cancels_the_tasks_not_started(
    client, nc, lc_settings, ready_worker, tmp_path
):
    release = tmp_path / "release"
    params = {"marker": str(tmp_path / "m"), "release": str(release), "seconds": 0.01}
    run_id = await submit(client, "marker_wait_nap", params=params)
    await wait_tasks(client, run_id, {"append_marker": "SUCCEEDED", "wait_for_file": "RUNNING"})

    answer = await client.post(f"/runs/{run_id}/cancel")
    assert answer.status_code == 200
    assert answer.json()["status"] == "CANCELLING"
    await poll(lambda: _noticed_cancel(ready_worker, run_id), 15, "the worker to notice")
    release.touch()  # the running task cannot be interrupted: let it return
    final = await wait_status(client, run_id, TERMINAL_STATUSES)
    assert final["status"] == "CANCELLED", final
    assert final["tasks"] == {
        "append_marker": "SUCCEEDED",
        "wait_for_file": "SUCCEEDED",
        "nap": "CANCELLED",
    }
    assert final["task_records"]["nap"]["state"] == "CANCELLED"
    assert final["cancel_requested_at"] == answer.json()["cancel_requested_at"]
    await wait_until(lambda: _nothing_queued(nc, lc_settings), 15, "the job to be ACKed")


async def _nothing_queued(nc, settings) -> bool:
    return await _queued(nc, settings, "default") == 0


async def test_cancel_during_the_last_task_converges_instead_of_staying_cancelling(
    client, ready_worker, tmp_path
):
    release = tmp_path / "release"
    run_id = await submit(
        client, "marker_wait", params={"marker": str(tmp_path / "m"), "release": str(release)}
    )
    await wait_tasks(client, run_id, {"append_marker": "SUCCEEDED", "wait_for_file": "RUNNING"})
    assert (await client.post(f"/runs/{run_id}/cancel")).json()["status"] == "CANCELLING"
    await poll(lambda: _noticed_cancel(ready_worker, run_id), 15, "the worker to notice")
    release.touch()
    final = await wait_status(client, run_id, TERMINAL_STATUSES)
    # every task succeeded: the flow completed although a cancel was requested
    assert final["status"] == "COMPLETED", final
    assert set(final["tasks"].values()) == {"SUCCEEDED"}
    assert final["cancel_requested_at"] > 0


async def test_a_task_that_ignores_cancel_is_stopped_hard_after_the_grace_period(
    client, nc, lc_settings, tmp_path
):
    tag = _tag("stubborn")
    grace = 1.0
    stubborn = WorkerProcess(
        lc_settings, tmp_path, "--tags", tag, env={"PYOCO_CANCEL_GRACE_PERIOD_SEC": str(grace)}
    )
    try:
        await stubborn.wait_ready(nc.jetstream(), lc_settings)
        marker = tmp_path / "pid"
        params = {"release": str(tmp_path / "never"), "marker": str(marker)}
        run_id = await submit(client, "stubborn", params=params, tag=tag)
        await wait_tasks(client, run_id, {"ignore_cancel": "RUNNING"})
        await poll(marker.exists, 10, "the task to start")
        execution_pid = int(marker.read_text())

        requested = time.monotonic()
        assert (await client.post(f"/runs/{run_id}/cancel")).json()["status"] == "CANCELLING"
        final = await wait_status(client, run_id, TERMINAL_STATUSES, timeout=30)
        elapsed = time.monotonic() - requested
        assert final["status"] == "CANCELLED", final
        assert elapsed >= grace, "stopped before the grace period was over"
        assert final["tasks"] == {"ignore_cancel": "CANCELLED", "nap": "CANCELLED"}
        assert "stopped hard" in final["task_records"]["ignore_cancel"]["error"]
        await poll(lambda: not alive(execution_pid), 10, "the killed process to be gone")
        # the killed execution process was replaced: the worker still runs flows
        again = await submit(client, "add", params={"x": 1}, tag=tag)
        assert (await wait_status(client, again, TERMINAL_STATUSES))["status"] == "COMPLETED"
    finally:
        stubborn.stop()


async def test_repeated_cancel_is_idempotent(client, ready_worker, tmp_path):
    missing = await client.post(f"/runs/{uuid.uuid4()}/cancel")
    assert missing.status_code == 404 and missing.json()["err_id"] == "ERR-PYOCO-0005"

    pending = await submit(client, "noop", tag=_tag("idle"))
    first = (await client.post(f"/runs/{pending}/cancel")).json()
    second = (await client.post(f"/runs/{pending}/cancel")).json()
    assert first["status"] == second["status"] == "CANCELLED"
    assert first == second, "a repeated cancel changed the terminal snapshot"

    release = tmp_path / "release"
    running = await submit(
        client, "marker_wait", params={"marker": str(tmp_path / "m"), "release": str(release)}
    )
    await wait_tasks(client, running, {"wait_for_file": "RUNNING"})
    once = (await client.post(f"/runs/{running}/cancel")).json()
    twice = (await client.post(f"/runs/{running}/cancel")).json()
    assert once["status"] == twice["status"] == "CANCELLING"
    assert once["cancel_requested_at"] == twice["cancel_requested_at"]
    release.touch()
    final = await wait_status(client, running, TERMINAL_STATUSES)
    again = (await client.post(f"/runs/{running}/cancel")).json()
    assert again["status"] == final["status"]
    assert again["updated_at"] == final["updated_at"]


async def test_fifty_cancels_racing_a_workers_writes_all_converge(
    client, nc, lc_settings, ready_worker
):
    """Half the cancels land at random times (mostly on PENDING runs), the other half at a
    random moment after the run was seen RUNNING — during the worker's claim, progress and
    heartbeat writes, during the last task, or after the run ended."""
    chooser = random.Random(5)
    run_ids = [await submit(client, "steps", params={"step_seconds": 0.15}) for _ in range(50)]

    async def cancel(run_id: str) -> str:
        answer = await client.post(f"/runs/{run_id}/cancel")
        assert answer.status_code == 200, answer.text
        return answer.json()["status"]

    async def cancel_at_random(run_id: str) -> str:
        await asyncio.sleep(chooser.uniform(0, 1.0))
        return await cancel(run_id)

    async def cancel_while_running(run_id: str) -> str:
        async with client.stream("GET", f"/runs/{run_id}/watch") as response:
            async for event in sse_events(response):
                if event.event == "snapshot" and event.data["status"] != "PENDING":
                    break
        await asyncio.sleep(chooser.uniform(0, 0.5))
        return await cancel(run_id)

    answers = await asyncio.gather(
        *(
            (cancel_at_random if index % 2 == 0 else cancel_while_running)(run_id)
            for index, run_id in enumerate(run_ids)
        )
    )
    assert set(answers) <= {"CANCELLED", "CANCELLING", "COMPLETED"}, answers
    assert "CANCELLING" in answers, "no cancel hit a running flow"
    finals = [await wait_status(client, r, TERMINAL_STATUSES, timeout=60) for r in run_ids]
    for answer, final in zip(answers, finals, strict=True):
        tasks = set(final["tasks"].values())
        if final["status"] == "COMPLETED":
            assert answer in ("CANCELLING", "COMPLETED") and tasks == {"SUCCEEDED"}, final
        else:
            assert final["status"] == "CANCELLED", final
            assert tasks <= {"SUCCEEDED", "CANCELLED"}, final
            assert answer in ("CANCELLED", "CANCELLING")
    await wait_until(lambda: _nothing_queued(nc, lc_settings), 30, "every ACK")


async def test_cli_cancel_waits_for_the_run_to_end(client, gateway, ready_worker, tmp_path):
    release = tmp_path / "release"
    params = {"marker": str(tmp_path / "m"), "release": str(release), "seconds": 0.01}
    run_id = await submit(client, "marker_wait_nap", params=params)
    await wait_tasks(client, run_id, {"wait_for_file": "RUNNING"})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pyoco_server.cli.client",
        "--server",
        gateway.url,
        "cancel",
        "--run-id",
        run_id,
        "--wait",
        "--timeout",
        "60",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    await wait_status(client, run_id, {"CANCELLING"})
    await poll(lambda: _noticed_cancel(ready_worker, run_id), 15, "the worker to notice")
    release.touch()
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    printed = json.loads(out.decode().strip().splitlines()[-1])
    assert printed["run_id"] == run_id and printed["status"] == "CANCELLED"

    unknown = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pyoco_server.cli.client",
        "--server",
        gateway.url,
        "cancel",
        "--run-id",
        str(uuid.uuid4()),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(unknown.communicate(), 30)
    assert unknown.returncode == 1
    assert "ERR-PYOCO-0005" in err.decode()
