"""Build the gateway's Falcon ASGI application."""

from __future__ import annotations

from typing import Any

import falcon
import falcon.asgi

from ..config import Settings
from ..log import get_logger
from ..nats_client import NatsConnection
from .auth import install_auth

log = get_logger(__name__)


class Lifespan:
    """Falcon middleware that connects to NATS at start-up and closes it at shutdown."""

    def __init__(self, nats: NatsConnection) -> None:
        self.nats = nats

    async def process_startup(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        await self.nats.start()
        await self.nats.wait_ready(timeout=5.0)

    async def process_shutdown(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        await self.nats.stop()


class HealthResource:
    """``GET /health``: the process is up (does not need NATS)."""

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = {"status": "ok"}


class ReadyResource:
    """``GET /ready``: the gateway can serve requests (NATS connected, resources present)."""

    def __init__(self, nats: NatsConnection) -> None:
        self.nats = nats

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        ready = self.nats.connected
        resp.status = falcon.HTTP_200 if ready else falcon.HTTP_503
        resp.media = {"status": "ready" if ready else "unavailable", "nats": ready}


def create_app(settings: Settings, pm: Any) -> falcon.asgi.App:
    """The gateway application for ``settings`` with the plugin manager ``pm``."""
    nats = NatsConnection(settings, name="pyoco-server:http")
    app = falcon.asgi.App(middleware=[Lifespan(nats)])
    install_auth(app, settings, nats)
    app.add_route("/health", HealthResource())
    app.add_route("/ready", ReadyResource(nats))
    return app
