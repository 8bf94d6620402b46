"""``GET /metrics``: Prometheus text from a private registry, without scanning runs.

Every scrape reads: run counts by status, overall and for runs updated today (local time),
from the run index (kept current by counters, see :mod:`.run_index` and :mod:`.run_delta`),
the worker liveness bucket (one short stream read, O(workers)), the work stream's per-subject
message counts and its consumers, one message lookup per tag with waiting jobs (the age of the
oldest, see :mod:`.queues`), and the DLQ stream's size. The values are gathered first and then
written into the gauges and rendered without an ``await`` in between, so concurrent scrapes
never interleave.
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..model import RUN_STATUSES
from .queues import oldest_waiting_ages
from .run_delta.order import local_day
from .services import GatewayServices
from .watch import WatcherRegistry
from .workers import WORKER_STATES, list_workers, serving

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics"]


class GatewayMetrics:
    """The gauges of the gateway, refreshed on every scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.runs = Gauge(
            "pyoco_runs_total",
            "Runs stored in KV, by status.",
            ["status"],
            registry=self.registry,
        )
        self.runs_today = Gauge(
            "pyoco_runs_today_total",
            "Runs whose latest write is on the server's local calendar day, by status.",
            ["status"],
            registry=self.registry,
        )
        self.workers_alive = Gauge(
            "pyoco_workers_alive_total",
            "Workers whose heartbeat is within PYOCO_WORKERS_KV_TTL_SEC and not stopped.",
            registry=self.registry,
        )
        self.workers = Gauge(
            "pyoco_workers",
            "Workers in the liveness bucket, by state.",
            ["state"],
            registry=self.registry,
        )
        self.dlq_messages = Gauge(
            "pyoco_dlq_messages_total",
            "Dead-letter messages stored in the DLQ stream.",
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "pyoco_queue_depth",
            "Jobs stored on pyoco.work.<tag> and not yet acknowledged (waiting or running).",
            ["tag"],
            registry=self.registry,
        )
        self.queue_pending = Gauge(
            "pyoco_queue_pending",
            "Jobs not yet delivered to any worker, from the tag's consumer.",
            ["tag"],
            registry=self.registry,
        )
        self.watchers_open = Gauge(
            "pyoco_watchers_open",
            "Watch streams (GET /runs/{run_id}/watch) this gateway has open now.",
            registry=self.registry,
        )
        self.queue_in_flight = Gauge(
            "pyoco_queue_in_flight",
            "Jobs delivered to a worker and not yet acknowledged, from the tag's consumer.",
            ["tag"],
            registry=self.registry,
        )
        self.queue_oldest_age = Gauge(
            "pyoco_queue_oldest_age_seconds",
            "Age of the oldest job on pyoco.work.<tag> not yet delivered to a worker (0: none).",
            ["tag"],
            registry=self.registry,
        )
        self.queue_workers = Gauge(
            "pyoco_queue_workers",
            "Live workers pulling jobs of the tag (0 with jobs waiting: nobody will run them).",
            ["tag"],
            registry=self.registry,
        )

    async def render(self, services: GatewayServices, watchers: WatcherRegistry) -> bytes:
        """Gather the figures from NATS (and ``watchers``) and return the exposition text."""
        settings = services.settings
        js = services.nats.js
        prefix = settings.work_subject_prefix + "."
        run_counts = await services.query_index("status_counts")
        workers, work, consumers, dlq = await asyncio.gather(
            list_workers(js, settings),
            js.stream_info(settings.work_stream, subjects_filter=prefix + ">"),
            js.consumers_info(settings.work_stream),
            js.stream_info(settings.dlq_stream),
        )
        depth = {
            subject[len(prefix) :]: count
            for subject, count in (work.state.subjects or {}).items()
            if subject.startswith(prefix)
        }
        per_consumer: dict[str, tuple[int, int]] = {}
        consumer_of: dict[str, object] = {}
        for consumer in consumers:
            subject = consumer.config.filter_subject or ""
            if subject.startswith(prefix) and consumer.config.durable_name:
                tag = subject[len(prefix) :]
                per_consumer[tag] = (consumer.num_pending or 0, consumer.num_ack_pending or 0)
                consumer_of[tag] = consumer
                depth.setdefault(tag, 0)
        for worker in workers:
            for tag in worker.get("tags") or ():
                if isinstance(tag, str) and worker.get("alive"):
                    depth.setdefault(tag, 0)
        ages = await oldest_waiting_ages(
            js,
            settings,
            [tag for tag, count in depth.items() if count],
            consumer_of,
            work.state.first_seq,
        )

        self.runs.clear()
        for status, count in run_counts.items():
            self.runs.labels(status=status).set(count)
        today = await services.call_index("updated_on", local_day(time.time()))
        self.runs_today.clear()
        for status in sorted({*RUN_STATUSES, *today}):
            self.runs_today.labels(status=status).set(today.get(status, 0))
        self.workers_alive.set(sum(1 for worker in workers if worker["alive"]))
        self.workers.clear()
        for state in WORKER_STATES:
            self.workers.labels(state=state).set(
                sum(1 for worker in workers if worker["state"] == state)
            )
        self.dlq_messages.set(dlq.state.messages)
        self.watchers_open.set(watchers.open)
        for gauge in (
            self.queue_depth,
            self.queue_pending,
            self.queue_in_flight,
            self.queue_oldest_age,
            self.queue_workers,
        ):
            gauge.clear()
        for tag, count in sorted(depth.items()):
            self.queue_depth.labels(tag=tag).set(count)
            self.queue_oldest_age.labels(tag=tag).set(round(ages.get(tag, 0.0), 3))
            self.queue_workers.labels(tag=tag).set(len(serving(workers, tag)))
        for tag, (pending, in_flight) in sorted(per_consumer.items()):
            self.queue_pending.labels(tag=tag).set(pending)
            self.queue_in_flight.labels(tag=tag).set(in_flight)
        return generate_latest(self.registry)
