"""POST /runs and reading runs back: happy paths, atomicity, bad input, tenancy."""

from __future__ import annotations

import json
import uuid

import pytest
from gwtools import TENANT_HEADER, assert_error, start_gateway, stored_jobs, stored_run_ids

from pyoco_server.jobs import pending_from_job


async def test_submit_stores_pending_snapshot_and_queues_one_job(gateway, nc, gateway_settings):
    result = await gateway.simulate_post(
        "/runs", json={"flow_name": "demo", "params": {"x": 1}, "tag": "gpu"}
    )
    assert result.status_code == 200, result.text
    body = result.json
    assert body["status"] == "PENDING"
    run_id = body["run_id"]
    assert uuid.UUID(run_id).version == 4

    jobs = await stored_jobs(nc, gateway_settings)
    assert len(jobs) == 1
    assert jobs[0].subject == gateway_settings.work_subject("gpu")
    job = json.loads(jobs[0].data)
    assert job["run_id"] == run_id and job["params"] == {"x": 1}
    assert job["tags"] == ["gpu"]

    run = await gateway.simulate_get(f"/runs/{run_id}")
    assert run.status_code == 200
    snapshot = run.json
    assert snapshot["status"] == "PENDING" and snapshot["flow_name"] == "demo"
    assert snapshot["tag"] == "gpu" and snapshot["params"] == {"x": 1}
    assert "task_records" not in snapshot
    assert "worker_alive" not in snapshot  # no worker yet
    full = await gateway.simulate_get(f"/runs/{run_id}", params={"include": "records"})
    assert full.json["task_records"] == {}

    tasks = await gateway.simulate_get(f"/runs/{run_id}/tasks")
    assert tasks.json == {
        "run_id": run_id,
        "flow_name": "demo",
        "status": "PENDING",
        "tasks": {},
        "task_records": {},
        "task_records_truncated": False,
    }


async def test_the_job_carries_a_message_id_so_a_retried_publish_is_dropped(
    gateway, nc, gateway_settings
):
    result = await gateway.simulate_post("/runs", json={"flow_name": "demo"})
    run_id = result.json["run_id"]
    js = nc.jetstream()
    message = await js.get_msg(gateway_settings.work_stream, seq=1)
    assert message.headers["Nats-Msg-Id"] == f"{run_id}:1"
    ack = await js.publish(
        gateway_settings.work_subject("default"),
        message.data,
        headers={"Nats-Msg-Id": f"{run_id}:1"},
    )
    assert ack.duplicate
    assert len(await stored_jobs(nc, gateway_settings)) == 1


@pytest.mark.parametrize("tenant", [None, "acme"])
async def test_the_job_tells_the_worker_the_pending_snapshot_it_can_claim_without_a_read(
    gateway, nc, gateway_settings, tenant
):
    headers = {TENANT_HEADER: tenant} if tenant else {}
    result = await gateway.simulate_post(
        "/runs", json={"flow_name": "demo", "params": {"x": [1, 2]}}, headers=headers
    )
    run_id = result.json["run_id"]
    job = json.loads((await stored_jobs(nc, gateway_settings))[0].data)
    entry = await (await nc.jetstream().key_value(gateway_settings.runs_kv_bucket)).get(run_id)
    stored = json.loads(entry.value)
    rebuilt = pending_from_job(job)
    assert rebuilt is not None
    snapshot, revision = rebuilt
    assert revision == entry.revision
    del stored["updated_at"], snapshot["updated_at"]  # restamped by every write
    assert snapshot == stored
    if tenant:
        assert (snapshot["tenant_id"], snapshot["api_key_id"]) == ("acme", "key-of-acme")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"flow_name": "f"}, ("default", ["default"])),
        ({"flow_name": "f", "tags": ["a", "b"]}, ("a", ["a", "b"])),
        ({"flow_name": "f", "tag": "b", "tags": ["a"]}, ("b", ["b", "a"])),
        ({"flow_name": "f", "tag": "a", "tags": ["a", "a"]}, ("a", ["a"])),
    ],
)
async def test_tag_defaults(gateway, body, expected):
    run_id = (await gateway.simulate_post("/runs", json=body)).json["run_id"]
    snapshot = (await gateway.simulate_get(f"/runs/{run_id}")).json
    assert (snapshot["tag"], snapshot["tags"]) == expected


@pytest.mark.parametrize(
    ("body", "content_type", "field"),
    [
        (b"{not json", "application/json", None),
        (b"", "application/json", None),
        (b'["flow_name"]', "application/json", "body"),
        (b"flow_name=x", "application/x-www-form-urlencoded", "Content-Type"),
        (b'{"flow_name": "x", "params": [1]}', "application/json", "params"),
        (b'{"flow_name": "x", "params": "a"}', "application/json", "params"),
        (b'{"params": {}}', "application/json", "flow_name"),
        (b'{"flow_name": ""}', "application/json", "flow_name"),
        (b'{"flow_name": 3}', "application/json", "flow_name"),
        (json.dumps({"flow_name": "x" * 257}).encode(), "application/json", "flow_name"),
        (b'{"flow_name": "x", "tag": "gpu.large"}', "application/json", "tag"),
        (b'{"flow_name": "x", "tag": "a b"}', "application/json", "tag"),
        (b'{"flow_name": "x", "tag": "*"}', "application/json", "tag"),
        (json.dumps({"flow_name": "x", "tag": "t" * 65}).encode(), "application/json", "tag"),
        (b'{"flow_name": "x", "tags": "a"}', "application/json", "tags"),
        (b'{"flow_name": "x", "tags": ["ok", "no.dot"]}', "application/json", "tags[1]"),
        (json.dumps({"flow_name": "x", "tags": ["a"] * 33}).encode(), "application/json", "tags"),
        (b"\xff\xfe", "application/json", None),
    ],
)
async def test_bad_submissions_are_422_and_store_nothing(
    gateway, nc, gateway_settings, body, content_type, field
):
    result = await gateway.simulate_post("/runs", body=body, headers={"Content-Type": content_type})
    error = assert_error(result, 422, "ERR-PYOCO-0002")
    if field is not None:
        assert field in [item["field"] for item in error["errors"]]
    assert await stored_jobs(nc, gateway_settings) == []
    assert await stored_run_ids(nc, gateway_settings) == []


async def test_body_over_the_cap_is_413(settings):
    async with start_gateway(settings.with_overrides(http_max_body_bytes=100)) as gateway:
        big = {"flow_name": "x", "params": {"blob": "y" * 200}}
        assert_error(await gateway.simulate_post("/runs", json=big), 413, "ERR-PYOCO-0019")
        small = await gateway.simulate_post("/runs", json={"flow_name": "x"})
        assert small.status_code == 200


async def test_unknown_run_is_404_and_odd_ids_too(gateway):
    for run_id in (str(uuid.uuid4()), "a*b", "x" * 300, "a%20b"):
        assert_error(await gateway.simulate_get(f"/runs/{run_id}"), 404, "ERR-PYOCO-0005")
        assert_error(await gateway.simulate_get(f"/runs/{run_id}/tasks"), 404, "ERR-PYOCO-0005")


async def test_unknown_include_is_422(gateway):
    run_id = (await gateway.simulate_post("/runs", json={"flow_name": "f"})).json["run_id"]
    result = await gateway.simulate_get(f"/runs/{run_id}", params={"include": "everything"})
    assert_error(result, 422, "ERR-PYOCO-0002")
    both = await gateway.simulate_get(f"/runs/{run_id}?include=records&include=full")
    assert both.status_code == 200 and "task_records" in both.json


async def test_unknown_paths_and_methods_answer_json_errors(gateway):
    missing = assert_error(await gateway.simulate_get("/nope"), 404, "ERR-PYOCO-0020")
    assert "detail" in missing
    result = await gateway.simulate_delete("/runs")
    assert_error(result, 405, "ERR-PYOCO-0020")
    assert "GET" in result.headers["allow"]


async def test_publish_failure_removes_the_snapshot_and_answers_503(gateway, nc, gateway_settings):
    js = nc.jetstream()
    info = await js.stream_info(gateway_settings.work_stream)
    original = info.config.subjects
    info.config.subjects = ["elsewhere.>"]  # the work stream no longer accepts pyoco.work.*
    await js.update_stream(info.config)
    try:
        result = await gateway.simulate_post("/runs", json={"flow_name": "demo"})
        assert_error(result, 503, "ERR-PYOCO-0003")
        assert await stored_run_ids(nc, gateway_settings) == []
        listed = await gateway.simulate_get("/runs")
        assert listed.json == []
    finally:
        info.config.subjects = original
        await js.update_stream(info.config)
    again = await gateway.simulate_post("/runs", json={"flow_name": "demo"})
    assert again.status_code == 200
    assert await stored_run_ids(nc, gateway_settings) == [again.json["run_id"]]


async def test_runs_are_stamped_and_only_visible_to_their_tenant(gateway, nc, gateway_settings):
    mine = await gateway.simulate_post(
        "/runs", json={"flow_name": "f"}, headers={TENANT_HEADER: "acme"}
    )
    run_id = mine.json["run_id"]
    job = json.loads((await stored_jobs(nc, gateway_settings))[0].data)
    assert (job["tenant_id"], job["api_key_id"]) == ("acme", "key-of-acme")

    own = await gateway.simulate_get(f"/runs/{run_id}", headers={TENANT_HEADER: "acme"})
    assert own.json["tenant_id"] == "acme" and own.json["api_key_id"] == "key-of-acme"
    for path in (f"/runs/{run_id}", f"/runs/{run_id}/tasks"):
        other = await gateway.simulate_get(path, headers={TENANT_HEADER: "globex"})
        assert_error(other, 404, "ERR-PYOCO-0005")
    theirs = await gateway.simulate_get("/runs", headers={TENANT_HEADER: "globex"})
    assert theirs.json == []
    ours = await gateway.simulate_get("/runs", headers={TENANT_HEADER: "acme"})
    assert [run["run_id"] for run in ours.json] == [run_id]
    full = await gateway.simulate_get(
        "/runs", params={"include": "full"}, headers={TENANT_HEADER: "globex"}
    )
    assert full.json == []
