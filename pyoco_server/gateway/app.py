"""Build the gateway's Falcon ASGI application: middleware, error handling, routes."""

from __future__ import annotations

from typing import Any

import falcon.asgi

from ..config import Settings
from .auth import install_auth
from .children.routes import install_child_routes
from .dashboard import install_dashboard
from .errors import install_error_handling
from .media import install_json_responses
from .resources.dlq import (
    DlqBulkRedriveResource,
    DlqEntryResource,
    DlqRedriveResource,
    DlqResource,
)
from .resources.runs import (
    RunCancelResource,
    RunCountsResource,
    RunResource,
    RunsResource,
    RunTasksResource,
    RunWatchResource,
    RunYamlResource,
)
from .resources.system import (
    HealthResource,
    MetricsResource,
    OpenApiResource,
    PluginsResource,
    ReadyResource,
    WorkersResource,
)
from .services import GatewayServices


class Lifespan:
    """Falcon middleware: start the gateway's services at start-up, stop them at shutdown."""

    def __init__(self, services: GatewayServices) -> None:
        self.services = services

    async def process_startup(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        await self.services.start()

    async def process_shutdown(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        await self.services.stop()


class GatewayApp(falcon.asgi.App):
    """The Falcon ASGI application of the gateway, with its :class:`GatewayServices`."""

    def __init__(self, services: GatewayServices, **options: Any) -> None:
        super().__init__(**options)
        self.services = services

    async def end_streams(self) -> None:
        """End the open watch streams (call it when the server begins to shut down: they
        would otherwise keep their connections, and so the shutdown, open)."""
        await self.services.watchers.close_all()


def create_app(settings: Settings, pm: Any, middleware: list[Any] | None = None) -> GatewayApp:
    """The gateway application for ``settings`` with the plugin manager ``pm``.

    The authentication middleware runs first (it sets ``req.context.tenant_id`` and
    ``api_key_id`` for the resources); ``middleware`` runs after it, in order.
    """
    services = GatewayServices(settings, pm)
    app = GatewayApp(services, middleware=[Lifespan(services)])
    install_auth(app, settings, services.nats)
    for component in middleware or []:
        app.add_middleware(component)
    app.req_options.strip_url_path_trailing_slash = True
    install_error_handling(app)
    install_json_responses(app)

    app.add_route("/health", HealthResource())
    app.add_route("/ready", ReadyResource(services))
    app.add_route("/runs", RunsResource(services))
    app.add_route("/runs/yaml", RunYamlResource(services))
    install_child_routes(app, services)
    app.add_route("/runs/counts", RunCountsResource(services))
    app.add_route("/runs/{run_id}", RunResource(services))
    app.add_route("/runs/{run_id}/tasks", RunTasksResource(services))
    app.add_route("/runs/{run_id}/cancel", RunCancelResource(services))
    app.add_route("/runs/{run_id}/watch", RunWatchResource(services))
    app.add_route("/workers", WorkersResource(services))
    app.add_route("/dlq", DlqResource(services))
    app.add_route("/dlq/redrive", DlqBulkRedriveResource(services))
    app.add_route("/dlq/{seq}", DlqEntryResource(services))
    app.add_route("/dlq/{seq}/redrive", DlqRedriveResource(services))
    app.add_route("/plugins", PluginsResource(pm))
    app.add_route("/metrics", MetricsResource(services))
    app.add_route("/openapi.json", OpenApiResource())
    install_dashboard(app, settings)
    return app
