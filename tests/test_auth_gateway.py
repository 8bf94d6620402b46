"""The gateway's API key middleware: 401/403/503/200, open paths, and protection by default."""

from __future__ import annotations

import asyncio
import io
import re
import time
from typing import Any

import falcon
import falcon.asgi
import falcon.inspect
import pytest
from falcon.testing import ASGIConductor

from pyoco_server.api_keys import ApiKeyStore, RecordCache, open_auth_kv
from pyoco_server.config import Settings
from pyoco_server.embedded import EmbeddedNats
from pyoco_server.gateway.app import create_app
from pyoco_server.gateway.auth_middleware import (
    OPEN_PATHS,
    AnonymousContext,
    ApiKeyAuthMiddleware,
    build_auth_middleware,
)
from pyoco_server.gateway.dashboard import PUBLIC_PATHS as DASHBOARD_PATHS
from pyoco_server.log import configure_logging
from pyoco_server.nats_client import NatsConnection
from pyoco_server.plugins import build_plugin_manager

PEPPER = "gateway-test-pepper-0123456789"
ERROR_KEYS = {"detail", "err_id", "msg_id"}


class WhoAmI:
    """Echoes the identity the middleware put on the request."""

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, **_: Any) -> None:
        resp.media = {"tenant_id": req.context.tenant_id, "api_key_id": req.context.api_key_id}


class SubmitRun:
    """A ``POST /runs`` stand-in that reads and validates its body like the real one."""

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        try:
            body = await req.get_media()
        except falcon.MediaMalformedError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("flow_name"), str):
            resp.status = falcon.HTTP_422
            resp.media = {"detail": "bad body", "err_id": "ERR-PYOCO-0002"}
            return
        resp.media = {"flow_name": body["flow_name"], "tenant_id": req.context.tenant_id}


class Health:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = {"status": "ok"}


def tiny_app(middleware: Any) -> falcon.asgi.App:
    app = falcon.asgi.App(middleware=[middleware])
    app.add_route("/health", Health())
    app.add_route("/runs", SubmitRun())
    app.add_route("/runs/{run_id}", WhoAmI())
    app.add_route("/metrics", WhoAmI())
    return app


def _request_path(template: str) -> str:
    return re.sub(r"\{[^}]*\}", "1", template)


async def routes_answering_without_key(
    app: falcon.asgi.App, open_paths: frozenset[str] = OPEN_PATHS
) -> list[str]:
    """Every ``METHOD path`` of ``app`` outside ``open_paths`` that does not answer 401 when no
    key is sent (the lead runs this against the full gateway: a new route is covered
    automatically)."""
    unprotected = []
    async with ASGIConductor(app) as conductor:
        for route in falcon.inspect.inspect_routes(app):
            path = _request_path(route.path)
            if path in open_paths:
                continue
            for method in route.methods:
                if method.internal:
                    continue
                result = await conductor.simulate_request(method.method, path)
                if result.status_code != 401 or set(result.json) != ERROR_KEYS:
                    unprotected.append(f"{method.method} {route.path}")
    return unprotected


@pytest.fixture
def auth_settings(settings: Settings) -> Settings:
    return settings.with_overrides(http_auth_mode="api_key", auth_pepper=PEPPER)


@pytest.fixture
async def kv(nc, auth_settings: Settings) -> Any:
    return await open_auth_kv(nc.jetstream(timeout=5.0), auth_settings)


def store_on(kv: Any, cache: RecordCache | None = None) -> ApiKeyStore:
    async def get_kv() -> Any:
        return kv

    return ApiKeyStore(get_kv, PEPPER.encode(), cache)


@pytest.fixture
def admin(kv: Any) -> ApiKeyStore:
    """What pyoco-server-admin does: no cache."""
    return store_on(kv)


@pytest.fixture
def middleware(kv: Any, auth_settings: Settings) -> ApiKeyAuthMiddleware:
    """A gateway's middleware, caching records for one second."""
    return ApiKeyAuthMiddleware(auth_settings, store_on(kv, RecordCache(ttl=1.0)))


def assert_error(result: Any, status: int, number: int) -> None:
    assert result.status_code == status, result.text
    assert result.json == {
        "detail": result.json["detail"],
        "err_id": f"ERR-PYOCO-{number:04d}",
        "msg_id": f"MSG-PYOCO-{number:04d}",
    }


async def test_missing_key_is_401_and_a_valid_key_sets_the_tenant(middleware, admin):
    api_key, record = await admin.create("acme")
    async with ASGIConductor(tiny_app(middleware)) as client:
        missing = await client.simulate_get("/runs/1")
        assert_error(missing, 401, 14)
        assert "X-API-Key" in missing.headers["www-authenticate"]
        assert_error(await client.simulate_get("/runs/1", headers={"X-API-Key": ""}), 401, 14)
        ok = await client.simulate_get("/runs/1", headers={"X-API-Key": api_key})
        assert ok.status_code == 200
        assert ok.json == {"tenant_id": "acme", "api_key_id": record.key_id}


async def test_malformed_unknown_wrong_and_revoked_keys_get_the_same_403(middleware, admin):
    api_key, record = await admin.create("acme")
    key_id = record.key_id
    presented = [
        "nonsense",
        f"pyoco_{'0' * 16}.{'A' * 43}",
        f"pyoco_{key_id}.{'A' * 43}",
    ]
    async with ASGIConductor(tiny_app(middleware)) as client:
        bodies = []
        for key in presented:
            result = await client.simulate_get("/metrics", headers={"X-API-Key": key})
            assert_error(result, 403, 15)
            assert key not in result.text
            bodies.append(result.json)
        assert all(body == bodies[0] for body in bodies), "no oracle for which keys exist"
        await admin.revoke(key_id)
        middleware.store.cache.discard(key_id)
        revoked = await client.simulate_get("/metrics", headers={"X-API-Key": api_key})
        assert_error(revoked, 403, 15)
        assert revoked.json == bodies[0] and api_key not in revoked.text


async def test_key_is_checked_before_the_body_is_judged(middleware, admin):
    api_key, _ = await admin.create("acme")
    malformed = {"body": b"{not json", "headers": {"Content-Type": "application/json"}}
    async with ASGIConductor(tiny_app(middleware)) as client:
        assert_error(await client.simulate_post("/runs", **malformed), 401, 14)
        bad_key = {**malformed["headers"], "X-API-Key": "pyoco_nope"}
        assert_error(
            await client.simulate_post("/runs", body=malformed["body"], headers=bad_key), 403, 15
        )
        good_key = {**malformed["headers"], "X-API-Key": api_key}
        judged = await client.simulate_post("/runs", body=malformed["body"], headers=good_key)
        assert judged.status_code == 422, "the stand-in must judge bodies once authenticated"
        ok = await client.simulate_post("/runs", json={"flow_name": "f"}, headers=good_key)
        assert ok.json == {"flow_name": "f", "tenant_id": "acme"}


async def test_health_is_open_even_with_a_bad_key(middleware):
    async with ASGIConductor(tiny_app(middleware)) as client:
        assert (await client.simulate_get("/health")).json == {"status": "ok"}
        bad = await client.simulate_get("/health", headers={"X-API-Key": "garbage"})
        assert bad.status_code == 200


async def test_header_name_is_configurable(admin, auth_settings):
    settings = auth_settings.with_overrides(http_api_key_header="X-Pyoco-Token")
    api_key, _ = await admin.create("acme")
    app = tiny_app(ApiKeyAuthMiddleware(settings, admin))
    async with ASGIConductor(app) as client:
        default = await client.simulate_get("/runs/1", headers={"X-API-Key": api_key})
        assert_error(default, 401, 14)
        assert "X-Pyoco-Token" in default.json["detail"]
        custom = await client.simulate_get("/runs/1", headers={"X-Pyoco-Token": api_key})
        assert custom.json["tenant_id"] == "acme"


async def test_revocation_takes_effect_within_the_cache_ttl(middleware, admin):
    api_key, record = await admin.create("acme")
    headers = {"X-API-Key": api_key}
    async with ASGIConductor(tiny_app(middleware)) as client:
        assert (await client.simulate_get("/runs/1", headers=headers)).status_code == 200
        assert len(middleware.store.cache) == 1, "the verified key must be cached"
        await admin.revoke(record.key_id)
        revoked_at = time.monotonic()
        while (await client.simulate_get("/runs/1", headers=headers)).status_code != 403:
            assert time.monotonic() - revoked_at < 1.0 + 5.0, "revocation outlived the TTL"
            await asyncio.sleep(0.05)


async def test_auth_off_marks_requests_tenantless(settings):
    middleware = build_auth_middleware(settings, NatsConnection(settings, "unused"))
    assert isinstance(middleware, AnonymousContext)
    async with ASGIConductor(tiny_app(middleware)) as client:
        result = await client.simulate_get("/runs/1")
        assert result.json == {"tenant_id": None, "api_key_id": None}


async def test_enumeration_catches_an_unprotected_route(middleware):
    leaky = frozenset({"/health", "/runs"})
    app = tiny_app(ApiKeyAuthMiddleware(Settings(), middleware.store, open_paths=leaky))
    assert await routes_answering_without_key(app) == ["POST /runs"]
    assert await routes_answering_without_key(tiny_app(middleware)) == []


#: What the gateway answers without a key. Besides the probes, the dashboard's page, its
#: shipped static files and its config are open: they hold no data (the page asks for a key,
#: and every API call it makes carries it), and a sign-in page that cannot load without a
#: key would be useless. Every data endpoint stays closed (next test).
EXPECTED_OPEN = frozenset({"/health", "/ready"}) | DASHBOARD_PATHS


async def test_every_gateway_route_outside_the_open_set_needs_a_key(auth_settings):
    assert OPEN_PATHS == EXPECTED_OPEN
    app = create_app(auth_settings, build_plugin_manager())
    assert await routes_answering_without_key(app, EXPECTED_OPEN) == []
    async with ASGIConductor(app) as client:
        for path in EXPECTED_OPEN:
            assert (await client.simulate_get(path)).status_code != 401, path
        assert_error(await client.simulate_post("/no/such/route"), 401, 14)
        assert_error(await client.simulate_get("/ui/not-shipped.js"), 401, 14)


async def test_open_dashboard_paths_serve_no_data(auth_settings):
    """Without a key, the open dashboard paths answer only the shipped files and the config."""
    from importlib import resources

    ui = resources.files("pyoco_server.gateway").joinpath("ui")
    app = create_app(auth_settings, build_plugin_manager())
    async with ASGIConductor(app) as client:
        for path in DASHBOARD_PATHS:
            result = await client.simulate_get(path)
            assert result.status_code == 200, path
            if path == "/":
                assert result.content == ui.joinpath("index.html").read_bytes()
            elif path == "/ui/config.json":
                assert set(result.json) == {
                    "auth_mode",
                    "api_key_header",
                    "version",
                    "dashboard_lang",
                }
                assert result.json["auth_mode"] == "api_key"
            else:
                assert result.content == ui.joinpath(path.removeprefix("/ui/")).read_bytes()


async def test_gateway_accepts_keys_and_answers_503_while_nats_is_down(
    tmp_path, settings: Settings
):
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    auth_settings = settings.with_overrides(
        nats_url=server.url,
        http_auth_mode="api_key",
        auth_pepper=PEPPER,
        auth_cache_ttl_sec=0,
    )
    stream = io.StringIO()
    configure_logging(auth_settings, "test", stream=stream)
    try:
        app = create_app(auth_settings, build_plugin_manager())
        async with ASGIConductor(app) as client:
            deadline = time.monotonic() + 15
            while (await client.simulate_get("/ready")).status_code != 200:
                assert time.monotonic() < deadline, "gateway never became ready"
                await asyncio.sleep(0.1)
            admin_connection = NatsConnection(auth_settings, "pytest-admin")
            await admin_connection.start()
            assert await admin_connection.wait_ready(10)
            store = ApiKeyStore(
                lambda: admin_connection.kv(auth_settings.auth_kv_bucket), PEPPER.encode()
            )
            api_key, _ = await store.create("acme")
            await admin_connection.stop()
            headers = {"X-API-Key": api_key}
            found = await client.simulate_get("/no/such/route", headers=headers)
            assert found.status_code == 404, "a valid key passes; the router answers"

            server.stop()
            deadline = time.monotonic() + 20
            while (result := await client.simulate_get("/x", headers=headers)).status_code != 503:
                assert time.monotonic() < deadline, f"no 503 while NATS is down: {result.text}"
                await asyncio.sleep(0.1)
            assert_error(result, 503, 3)
            assert result.headers["retry-after"] == "1"
            assert_error(await client.simulate_get("/x"), 401, 14)

            server.start()
            deadline = time.monotonic() + 20
            while (await client.simulate_get("/x", headers=headers)).status_code != 404:
                assert time.monotonic() < deadline, "auth did not heal after NATS came back"
                await asyncio.sleep(0.2)
    finally:
        server.stop()
    logs = stream.getvalue()
    assert "api_key_check_unavailable" in logs
    assert api_key not in logs and PEPPER not in logs


async def test_every_route_answers_401_403_or_serves_a_valid_key(auth_settings, admin):
    """The 401/403/200 matrix over every route and method of the full gateway: no key is 401,
    a wrong key is 403, a valid key gets past authentication (whatever the route then says,
    never 401/403 and never a 5xx). The key is an operator's, which every route serves; a
    submitter's key is refused by the plugin registry's changes (tests/plugin_registry)."""
    key, _ = await admin.create("matrix", role="operator")
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    app = create_app(auth_settings, build_plugin_manager())
    seen = 0
    async with ASGIConductor(app) as client:
        for route in falcon.inspect.inspect_routes(app):
            path = _request_path(route.path)
            if path in EXPECTED_OPEN:
                continue
            for method in route.methods:
                if method.internal:
                    continue
                seen += 1
                where = f"{method.method} {route.path}"
                missing = await client.simulate_request(method.method, path)
                assert missing.status_code == 401, where
                refused = await client.simulate_request(
                    method.method, path, headers={"X-API-Key": wrong}
                )
                assert refused.status_code == 403, where
                served = await client.simulate_request(
                    method.method,
                    path,
                    headers={"X-API-Key": key},
                    params={"timeout_sec": "0.5"} if path.endswith("/watch") else None,
                )
                assert served.status_code not in (401, 403), where
                assert served.status_code < 500, (where, served.status_code, served.text)
    assert seen >= 15  # runs, yaml, run, tasks, cancel, watch, workers, metrics, dlq, plugins…
