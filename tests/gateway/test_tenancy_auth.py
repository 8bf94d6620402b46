"""With real API keys: runs are stamped with the caller's tenant and key, and isolated."""

from __future__ import annotations

import json

from gwtools import assert_error, start_gateway, stored_jobs

from pyoco_server.api_keys import ApiKeyStore, open_auth_kv
from pyoco_server.config import Settings

PEPPER = "gateway-tenancy-pepper-0123456789"


async def test_api_keys_scope_every_run_endpoint_to_the_tenant(nc, settings: Settings):
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

        assert_error(
            await gateway.simulate_post("/runs", json={"flow_name": "f"}), 401, "ERR-PYOCO-0014"
        )
        submitted = await gateway.simulate_post("/runs", json={"flow_name": "f"}, headers=as_acme)
        run_id = submitted.json["run_id"]
        (job,) = [json.loads(message.data) for message in await stored_jobs(nc, auth)]
        assert (job["tenant_id"], job["api_key_id"]) == ("acme", acme.key_id)

        mine = await gateway.simulate_get(f"/runs/{run_id}", headers=as_acme)
        assert (mine.json["tenant_id"], mine.json["api_key_id"]) == ("acme", acme.key_id)
        other = await gateway.simulate_get(f"/runs/{run_id}", headers=as_globex)
        assert_error(other, 404, "ERR-PYOCO-0005")
        assert (await gateway.simulate_get("/runs", headers=as_globex)).json == []
        listed = await gateway.simulate_get("/runs", headers=as_acme)
        assert [run["run_id"] for run in listed.json] == [run_id]
