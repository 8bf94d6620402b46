"""Build the gateway's Falcon ASGI application: middleware, error handling, routes."""

from __future__ import annotations

from typing import Any

import falcon.asgi

from ..config import Settings
from .activity.resource import RunActivityResource
from .activity.sampler import QueueDepthSampler
from .auth_middleware import install_auth
from .background import BackgroundLoops
from .children.routes import install_child_routes
from .dashboard import install_dashboard
from .error_responses import install_error_handling
from .media import install_json_responses
from .plugin_registry.routes import install_plugin_registry
from .reconciler import Reconciler
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
)
from .retention.sweeper import RetentionSweeper
from .run_finished.consumer import RunFinishedFeed
from .schedules.resources import install_schedule_routes
from .schedules.service import SchedulesService
from .services import GatewayServices
from .watch import WatcherRegistry
from .worker_visibility.resources import WorkerResource, WorkersResource


class Lifespan:
    """Falcon middleware: start the gateway's services, reconciler, background loops and
    schedules at start-up, stop them at shutdown."""

    def __init__(
        self,
        services: GatewayServices,
        reconciler: Reconciler,
        loops: BackgroundLoops,
        schedules: SchedulesService,
    ) -> None:
        self.services = services
        self.reconciler = reconciler
        self.loops = loops
        self.schedules = schedules

    async def process_startup(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        await self.services.start()
        await self.reconciler.start()
        await self.loops.start()
        await self.schedules.start()

    async def process_shutdown(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        await self.schedules.stop()
        await self.loops.stop()
        await self.reconciler.stop()
        await self.services.stop()


class GatewayApp(falcon.asgi.App):
    """The Falcon ASGI application of the gateway, with its :class:`GatewayServices`, its
    :class:`Reconciler` and the registry of its watch streams."""

    def __init__(
        self,
        services: GatewayServices,
        reconciler: Reconciler,
        watchers: WatcherRegistry,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.services = services
        self.reconciler = reconciler
        self.watchers = watchers
        self.retention: RetentionSweeper | None = None
        self.run_finished: RunFinishedFeed | None = None
        self.queue_sampler: QueueDepthSampler | None = None

    async def end_streams(self) -> None:
        """End the open watch streams (call it when the server begins to shut down: they
        would otherwise keep their connections, and so the shutdown, open)."""
        await self.watchers.close_all()


def build_reconciler(services: GatewayServices) -> Reconciler:
    """The reconciler of a gateway, reading and writing through ``services``."""
    return Reconciler(services.settings, services.nats, services.query_index, services.run_store)


def create_app(settings: Settings, pm: Any, middleware: list[Any] | None = None) -> GatewayApp:
    """The gateway application for ``settings`` with the plugin manager ``pm``.

    The authentication middleware runs first (it sets ``req.context.tenant_id`` and
    ``api_key_id`` for the resources); ``middleware`` runs after it, in order. This is the
    composition root: the services, the reconciler and the watch registry are built here and
    each is handed what it uses.
    """
    services = GatewayServices(settings, pm)
    reconciler = build_reconciler(services)
    watchers = WatcherRegistry()
    retention = RetentionSweeper(services)
    run_finished = RunFinishedFeed(services)
    queue_sampler = QueueDepthSampler(services)
    loops = BackgroundLoops(retention.run, run_finished.run, queue_sampler.run)
    schedules = SchedulesService(services)
    lifespan = Lifespan(services, reconciler, loops, schedules)
    app = GatewayApp(services, reconciler, watchers, middleware=[lifespan])
    app.retention, app.run_finished, app.queue_sampler = retention, run_finished, queue_sampler
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
    app.add_route("/runs/activity", RunActivityResource(services, queue_sampler))
    app.add_route("/runs/{run_id}", RunResource(services))
    app.add_route("/runs/{run_id}/tasks", RunTasksResource(services))
    app.add_route("/runs/{run_id}/cancel", RunCancelResource(services))
    app.add_route("/runs/{run_id}/watch", RunWatchResource(services, watchers))
    app.add_route("/workers", WorkersResource(services))
    app.add_route("/workers/{worker_id}", WorkerResource(services))
    app.add_route("/dlq", DlqResource(services))
    app.add_route("/dlq/redrive", DlqBulkRedriveResource(services))
    app.add_route("/dlq/{seq}", DlqEntryResource(services))
    app.add_route("/dlq/{seq}/redrive", DlqRedriveResource(services))
    app.add_route("/plugins", PluginsResource(pm))
    metrics = MetricsResource(services, watchers)
    schedules.register_metrics(metrics.metrics.registry)
    app.add_route("/metrics", metrics)
    app.add_route("/openapi.json", OpenApiResource())
    install_schedule_routes(app, services, schedules)
    install_plugin_registry(app, services)
    install_dashboard(app, settings)
    return app
