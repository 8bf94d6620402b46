"""Operational endpoints: health, readiness, workers, plugins, metrics and the OpenAPI
document."""

from __future__ import annotations

from typing import Any

import falcon
import falcon.asgi

from ..error_responses import NATS_UNAVAILABLE, ApiError
from ..metrics import CONTENT_TYPE_LATEST, GatewayMetrics
from ..openapi import openapi_document
from ..services import GatewayServices
from ..watch import WatcherRegistry


class HealthResource:
    """``GET /health``: the process is up (does not need NATS)."""

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = {"status": "ok"}


class ReadyResource:
    """``GET /ready``: NATS answers a JetStream request and the run index is loaded."""

    def __init__(self, services: GatewayServices) -> None:
        self.services = services

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        nats_ok = self.services.nats.connected
        if nats_ok:
            try:
                await self.services.nats.js.account_info()
            except Exception:
                nats_ok = False
        index_ok = self.services.index.loaded
        if not (nats_ok and index_ok):
            detail = "NATS is unavailable" if not nats_ok else "the run index is still loading"
            raise ApiError(
                503,
                NATS_UNAVAILABLE,
                detail,
                headers={"Retry-After": "1"},
                status="unavailable",
                nats=nats_ok,
                runs_index=index_ok,
            )
        resp.media = {"status": "ready", "nats": True, "runs_index": True}


class PluginsResource:
    """``GET /plugins``: the plugins this gateway loaded (name, source, module, distribution,
    version, hooks), as ``pyoco-server plugins --json`` prints them."""

    def __init__(self, pm: Any) -> None:
        self.pm = pm

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = [info.as_dict() for info in self.pm.infos.values()]


class MetricsResource:
    """``GET /metrics``: Prometheus text exposition."""

    def __init__(self, services: GatewayServices, watchers: WatcherRegistry) -> None:
        self.services = services
        self.watchers = watchers
        self.metrics = GatewayMetrics()

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.data = await self.metrics.render(self.services, self.watchers)
        resp.content_type = CONTENT_TYPE_LATEST


class OpenApiResource:
    """``GET /openapi.json``: the OpenAPI 3.1 description of this API."""

    def __init__(self) -> None:
        self.document = openapi_document()

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = self.document
