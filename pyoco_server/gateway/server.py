"""Serving the gateway with uvicorn."""

from __future__ import annotations

import socket

import uvicorn

from .app import GatewayApp

#: How long a shutdown waits for requests in flight before it cancels them.
GRACEFUL_SHUTDOWN_SEC = 10.0


class GatewayServer(uvicorn.Server):
    """uvicorn for a :class:`GatewayApp`: on shutdown, the app's watch streams are ended
    first (each gets a ``closing`` event), so open watches never hold the shutdown up."""

    def __init__(self, config: uvicorn.Config, app: GatewayApp) -> None:
        super().__init__(config)
        self.gateway_app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self.gateway_app.end_streams()
        await super().shutdown(sockets)
