"""The dead-letter API on the real gateway app and real JetStream: list, show, redrive,
delete, tenancy, and the cost of a listing."""

from __future__ import annotations

import asyncio
import json
import time

from gwtools import TENANT_HEADER, assert_error, stored_jobs
from worker_support import YAML_FLOW

from pyoco_server.gateway.dead_letters import DeadLetterQueue
from pyoco_server.gateway.tenancy import Caller
from pyoco_server.jobs import build_job, without_pending
from pyoco_server.plugins import build_plugin_manager
from pyoco_server.run_store import RunStore


async def publish_dead_letter(js, settings, tag: str, **fields) -> int:
    """A dead letter as a worker's disposition publishes it; returns its ``seq``."""
    entry = {
        "timestamp": time.time(),
        "reason": "execution_error",
        "error": "RuntimeError: boom",
        "tag": tag,
        "tags": [tag],
        "worker_id": "w-1",
        "num_delivered": 1,
        "max_deliver": 20,
        "attempt": 1,
        **fields,
    }
    ack = await js.publish(settings.dlq_subject(tag), json.dumps(entry).encode())
    return ack.seq


async def failed_run(gateway, nc, settings, headers=None, **body) -> tuple[str, dict]:
    """Submit a run through the API, end it FAILED as a worker would; returns (run_id, job),
    the job as a worker's dead letter carries it."""
    body = {"flow_name": "flaky", "params": {"n": 1}, **body}
    answer = await gateway.simulate_post("/runs", json=body, headers=headers or {})
    assert answer.status_code == 200, answer.text
    run_id = answer.json["run_id"]
    job = without_pending(json.loads((await stored_jobs(nc, settings))[-1].data))
    assert job["run_id"] == run_id
    store = await run_store(nc, settings)
    await store.update(
        run_id,
        lambda s: {**s, "status": "FAILED", "error": "RuntimeError: boom", "worker_id": "w-1"},
        "failed",
    )
    return run_id, job


async def run_store(nc, settings) -> RunStore:
    kv = await nc.jetstream().key_value(settings.runs_kv_bucket)
    return RunStore(kv, build_plugin_manager(plugins=[]), settings)


async def test_empty_dlq_lists_nothing(gateway):
    result = await gateway.simulate_get("/dlq")
    assert result.status_code == 200 and result.json == []
    assert "Next-Cursor" not in result.headers


async def test_listing_is_newest_first_and_filters(gateway, nc, gateway_settings):
    js = nc.jetstream()
    seqs = []
    for index, (tag, reason) in enumerate(
        [("cpu", "execution_error"), ("gpu", "flow_not_found"), ("cpu", "lost"), ("gpu", "lost")]
    ):
        seqs.append(
            await publish_dead_letter(
                js, gateway_settings, tag, reason=reason, run_id=f"run-{index}", flow_name="f"
            )
        )
    listed = (await gateway.simulate_get("/dlq")).json
    assert [entry["seq"] for entry in listed] == list(reversed(seqs))
    first = listed[0]
    for field in ("reason", "error", "run_id", "flow_name", "tag", "num_delivered", "timestamp"):
        assert field in first
    assert first["has_job"] is False and "job" not in first

    by_tag = (await gateway.simulate_get("/dlq", params={"tag": "cpu"})).json
    assert [entry["run_id"] for entry in by_tag] == ["run-2", "run-0"]
    by_reason = (await gateway.simulate_get("/dlq", params={"reason": "lost"})).json
    assert [entry["run_id"] for entry in by_reason] == ["run-3", "run-2"]
    by_run = (await gateway.simulate_get("/dlq", params={"run_id": "run-1"})).json
    assert [entry["reason"] for entry in by_run] == ["flow_not_found"]

    page = await gateway.simulate_get("/dlq", params={"limit": 3})
    assert len(page.json) == 3
    cursor = page.headers["Next-Cursor"]
    rest = (await gateway.simulate_get("/dlq", params={"limit": 3, "before": cursor})).json
    assert [entry["seq"] for entry in rest] == [seqs[0]]

    for params in ({"limit": 0}, {"limit": 201}, {"tag": "a.b"}, {"before": "x"}):
        assert_error(await gateway.simulate_get("/dlq", params=params), 422, "ERR-PYOCO-0002")


async def test_a_listing_reads_about_limit_messages_whatever_the_dlq_size(nc, settings):
    js = nc.jetstream()
    from pyoco_server.nats_client import ensure_resources

    await ensure_resources(js, settings)
    payload = json.dumps({"reason": "execution_error", "run_id": "r", "tag": "t"}).encode()
    await asyncio.gather(*(js.publish(settings.dlq_subject("t"), payload) for _ in range(3000)))
    queue = DeadLetterQueue(js, settings)
    page = await queue.page(Caller(), limit=10)
    assert len(page.entries) == 10 and page.scanned <= 64
    # a filter that matches nothing stops at the scan cap and says where to continue
    capped = DeadLetterQueue(js, settings.with_overrides(dlq_list_scan_max=500))
    page = await capped.page(Caller(), reason="never", limit=10)
    assert page.entries == [] and page.scanned == 500
    assert page.next_cursor == 3000 - 500 + 1


async def test_an_entry_shows_its_job_and_404s_otherwise(gateway, nc, gateway_settings):
    js = nc.jetstream()
    job = build_job("r-1", "f", "default", ["default"], {"x": 1})
    seq = await publish_dead_letter(js, gateway_settings, "default", run_id="r-1", job=job)
    entry = (await gateway.simulate_get(f"/dlq/{seq}")).json
    assert entry["seq"] == seq and entry["job"] == job and entry["stored_at"] > 0
    assert (await gateway.simulate_get("/dlq")).json[0]["has_job"] is True
    assert_error(await gateway.simulate_get(f"/dlq/{seq + 100}"), 404, "ERR-PYOCO-0028")
    assert_error(await gateway.simulate_get("/dlq/abc"), 422, "ERR-PYOCO-0002")
    # garbage on the DLQ subject never breaks the API
    bad = (await js.publish(gateway_settings.dlq_subject("default"), b"\xff not json")).seq
    shown = (await gateway.simulate_get(f"/dlq/{bad}")).json
    assert shown["invalid"] is True and shown["tag"] == "default"
    assert (await gateway.simulate_get("/dlq")).json[0]["seq"] == bad


async def test_redrive_reopens_the_run_as_a_new_attempt_once(gateway, nc, gateway_settings):
    js = nc.jetstream()
    run_id, job = await failed_run(gateway, nc, gateway_settings)
    seq = await publish_dead_letter(js, gateway_settings, "default", run_id=run_id, job=job)

    answer = await gateway.simulate_post(f"/dlq/{seq}/redrive")
    assert answer.status_code == 200, answer.text
    assert answer.json["run_id"] == run_id and answer.json["status"] == "PENDING"
    assert answer.json["attempt"] == 2 and answer.json["new_run"] is False

    snapshot = (await gateway.simulate_get(f"/runs/{run_id}")).json
    assert snapshot["status"] == "PENDING" and snapshot["attempt"] == 2
    assert snapshot["error"] is None and snapshot["worker_id"] is None
    [ended] = snapshot["attempts"]
    assert ended["attempt"] == 1 and ended["status"] == "FAILED"
    assert ended["error"] == "RuntimeError: boom" and ended["dlq_seq"] == seq
    queued = (await stored_jobs(nc, gateway_settings))[-1]
    assert json.loads(queued.data) == {**job, "attempt": 2}
    assert queued.headers["Nats-Msg-Id"] == f"{run_id}:2"

    # the entry is gone from the DLQ, and a second redrive is refused, not repeated
    assert_error(await gateway.simulate_get(f"/dlq/{seq}"), 404, "ERR-PYOCO-0028")
    again = assert_error(await gateway.simulate_post(f"/dlq/{seq}/redrive"), 409, "ERR-PYOCO-0029")
    assert again["reason"] == "already_redriven" and again["run_id"] == run_id
    assert len(await stored_jobs(nc, gateway_settings)) == 2

    # another dead letter of the same run cannot redrive it while it is not finished
    other = await publish_dead_letter(js, gateway_settings, "default", run_id=run_id, job=job)
    refused = assert_error(
        await gateway.simulate_post(f"/dlq/{other}/redrive"), 409, "ERR-PYOCO-0029"
    )
    assert refused["reason"] == "run_not_terminal" and refused["status"] == "PENDING"
    assert (await gateway.simulate_get(f"/dlq/{other}")).status_code == 200


async def test_concurrent_redrives_of_one_entry_queue_the_job_once(gateway, nc, gateway_settings):
    js = nc.jetstream()
    run_id, job = await failed_run(gateway, nc, gateway_settings)
    seq = await publish_dead_letter(js, gateway_settings, "default", run_id=run_id, job=job)
    answers = await asyncio.gather(
        *(gateway.simulate_post(f"/dlq/{seq}/redrive") for _ in range(6))
    )
    assert sorted(answer.status_code for answer in answers) == [200] + [409] * 5
    assert len(await stored_jobs(nc, gateway_settings)) == 2
    assert (await gateway.simulate_get(f"/runs/{run_id}")).json["attempt"] == 2


async def test_redrive_as_a_new_run_carries_the_yaml_again(gateway, nc, gateway_settings):
    from gwtools import multipart

    answer = await gateway.simulate_post(
        "/runs/yaml", **multipart(YAML_FLOW, flow_name="main", tag="yaml")
    )
    run_id = answer.json["run_id"]
    # as a worker's dead letter carries it
    job = without_pending(json.loads((await stored_jobs(nc, gateway_settings))[-1].data))
    assert job["workflow_yaml"] == YAML_FLOW.decode()
    store = await run_store(nc, gateway_settings)
    await store.update(run_id, lambda s: {**s, "status": "FAILED", "error": "x"}, "failed")
    js = nc.jetstream()
    seq = await publish_dead_letter(js, gateway_settings, "yaml", run_id=run_id, job=job)

    fresh = await gateway.simulate_post(f"/dlq/{seq}/redrive", params={"new_run": "true"})
    assert fresh.status_code == 200, fresh.text
    new_id = fresh.json["run_id"]
    assert new_id != run_id and fresh.json["new_run"] is True
    assert fresh.json["redriven_from"] == run_id and fresh.json["attempt"] == 1
    queued = json.loads((await stored_jobs(nc, gateway_settings))[-1].data)
    assert queued["run_id"] == new_id and queued["workflow_yaml"] == YAML_FLOW.decode()
    snapshot = (await gateway.simulate_get(f"/runs/{new_id}")).json
    assert snapshot["status"] == "PENDING" and snapshot["tag"] == "yaml"
    assert snapshot["workflow_yaml_sha256"] == job["workflow_yaml_sha256"]
    # the original run stays as it was
    assert (await gateway.simulate_get(f"/runs/{run_id}")).json["status"] == "FAILED"

    # redriven as a new attempt of its run, the YAML rides in the job again too
    again = await publish_dead_letter(js, gateway_settings, "yaml", run_id=run_id, job=job)
    same = await gateway.simulate_post(f"/dlq/{again}/redrive")
    assert same.status_code == 200 and same.json["attempt"] == 2
    assert json.loads((await stored_jobs(nc, gateway_settings))[-1].data) == {**job, "attempt": 2}


async def test_yaml_redrive_is_checked_by_the_policy_again(nc, settings, gateway_settings):
    from gwtools import FakeTenancy, start_gateway

    # the YAML was accepted when submitted; the policy has narrowed since
    async with start_gateway(gateway_settings, middleware=[FakeTenancy()]) as open_gateway:
        from gwtools import multipart

        answer = await open_gateway.simulate_post(
            "/runs/yaml", **multipart(YAML_FLOW, flow_name="main")
        )
        run_id = answer.json["run_id"]
    job = json.loads((await stored_jobs(nc, gateway_settings))[-1].data)
    store = await run_store(nc, gateway_settings)
    await store.update(run_id, lambda s: {**s, "status": "FAILED", "error": "x"}, "failed")
    seq = await publish_dead_letter(
        nc.jetstream(), gateway_settings, "default", run_id=run_id, job=job
    )
    strict = gateway_settings.with_overrides(yaml_allowed_callables=())
    async with start_gateway(strict, middleware=[FakeTenancy()]) as strict_gateway:
        refused = await strict_gateway.simulate_post(f"/dlq/{seq}/redrive")
        assert_error(refused, 422, "ERR-PYOCO-0002")
        assert (await strict_gateway.simulate_get(f"/runs/{run_id}")).json["status"] == "FAILED"
        # nothing was claimed: the entry is still there and redrivable later
        assert (await strict_gateway.simulate_get(f"/dlq/{seq}")).status_code == 200
        report = (await strict_gateway.simulate_post("/dlq/redrive")).json
        assert report["skipped"] == 1 and report["results"][0]["err_id"] == "ERR-PYOCO-0002"
        assert report["results"][0]["reason"] == "yaml_runs_disabled"


async def test_entries_without_a_job_or_run_are_refused(gateway, nc, gateway_settings):
    js = nc.jetstream()
    invalid = await publish_dead_letter(
        js, gateway_settings, "default", reason="invalid_job", payload="not json"
    )
    body = assert_error(
        await gateway.simulate_post(f"/dlq/{invalid}/redrive"), 409, "ERR-PYOCO-0029"
    )
    assert body["reason"] == "no_job"
    job = build_job("vanished-run", "f", "default", ["default"], {})
    orphan = await publish_dead_letter(
        js, gateway_settings, "default", run_id="vanished-run", job=job
    )
    body = assert_error(
        await gateway.simulate_post(f"/dlq/{orphan}/redrive"), 409, "ERR-PYOCO-0029"
    )
    assert body["reason"] == "run_missing"
    # ... but it can be queued as a fresh run
    fresh = await gateway.simulate_post(f"/dlq/{orphan}/redrive", params={"new_run": "1"})
    assert fresh.status_code == 200 and fresh.json["run_id"] != "vanished-run"


async def test_bulk_redrive_by_reason(gateway, nc, gateway_settings):
    js = nc.jetstream()
    lost = []
    for _ in range(3):
        run_id, job = await failed_run(gateway, nc, gateway_settings)
        lost.append(run_id)
        await publish_dead_letter(
            js, gateway_settings, "default", reason="lost", run_id=run_id, job=job
        )
    other_run, other_job = await failed_run(gateway, nc, gateway_settings)
    other = await publish_dead_letter(
        js, gateway_settings, "default", reason="execution_error", run_id=other_run, job=other_job
    )
    # a dead letter of a run that is running again is skipped, not an error
    running, running_job = await failed_run(gateway, nc, gateway_settings)
    store = await run_store(nc, gateway_settings)
    await store.update(running, lambda s: {**s, "status": "RUNNING"}, "x", reopen=True)
    await publish_dead_letter(
        js, gateway_settings, "default", reason="lost", run_id=running, job=running_job
    )

    report = (await gateway.simulate_post("/dlq/redrive", params={"reason": "lost"})).json
    assert report["matched"] == 4 and report["redriven"] == 3 and report["skipped"] == 1
    assert report["failed"] == 0
    skipped = next(item for item in report["results"] if item["outcome"] == "skipped")
    assert skipped["run_id"] == running and skipped["reason"] == "run_not_terminal"
    for run_id in lost:
        snapshot = (await gateway.simulate_get(f"/runs/{run_id}")).json
        assert snapshot["status"] == "PENDING" and snapshot["attempt"] == 2
    assert (await gateway.simulate_get(f"/runs/{other_run}")).json["status"] == "FAILED"
    remaining = (await gateway.simulate_get("/dlq")).json
    assert {entry["reason"] for entry in remaining} == {"execution_error", "lost"}
    assert other in {entry["seq"] for entry in remaining}
    again = (await gateway.simulate_post("/dlq/redrive", params={"reason": "lost"})).json
    assert again["redriven"] == 0 and again["skipped"] == 1


async def test_delete_removes_an_entry(gateway, nc, gateway_settings):
    seq = await publish_dead_letter(nc.jetstream(), gateway_settings, "default", run_id="r")
    deleted = await gateway.simulate_delete(f"/dlq/{seq}")
    assert deleted.status_code == 200 and deleted.json == {"seq": seq, "deleted": True}
    assert (await gateway.simulate_get("/dlq")).json == []
    assert_error(await gateway.simulate_delete(f"/dlq/{seq}"), 404, "ERR-PYOCO-0028")


async def test_another_tenants_dead_letters_are_invisible(gateway, nc, gateway_settings):
    acme = {TENANT_HEADER: "acme"}
    run_id, job = await failed_run(gateway, nc, gateway_settings, headers=acme)
    assert job["tenant_id"] == "acme"
    seq = await publish_dead_letter(
        nc.jetstream(), gateway_settings, "default", run_id=run_id, job=job, tenant_id="acme"
    )
    globex = {TENANT_HEADER: "globex"}
    assert (await gateway.simulate_get("/dlq", headers=globex)).json == []
    for method, path in (
        ("GET", f"/dlq/{seq}"),
        ("DELETE", f"/dlq/{seq}"),
        ("POST", f"/dlq/{seq}/redrive"),
    ):
        answer = await gateway.simulate_request(method, path, headers=globex)
        assert_error(answer, 404, "ERR-PYOCO-0028")
    report = (await gateway.simulate_post("/dlq/redrive", headers=globex)).json
    assert report["matched"] == 0
    assert [e["seq"] for e in (await gateway.simulate_get("/dlq", headers=acme)).json] == [seq]
    answer = await gateway.simulate_post(f"/dlq/{seq}/redrive", headers=acme)
    assert answer.status_code == 200
    # after the redrive, the other tenant still learns nothing about the entry
    assert_error(
        await gateway.simulate_post(f"/dlq/{seq}/redrive", headers=globex), 404, "ERR-PYOCO-0028"
    )
