"""GET /runs/activity: runs finished per minute by status (per tenant) and queue depth per
tag, the figures behind the dashboard's charts."""

from __future__ import annotations

from gwtools import TENANT_HEADER, FakeTenancy, assert_error, start_gateway
from test_retention import put_run, runs_bucket


async def test_finished_runs_per_minute_by_status_and_tenant(nc, gateway_settings):
    kv = await runs_bucket(nc, gateway_settings)
    for n in range(3):
        await put_run(kv, f"acme-{n}", "COMPLETED", 0, tenant_id="acme")
    await put_run(kv, "acme-failed", "FAILED", 0, tenant_id="acme")
    await put_run(kv, "acme-old", "FAILED", 3 * 3600, tenant_id="acme")  # outside the hour
    await put_run(kv, "acme-waiting", "PENDING", 0, tenant_id="acme")
    await put_run(kv, "globex-0", "CANCELLED", 0, tenant_id="globex")
    async with start_gateway(gateway_settings, middleware=[FakeTenancy()]) as gateway:
        answer = await gateway.simulate_get("/runs/activity", headers={TENANT_HEADER: "acme"})
        assert answer.status_code == 200, answer.text
        body = answer.json
        assert (body["window"], body["minutes"], body["step_sec"]) == ("hour", 60, 60)
        finished = body["finished"]
        assert set(finished) == {"COMPLETED", "FAILED", "CANCELLED"}
        assert all(len(series) == 60 for series in finished.values())
        assert sum(finished["COMPLETED"]) == 3 and sum(finished["COMPLETED"][-3:]) == 3
        assert sum(finished["FAILED"]) == 1 and sum(finished["CANCELLED"]) == 0

        # a run reopened and finished again counts again; a rewrite of a finished run does not
        # (each write read by the index before the next: a request catches it up)
        for status in ("PENDING", "COMPLETED", "COMPLETED"):
            await put_run(kv, "acme-failed", status, 0, tenant_id="acme")
            await gateway.simulate_get("/runs")
        day = (
            await gateway.simulate_get(
                "/runs/activity", params={"window": "day"}, headers={TENANT_HEADER: "acme"}
            )
        ).json
        assert day["minutes"] == 1440 and len(day["finished"]["FAILED"]) == 1440
        assert sum(day["finished"]["COMPLETED"]) == 4 and sum(day["finished"]["FAILED"]) == 2

        everyone = (await gateway.simulate_get("/runs/activity")).json["finished"]
        assert sum(everyone["CANCELLED"]) == 1 and sum(everyone["COMPLETED"]) == 4
        nobody = (
            await gateway.simulate_get("/runs/activity", headers={TENANT_HEADER: "initech"})
        ).json
        assert sum(map(sum, nobody["finished"].values())) == 0

        for bad in ({"window": "week"}, {"window": ["hour", "day"]}):
            assert_error(
                await gateway.simulate_get("/runs/activity", params=bad), 422, "ERR-PYOCO-0002"
            )


async def test_queue_depth_per_tag_is_sampled(nc, gateway_settings):
    async with start_gateway(gateway_settings, middleware=[FakeTenancy()]) as gateway:
        empty = (await gateway.simulate_get("/runs/activity")).json
        assert sum(map(sum, empty["finished"].values())) == 0
        for tag in ("gpu", "gpu", "cpu"):
            answer = await gateway.simulate_post("/runs", json={"flow_name": "f", "tag": tag})
            assert answer.status_code == 200
        assert await gateway.app.queue_sampler.sample_once() == {"gpu": 2, "cpu": 1}
        depth = (await gateway.simulate_get("/runs/activity")).json["queue_depth"]
        assert list(depth) == ["cpu", "gpu"]
        assert depth["gpu"][-1] == 2 and depth["cpu"][-1] == 1
        assert depth["gpu"][0] is None  # no sample that minute
