"""Idempotency-Key on POST /runs and POST /runs/yaml: duplicates collapse to one run."""

from __future__ import annotations

import asyncio

from gwtools import TENANT_HEADER, assert_error, stored_jobs, stored_run_ids

KEY = {"Idempotency-Key": "order-42"}


async def test_parallel_duplicates_create_exactly_one_run(gateway, nc, gateway_settings):
    body = {"flow_name": "demo", "params": {"n": 1}}
    results = await asyncio.gather(
        *(gateway.simulate_post("/runs", json=body, headers=KEY) for _ in range(12))
    )
    assert all(result.status_code == 200 for result in results), [r.text for r in results]
    run_ids = {result.json["run_id"] for result in results}
    assert len(run_ids) == 1
    replays = [r for r in results if r.headers.get("idempotent-replayed") == "true"]
    assert len(replays) == 11
    assert len(await stored_jobs(nc, gateway_settings)) == 1
    assert await stored_run_ids(nc, gateway_settings) == list(run_ids)

    later = await gateway.simulate_post("/runs", json=body, headers=KEY)
    assert later.json["run_id"] in run_ids


async def test_same_key_with_another_body_is_refused(gateway):
    first = await gateway.simulate_post("/runs", json={"flow_name": "a"}, headers=KEY)
    assert first.status_code == 200
    other = await gateway.simulate_post("/runs", json={"flow_name": "b"}, headers=KEY)
    body = assert_error(other, 422, "ERR-PYOCO-0002")
    assert body["errors"][0]["field"] == "Idempotency-Key"


async def test_keys_are_scoped_per_tenant(gateway):
    body = {"flow_name": "a"}
    acme = await gateway.simulate_post("/runs", json=body, headers={**KEY, TENANT_HEADER: "acme"})
    globex = await gateway.simulate_post(
        "/runs", json=body, headers={**KEY, TENANT_HEADER: "globex"}
    )
    assert acme.json["run_id"] != globex.json["run_id"]


async def test_a_failed_submit_releases_the_key(gateway, nc, gateway_settings):
    js = nc.jetstream()
    info = await js.stream_info(gateway_settings.work_stream)
    original = info.config.subjects
    info.config.subjects = ["elsewhere.>"]
    await js.update_stream(info.config)
    try:
        failed = await gateway.simulate_post("/runs", json={"flow_name": "a"}, headers=KEY)
        assert_error(failed, 503, "ERR-PYOCO-0003")
    finally:
        info.config.subjects = original
        await js.update_stream(info.config)
    retried = await gateway.simulate_post("/runs", json={"flow_name": "a"}, headers=KEY)
    assert retried.status_code == 200
    assert "idempotent-replayed" not in retried.headers
    assert await stored_run_ids(nc, gateway_settings) == [retried.json["run_id"]]


async def test_invalid_keys_are_422(gateway):
    for key in ("", "x" * 256, "tab\there"):
        result = await gateway.simulate_post(
            "/runs", json={"flow_name": "a"}, headers={"Idempotency-Key": key}
        )
        assert_error(result, 422, "ERR-PYOCO-0002")


async def test_a_claim_still_pending_is_409_and_a_stale_one_is_taken_over(nc, gateway_settings):
    from nats.js.api import KeyValueConfig

    from pyoco_server.gateway.error_responses import ApiError
    from pyoco_server.gateway.idempotency import Claim, IdempotencyStore, Replay

    kv = await nc.jetstream().create_key_value(
        KeyValueConfig(bucket=gateway_settings.idempotency_kv_bucket, history=1)
    )
    keys = IdempotencyStore(kv, wait_sec=0.2)
    first = await keys.claim(None, "k", "fp")
    assert isinstance(first, Claim)
    try:
        await keys.claim(None, "k", "fp")
    except ApiError as error:
        assert error.status_code == 409 and error.body()["err_id"] == "ERR-PYOCO-0021"
    else:
        raise AssertionError("a duplicate of a pending claim must not pass")

    impatient = IdempotencyStore(kv, wait_sec=0.2, stale_after_sec=0)
    taken = await impatient.claim(None, "k", "fp")
    assert isinstance(taken, Claim) and taken.run_id != first.run_id
    await impatient.complete(taken)
    assert await keys.claim(None, "k", "fp") == Replay(taken.run_id)
