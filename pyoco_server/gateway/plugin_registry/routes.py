"""Mount the plugin registry's routes on the gateway."""

from __future__ import annotations

import falcon.asgi

from ..services import GatewayServices
from .resources import WheelHistoryResource, WheelPinResource, WheelResource, WheelsResource


def install_plugin_registry(app: falcon.asgi.App, services: GatewayServices) -> None:
    """``/wheels``, ``/wheels/history``, ``/wheels/pin`` and ``/wheels/{name}``."""
    app.add_route("/wheels", WheelsResource(services))
    app.add_route("/wheels/history", WheelHistoryResource(services))
    app.add_route("/wheels/pin", WheelPinResource(services))
    app.add_route("/wheels/{name}", WheelResource(services))
