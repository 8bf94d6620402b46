"""``GET /workers`` (scope, state, hidden, limit) and ``PATCH /workers/{worker_id}``."""

from __future__ import annotations

import asyncio
from typing import Any

import falcon
import falcon.asgi

from ..error_responses import ApiError, invalid
from ..media import read_json
from ..services import GatewayServices
from ..workers import get_worker, list_workers
from .flags import hidden_workers, set_hidden
from .query import workers_query

#: ERR-PYOCO-0032: ``PATCH /workers/{worker_id}`` names a worker with no record.
WORKER_NOT_FOUND = 32
#: Largest ``PATCH /workers/{worker_id}`` body accepted.
PATCH_MAX_BYTES = 4096
#: Longest worker id looked up (worker ids are KV keys).
MAX_WORKER_ID_CHARS = 256


class WorkersResource:
    """``GET /workers``: workers with their state and ``hidden`` flag, by worker id.

    By default only active (RUNNING, IDLE) workers that are not hidden, at most 100; see
    :mod:`.query` for ``scope``, ``state``, ``include_hidden``, ``include_stopped`` and
    ``limit``. A worker that stopped heartbeating is DISCONNECTED and, like a STOPPED one,
    stays listed (with ``scope=all``) for ``PYOCO_WORKERS_RETENTION_SEC``.
    """

    def __init__(self, services: GatewayServices) -> None:
        self.services = services

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        query = workers_query(req)
        js = self.services.nats.js
        settings = self.services.settings
        workers, hidden = await asyncio.gather(
            list_workers(js, settings), hidden_workers(js, settings)
        )
        listed: list[dict[str, Any]] = []
        for view in workers:
            view["hidden"] = view["worker_id"] in hidden
            if query.keeps(view):
                listed.append(view)
                if len(listed) == query.limit:
                    break
        resp.media = listed


class WorkerResource:
    """``PATCH /workers/{worker_id}`` with ``{"hidden": true|false}``: hide a worker from the
    default listing (or show it again). Answers ``{worker_id, hidden, updated_at}``; 404
    (ERR-PYOCO-0032) when the worker has no record, 422 for a bad body."""

    def __init__(self, services: GatewayServices) -> None:
        self.services = services

    async def on_patch(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, worker_id: str
    ) -> None:
        body = await read_json(req, self.services.settings, PATCH_MAX_BYTES)
        if not isinstance(body, dict) or not isinstance(body.get("hidden"), bool):
            raise invalid(
                'the body must be a JSON object {"hidden": true|false}',
                [{"field": "hidden", "message": "required, a boolean"}],
            )
        record = None
        if 0 < len(worker_id) <= MAX_WORKER_ID_CHARS:
            record = await get_worker(await self.services.workers_kv(), worker_id)
        if record is None:
            raise ApiError(404, WORKER_NOT_FOUND, f"worker {worker_id[:80]!r} not found")
        kv = await self.services.nats.kv(self.services.settings.worker_flags_kv_bucket)
        updated_at = await set_hidden(kv, worker_id, body["hidden"])
        resp.media = {"worker_id": worker_id, "hidden": body["hidden"], "updated_at": updated_at}
