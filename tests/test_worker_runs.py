"""A real ``pyoco-worker`` process against real JetStream: runs, dispositions, redelivery.

One worker (concurrency 2) serves the whole module; each test submits its own runs exactly
as the gateway does (PENDING snapshot, then the job message).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from worker_support import (
    YAML_FLOW,
    WorkerProcess,
    dead_letter,
    for_run,
    make_job,
    open_store,
    queue_is_empty,
    running_worker,
    submit,
    wait_for_run,
    wait_until,
    worker_record,
)

from pyoco_server.config import Settings
from pyoco_server.jobs import encode_job, pending_snapshot
from pyoco_server.testing import isolated_settings


@pytest.fixture(scope="module")
def shared_settings(nats_server) -> Settings:
    return isolated_settings(nats_server.url, yaml_allowed_callables=("tests.flows",))


@pytest.fixture(scope="module")
def worker(shared_settings: Settings, tmp_path_factory) -> Iterator[WorkerProcess]:
    directory = tmp_path_factory.mktemp("worker")
    with running_worker(shared_settings, directory, "--concurrency", "2") as process:
        yield process


@pytest.fixture
async def system(nc, shared_settings: Settings, worker: WorkerProcess):
    js, store = await open_store(nc, shared_settings)
    await worker.wait_ready(js, shared_settings)
    return js, store


async def test_json_run_completes_with_task_states_and_records(system, shared_settings, worker):
    js, store = system
    job = make_job("add", {"x": 41}, tenant_id="acme", api_key_id="key-1")
    run_id = await submit(js, store, shared_settings, job)
    snapshot = await wait_for_run(store, run_id)
    assert snapshot["status"] == "COMPLETED", snapshot
    assert snapshot["tasks"] == {"add_one": "SUCCEEDED", "to_text": "SUCCEEDED"}
    records = snapshot["task_records"]
    assert records["add_one"]["output"] == 42 and records["to_text"]["output"] == "v=42"
    assert records["add_one"]["state"] == "SUCCEEDED"
    assert snapshot["worker_id"] == worker.worker_id
    assert snapshot["start_time"] <= snapshot["end_time"]
    assert snapshot["heartbeat_at"] >= snapshot["start_time"]
    assert snapshot["error"] is None
    # fields the gateway wrote survive every worker write
    assert (snapshot["tenant_id"], snapshot["api_key_id"]) == ("acme", "key-1")
    assert snapshot["params"] == {"x": 41}
    await wait_until(lambda: queue_is_empty(js, shared_settings), what="the job to be ACKed")


async def test_yaml_run_merges_defaults_and_is_fingerprinted(system, shared_settings):
    js, store = system
    defaults_only = make_job("yaml-demo", {}, workflow_yaml=YAML_FLOW)
    overridden = make_job("yaml-demo", {"x": 10}, workflow_yaml=YAML_FLOW)
    first = await submit(js, store, shared_settings, defaults_only)
    second = await submit(js, store, shared_settings, overridden)
    snapshot = await wait_for_run(store, first)
    assert snapshot["status"] == "COMPLETED", snapshot
    assert snapshot["task_records"]["to_text"]["output"] == "v=2"
    assert snapshot["tasks"] == {"add_one": "SUCCEEDED", "to_text": "SUCCEEDED"}
    assert snapshot["workflow_yaml_sha256"] == defaults_only["workflow_yaml_sha256"]
    assert "workflow_yaml" not in snapshot
    snapshot = await wait_for_run(store, second)
    assert snapshot["task_records"]["to_text"]["output"] == "v=11"


async def test_policy_violating_yaml_is_refused_on_the_worker(system, shared_settings, tmp_path):
    js, store = system
    marker = tmp_path / "should-not-exist"
    evil = f"""\
flow:
  graph: pwn
tasks:
  pwn:
    callable: os:system
    inputs:
      command: "touch {marker}"
""".encode()
    run_id = await submit(js, store, shared_settings, make_job("evil", workflow_yaml=evil))
    snapshot = await wait_for_run(store, run_id)
    assert snapshot["status"] == "FAILED"
    assert "callable_not_allowed" in snapshot["error"] and "os:system" in snapshot["error"]
    assert not marker.exists()
    entry = await dead_letter(js, shared_settings, for_run(run_id))
    assert entry["reason"] == "policy_violation"
    await wait_until(lambda: queue_is_empty(js, shared_settings), what="the job to be ACKed")


async def test_unknown_flow_fails_with_a_complete_dead_letter(system, shared_settings, worker):
    js, store = system
    job = make_job("no-such-flow", {"k": "v"})
    run_id = await submit(js, store, shared_settings, job)
    snapshot = await wait_for_run(store, run_id)
    assert snapshot["status"] == "FAILED"
    assert "no-such-flow" in snapshot["error"] and "not found" in snapshot["error"]
    entry = await dead_letter(js, shared_settings, for_run(run_id))
    assert entry["reason"] == "flow_not_found"
    for field in ("timestamp", "error", "flow_name", "tag", "tags", "num_delivered", "subject"):
        assert entry[field], field
    assert entry["worker_id"] == worker.worker_id
    assert entry["subject"] == shared_settings.work_subject("default")
    assert entry["num_delivered"] == 1
    assert entry["job"] == job
    assert entry["err_id"] == "ERR-PYOCO-0006"


async def test_raising_task_fails_the_run_with_its_error(system, shared_settings):
    js, store = system
    run_id = await submit(js, store, shared_settings, make_job("boom"))
    snapshot = await wait_for_run(store, run_id)
    assert snapshot["status"] == "FAILED"
    assert snapshot["error"] == "task 'boom' failed: RuntimeError: task exploded on purpose"
    assert snapshot["tasks"] == {"boom": "FAILED"}
    record = snapshot["task_records"]["boom"]
    assert record["error"] == "task exploded on purpose"
    assert "RuntimeError" in record["traceback"]
    entry = await dead_letter(js, shared_settings, for_run(run_id))
    assert entry["reason"] == "execution_error"


async def test_invalid_jobs_are_terminated_into_the_dlq(system, shared_settings):
    js, store = system
    subject = shared_settings.work_subject("default")
    garbage = f"not json {uuid.uuid4()}".encode()
    await js.publish(subject, garbage)
    entry = await dead_letter(js, shared_settings, lambda e: e.get("payload") == garbage.decode())
    assert entry["reason"] == "invalid_job" and entry["run_id"] is None
    assert "not JSON" in entry["error"]

    # run_id known but no flow_name: the run's snapshot is marked FAILED too
    job = make_job("add")
    await store.create(pending_snapshot(job), job)
    broken = {key: value for key, value in job.items() if key != "flow_name"}
    await js.publish(subject, json.dumps(broken).encode())
    snapshot = await wait_for_run(store, job["run_id"])
    assert snapshot["status"] == "FAILED" and "flow_name" in snapshot["error"]
    entry = await dead_letter(js, shared_settings, for_run(job["run_id"]))
    assert entry["reason"] == "invalid_job"
    await wait_until(lambda: queue_is_empty(js, shared_settings), what="TERMed jobs to leave")


async def test_redelivered_job_of_a_completed_run_is_not_executed_again(
    system, shared_settings, worker, tmp_path
):
    js, store = system
    marker = tmp_path / "runs.txt"
    job = make_job("marker", {"marker": str(marker)})
    run_id = await submit(js, store, shared_settings, job)
    assert (await wait_for_run(store, run_id))["status"] == "COMPLETED"
    assert len(marker.read_text().splitlines()) == 1
    _, revision = await store.get(run_id)

    # the same job again, as JetStream redelivers it when an ACK got lost
    await js.publish(
        shared_settings.work_subject("default"),
        encode_job(job),
        headers={"Nats-Msg-Id": f"redelivery-{run_id}"},
    )

    def skipped() -> bool:
        return any(
            e.get("event") == "run_already_terminal" and e.get("run_id") == run_id
            for e in worker.log_events()
        )

    async def acked() -> bool:
        return skipped() and await queue_is_empty(js, shared_settings)

    await wait_until(acked, what="the redelivered job to be ACKed")
    assert len(marker.read_text().splitlines()) == 1, "the flow ran again"
    assert (await store.get(run_id))[1] == revision, "the terminal snapshot was rewritten"


@pytest.mark.parametrize("gateway_status", ["CANCELLED", "CANCELLING"])
async def test_cancelled_run_is_not_executed(system, shared_settings, tmp_path, gateway_status):
    js, store = system
    marker = tmp_path / "runs.txt"
    job = make_job("marker", {"marker": str(marker)})
    await store.create(pending_snapshot(job), job)
    await store.update(job["run_id"], lambda s: {**s, "status": gateway_status}, "cancelled")
    await js.publish(shared_settings.work_subject("default"), encode_job(job))
    await wait_until(lambda: queue_is_empty(js, shared_settings), what="the job to be ACKed")
    snapshot = await wait_for_run(store, job["run_id"])
    assert snapshot["status"] == "CANCELLED"
    assert not marker.exists()


async def test_progress_is_visible_while_a_run_executes(system, shared_settings, worker, tmp_path):
    js, store = system
    release = tmp_path / "release"
    job = make_job("marker_wait", {"marker": str(tmp_path / "m"), "release": str(release)})
    run_id = await submit(js, store, shared_settings, job)

    async def midway():
        snapshot, _ = await store.get(run_id)
        tasks = snapshot.get("tasks") or {}
        if tasks.get("append_marker") == "SUCCEEDED" and tasks.get("wait_for_file") == "RUNNING":
            return snapshot
        return None

    first = await wait_until(midway, what="task progress in the snapshot")
    assert first["status"] == "RUNNING" and first["worker_id"] == worker.worker_id

    async def listed():  # the worker record is rewritten at most every 0.25 s
        record = await worker_record(js, shared_settings, worker.worker_id)
        return record["state"] == "RUNNING" and run_id in record["current_run_ids"]

    await wait_until(listed, what="the run in the worker record")

    async def heartbeat_moved():
        snapshot, _ = await store.get(run_id)
        return snapshot["heartbeat_at"] > first["heartbeat_at"]

    await wait_until(heartbeat_moved, what="a run heartbeat")
    release.touch()
    assert (await wait_for_run(store, run_id))["status"] == "COMPLETED"


async def test_gateway_cancel_during_a_run_is_kept_and_honoured(system, shared_settings, tmp_path):
    js, store = system
    release = tmp_path / "release"
    params = {"marker": str(tmp_path / "m"), "release": str(release), "seconds": 0.01}
    run_id = await submit(js, store, shared_settings, make_job("marker_wait_nap", params))
    await wait_for_run(store, run_id, {"RUNNING"})

    def request_cancel(snapshot):
        snapshot.update(status="CANCELLING", cancel_requested_at=1.0)
        return snapshot

    await store.update(run_id, request_cancel, "cancelled")

    async def heartbeat_after_cancel():
        snapshot, _ = await store.get(run_id)
        return snapshot if snapshot["heartbeat_at"] > snapshot["updated_at"] - 0.001 else None

    # the worker keeps writing heartbeats, and never turns CANCELLING back into RUNNING
    for _ in range(3):
        snapshot, _ = await store.get(run_id)
        assert snapshot["status"] == "CANCELLING"
        await wait_until(heartbeat_after_cancel, what="a heartbeat")
    release.touch()
    snapshot = await wait_for_run(store, run_id)
    assert snapshot["status"] == "CANCELLED", snapshot
    assert snapshot["tasks"]["nap"] == "CANCELLED"
    assert snapshot["cancel_requested_at"] == 1.0


async def test_concurrent_runs_overlap_and_leave_no_artifacts(system, shared_settings, worker):
    js, store = system
    naps = [make_job("nap", {"seconds": 1.5}) for _ in range(2)]
    ids = [await submit(js, store, shared_settings, job) for job in naps]

    async def both_running():
        statuses = [(await store.get(run_id))[0]["status"] for run_id in ids]
        return statuses == ["RUNNING", "RUNNING"]

    await wait_until(both_running, what="two runs at once")
    snapshots = [await wait_for_run(store, run_id) for run_id in ids]
    assert all(s["status"] == "COMPLETED" for s in snapshots)
    first, second = sorted(snapshots, key=lambda s: s["start_time"])
    assert second["start_time"] < first["end_time"], "the runs did not overlap"

    run_id = await submit(js, store, shared_settings, make_job("chatty"))
    snapshot = await wait_for_run(store, run_id)
    run_dir = Path(snapshot["task_records"]["chatty"]["output"])
    worker_cwd = worker.log_path.parent
    assert run_dir != worker_cwd and not any(run_dir.glob("*/*")), "a run left files behind"
    assert not (worker_cwd / "artifacts").exists()
    assert "hello from a task" in worker.log()


@pytest.mark.parametrize("concurrency", ["1", "2"])
async def test_every_run_starts_in_an_empty_directory(nc, nats_server, tmp_path, concurrency):
    settings = isolated_settings(nats_server.url)
    js, store = await open_store(nc, settings)
    process = WorkerProcess(settings, tmp_path, "--concurrency", concurrency)
    try:
        await process.wait_ready(js, settings)
        outputs = []
        for _ in range(4):  # every execution process runs at least twice
            run_id = await submit(js, store, settings, make_job("litter"))
            snapshot = await wait_for_run(store, run_id)
            assert snapshot["status"] == "COMPLETED", snapshot
            outputs.append(snapshot["task_records"]["litter"]["output"])
    finally:
        process.stop()
    for output in outputs:
        # what the run before it in the same process left is gone; pyoco's artifacts/ is empty
        assert output["found"] in ([], ["artifacts"]), output
        assert output["artifacts"] in (None, []), output
    assert len({output["cwd"] for output in outputs}) <= int(concurrency) + 1
