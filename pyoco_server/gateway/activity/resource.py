"""``GET /runs/activity``: the figures behind the dashboard's charts."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

import falcon
import falcon.asgi

from ...model import TERMINAL_STATUSES
from ..error_responses import invalid
from ..tenancy import caller_of

if TYPE_CHECKING:
    from ..services import GatewayServices
    from .sampler import QueueDepthSampler

#: A request samples the queues first when the last sample is older than this.
FRESH_SAMPLE_SEC = 1.0
#: ``window`` values and the minutes each covers.
WINDOWS = {"hour": 60, "day": 1440}


def activity_window(req: falcon.asgi.Request) -> str:
    """The validated ``window`` query parameter (default ``hour``)."""
    values = req.get_param_as_list("window") or ["hour"]
    if len(values) != 1 or values[0] not in WINDOWS:
        message = "must be one of " + ", ".join(WINDOWS)
        raise invalid(
            f"invalid query: window: {message}", [{"field": "window", "message": message}]
        )
    return values[0]


class RunActivityResource:
    """``GET /runs/activity?window=hour|day``: per minute, the caller's runs that finished, by
    status, and the work queue's depth per tag (``null`` for a minute without a sample).

    ``finished[status][i]`` and ``queue_depth[tag][i]`` belong to the minute starting at
    ``start + 60 * i`` (epoch seconds); the last minute is the current one.
    """

    def __init__(self, services: GatewayServices, sampler: QueueDepthSampler) -> None:
        self.services = services
        self.sampler = sampler

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        window = activity_window(req)
        minutes = WINDOWS[window]
        first = int(time.time() // 60) - minutes + 1
        tenant = caller_of(req).tenant_id
        with contextlib.suppress(Exception):  # the samples taken so far still answer
            await self.sampler.sample_if_older_than(FRESH_SAMPLE_SEC)
        finished_rows = await self.services.query_index("finished_per_minute", tenant, first)
        depth_rows = await self.services.query_index("queue_depth_per_minute", first)
        finished: dict[str, list[int]] = {s: [0] * minutes for s in sorted(TERMINAL_STATUSES)}
        for minute, status, runs in finished_rows:
            if status in finished and 0 <= minute - first < minutes:
                finished[status][minute - first] += runs
        depth: dict[str, list[Any]] = {}
        for minute, tag, value in depth_rows:
            if 0 <= minute - first < minutes:
                depth.setdefault(tag, [None] * minutes)[minute - first] = value
        resp.media = {
            "window": window,
            "step_sec": 60,
            "start": first * 60,
            "minutes": minutes,
            "finished": finished,
            "queue_depth": dict(sorted(depth.items())),
        }
