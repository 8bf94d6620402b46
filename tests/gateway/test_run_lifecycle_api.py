"""Cancel and watch in-process (falcon.testing): tenancy, the recorded cancel request, the
event stream of a finished run. Runs with workers are in tests/lifecycle/."""

from __future__ import annotations

import json

from gwtools import assert_error, start_gateway

from pyoco_server.api_keys import ApiKeyStore, open_auth_kv
from pyoco_server.config import Settings

PEPPER = "gateway-lifecycle-pepper-0123456789"


def _events(body: str) -> list[dict]:
    """The events of a complete ``text/event-stream`` body."""
    events = []
    for block in body.split("\n\n"):
        fields: dict = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            if name in ("event", "id", "data"):
                fields[name] = json.loads(value) if name == "data" else value
        if fields:
            events.append(fields)
    return events


async def test_cancel_and_watch_only_reach_the_callers_tenant(nc, settings: Settings):
    auth = settings.with_overrides(
        http_auth_mode="api_key", auth_pepper=PEPPER, auth_cache_ttl_sec=0
    )
    async with start_gateway(auth) as gateway:
        kv = await open_auth_kv(nc.jetstream(), auth)

        async def get_kv():
            return kv

        store = ApiKeyStore(get_kv, PEPPER.encode())
        acme_key, acme = await store.create("acme")
        globex_key, _ = await store.create("globex")
        as_acme = {"X-API-Key": acme_key}
        as_globex = {"X-API-Key": globex_key}
        submitted = await gateway.simulate_post("/runs", json={"flow_name": "f"}, headers=as_acme)
        run_id = submitted.json["run_id"]

        assert_error(await gateway.simulate_post(f"/runs/{run_id}/cancel"), 401, "ERR-PYOCO-0014")
        assert_error(await gateway.simulate_get(f"/runs/{run_id}/watch"), 401, "ERR-PYOCO-0014")
        # another tenant's run looks exactly like a missing one, and is left alone
        other = await gateway.simulate_post(f"/runs/{run_id}/cancel", headers=as_globex)
        assert_error(other, 404, "ERR-PYOCO-0005")
        watched = await gateway.simulate_get(f"/runs/{run_id}/watch", headers=as_globex)
        assert_error(watched, 404, "ERR-PYOCO-0005")
        status = (await gateway.simulate_get(f"/runs/{run_id}", headers=as_acme)).json["status"]
        assert status == "PENDING"

        cancelled = await gateway.simulate_post(f"/runs/{run_id}/cancel", headers=as_acme)
        assert cancelled.status_code == 200
        snapshot = cancelled.json
        assert snapshot["status"] == "CANCELLED"
        assert snapshot["cancel_requested_by"] == acme.key_id
        assert snapshot["tenant_id"] == "acme" and "task_records" not in snapshot

        stream = await gateway.simulate_get(f"/runs/{run_id}/watch", headers=as_acme)
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "no-cache"
        (event,) = _events(stream.text)
        assert event["event"] == "snapshot" and int(event["id"]) > 0
        assert event["data"]["status"] == "CANCELLED"
        assert event["data"]["cancel_requested_by"] == acme.key_id


async def test_watch_of_a_finished_run_is_its_snapshot_then_the_end(gateway):
    run_id = (await gateway.simulate_post("/runs", json={"flow_name": "f"})).json["run_id"]
    await gateway.simulate_post(f"/runs/{run_id}/cancel")
    plain = _events((await gateway.simulate_get(f"/runs/{run_id}/watch")).text)
    assert [e["data"]["status"] for e in plain] == ["CANCELLED"]
    assert "task_records" not in plain[0]["data"]
    records = await gateway.simulate_get(f"/runs/{run_id}/watch", params={"include": "records"})
    (event,) = _events(records.text)
    assert event["data"]["task_records"] == {}
    resumed = await gateway.simulate_get(
        f"/runs/{run_id}/watch", headers={"Last-Event-ID": event["id"]}
    )
    assert resumed.status_code == 200 and _events(resumed.text) == []
