"""Helpers shared by the gateway tests."""

from __future__ import annotations

import contextlib

import falcon.asgi
from falcon import testing
from nats.js.errors import NotFoundError

from pyoco_server.config import Settings
from pyoco_server.gateway.app import create_app
from pyoco_server.plugins import build_plugin_manager

TENANT_HEADER = "X-Test-Tenant"


class FakeTenancy:
    """Stands in for the auth middleware: ``X-Test-Tenant: T`` makes the caller tenant T."""

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response):
        tenant = req.get_header(TENANT_HEADER)
        if tenant:
            req.context.tenant_id = tenant
            req.context.api_key_id = f"key-of-{tenant}"


def start_gateway(settings: Settings, pm=None, **app_options) -> testing.ASGIConductor:
    """A conductor for a fresh app; ``async with`` runs its lifespan (NATS connect, index)."""
    app = create_app(settings, pm or build_plugin_manager(plugins=[]), **app_options)
    return testing.ASGIConductor(app)


def assert_error(result: testing.Result, status: int, err_id: str) -> dict:
    """The response is the JSON error shape with ``status`` and ``err_id``; returns the body."""
    assert result.status_code == status, result.text
    body = result.json
    assert body["err_id"] == err_id, body
    assert body["msg_id"] == err_id.replace("ERR", "MSG")
    assert isinstance(body["detail"], str) and body["detail"]
    return body


async def stored_jobs(nc, settings: Settings) -> list:
    """Every job message on the work stream (``RawStreamMsg``: subject, data, headers).

    Read by sequence: a work-queue stream admits no second consumer for the same subjects.
    """
    js = nc.jetstream()
    info = await js.stream_info(settings.work_stream)
    found = []
    if info.state.messages:
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            with contextlib.suppress(NotFoundError):
                found.append(await js.get_msg(settings.work_stream, seq=seq))
    return found


async def stored_run_ids(nc, settings: Settings) -> list[str]:
    """Every run id with a snapshot in KV."""
    from nats.js.errors import NoKeysError

    kv = await nc.jetstream().key_value(settings.runs_kv_bucket)
    try:
        return await kv.keys()
    except NoKeysError:
        return []


def multipart(workflow: bytes | None, **fields: str) -> dict:
    """``simulate_post`` keyword arguments for a multipart form (encoded by httpx)."""
    import httpx

    if workflow is None:  # still a multipart form, with an unrelated file
        files = {"attachment": ("notes.txt", b"unrelated", "text/plain")}
    else:
        files = {"workflow": ("flow.yaml", workflow, "application/yaml")}
    request = httpx.Request("POST", "http://gateway/runs/yaml", data=fields, files=files)
    return {"body": request.read(), "headers": {"Content-Type": request.headers["Content-Type"]}}
