"""Run endpoints: submit (JSON and workflow YAML), read one run, its tasks, list and count
runs."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import falcon
import falcon.asgi

from ...run_store import RunNotFound
from ..cancel import cancel_run
from ..children.listing import list_children, parent_filter
from ..error_responses import invalid, run_not_found
from ..media import read_json
from ..run_delta.listing import delta_page, delta_query, is_delta
from ..run_view import RUN_INCLUDES, run_view, visible_snapshot
from ..services import GatewayServices
from ..submit import Submitted, submit_run
from ..tenancy import Caller, caller_of
from ..validation import (
    idempotency_key,
    includes,
    list_query,
    run_request_from_json,
)
from ..watch import RunWatch, WatcherRegistry, watch_query
from ..workflow_form import read_workflow_form

#: Extra room for multipart framing and the small form fields around a workflow file.
#: Response header of ``GET /runs`` naming the ``cursor`` of the next page (absent on the last).
NEXT_CURSOR_HEADER = "Next-Cursor"


def _respond_submitted(resp: falcon.asgi.Response, submitted: Submitted) -> None:
    resp.media = {"run_id": submitted.run_id, "status": submitted.status}
    if submitted.replayed:
        resp.set_header("Idempotent-Replayed", "true")


class RunsResource:
    """``POST /runs`` (submit a run by flow name) and ``GET /runs`` (list, newest first).

    A listing answers at most ``limit`` runs; when the page is full, the ``Next-Cursor``
    header holds the ``cursor`` that continues after it. With ``updated_after``,
    ``workflow_yaml_sha256`` or a delta ``cursor`` the answer is a delta page
    ``{"items", "next_cursor"}`` instead (:mod:`..run_delta.listing`).
    """

    def __init__(self, services: GatewayServices) -> None:
        self.services = services

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        settings = self.services.settings
        key = idempotency_key(req)
        request = run_request_from_json(await read_json(req, settings), settings)
        submitted = await submit_run(self.services, caller_of(req), request, idempotency_key=key)
        _respond_submitted(resp, submitted)

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        parent_run_id = parent_filter(req)
        if is_delta(req):
            if parent_run_id is not None:
                raise invalid(
                    "invalid run listing: parent_run_id lists one run's children and cannot be "
                    "combined with a delta listing (updated_after, workflow_yaml_sha256, cursor)",
                    [{"field": "parent_run_id", "message": "not with a delta listing"}],
                )
            await self._delta(req, resp)
            return
        query = list_query(req)
        caller = caller_of(req)
        if parent_run_id is not None:
            resp.media = await list_children(self.services, caller, parent_run_id, query)
            return
        page = await self.services.query_index(
            "select_page",
            caller.tenant_id,
            status=query.status,
            flow=query.flow,
            tag=query.tag,
            q=query.q,
            limit=query.limit,
            cursor=query.cursor,
            schedule_id=query.schedule_id,
        )
        if page.next_cursor is not None:
            resp.set_header(NEXT_CURSOR_HEADER, str(page.next_cursor))
        summaries = page.runs
        if query.full:
            summaries = await self._full(caller, [s["run_id"] for s in summaries])
        resp.media = summaries

    async def _delta(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        """The delta listing: ``{"items", "next_cursor"}`` (see :mod:`..run_delta.listing`)."""
        query = list_query(req, seq_cursor=False)
        delta = delta_query(req)
        caller = caller_of(req)
        index = await self.services.fresh_index()
        page = await self.services.index_feed.call(
            delta_page,
            index,
            caller.tenant_id,
            delta,
            limit=query.limit,
            status=query.status,
            flow=query.flow,
            tag=query.tag,
            q=query.q,
            schedule_id=query.schedule_id,
        )
        items = page.items
        if query.full:
            items = await self._full(caller, [s["run_id"] for s in items])
        resp.media = {"items": items, "next_cursor": page.next_cursor}

    async def _full(self, caller: Caller, run_ids: list[str]) -> list[dict[str, Any]]:
        store = await self.services.run_store()

        async def load(run_id: str) -> dict[str, Any] | None:
            try:
                snapshot, _ = await store.get(run_id)
            except RunNotFound:
                return None
            return snapshot if caller.sees(snapshot) else None

        snapshots = await asyncio.gather(*(load(run_id) for run_id in run_ids))
        return [snapshot for snapshot in snapshots if snapshot is not None]


class RunCountsResource:
    """``GET /runs/counts``: how many of the caller's runs are stored, in total and by status.

    Answered from counters the run index keeps on every write: no scan, whatever the number of
    runs.
    """

    def __init__(self, services: GatewayServices) -> None:
        self.services = services

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        counts = await self.services.query_index("status_counts", caller_of(req).tenant_id)
        resp.media = {"total": sum(counts.values()), "by_status": counts}


class RunYamlResource:
    """``POST /runs/yaml``: submit a single-flow ``flow.yaml`` (multipart form).

    Fields: ``workflow`` (the file), ``flow_name``, ``tag`` (optional). The YAML is parsed
    safely and every ``pyoco_check_workflow_yaml`` hook runs before anything is stored; the
    run's params are the file's ``flow.defaults`` (values YAML reads as dates or other
    non-JSON types are sent as their text). The YAML itself travels in the job, never in KV.
    """

    def __init__(self, services: GatewayServices) -> None:
        self.services = services

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        key = idempotency_key(req)
        caller = caller_of(req)
        form = await read_workflow_form(self.services, req, caller)
        request, raw = form.request, form.workflow_yaml
        submitted = await submit_run(
            self.services,
            caller,
            request,
            idempotency_key=key,
            workflow_yaml=raw,
            fingerprint=request.fingerprint(workflow_sha256=hashlib.sha256(raw).hexdigest()),
        )
        _respond_submitted(resp, submitted)


class RunResource:
    """``GET /runs/{run_id}``: the run's snapshot, with its worker's liveness; a PENDING run
    also gets ``queue`` (its tag and how many live workers serve it)."""

    def __init__(self, services: GatewayServices) -> None:
        self.services = services

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, run_id: str
    ) -> None:
        wanted = includes(req, RUN_INCLUDES)
        store = await self.services.run_store()
        snapshot, _ = await visible_snapshot(store, caller_of(req), run_id)
        resp.media = await run_view(self.services, snapshot, wanted)


class RunCancelResource:
    """``POST /runs/{run_id}/cancel``: cancel a run; answers the snapshot after the request.

    PENDING becomes CANCELLED at once, RUNNING becomes CANCELLING (its worker then ends it);
    CANCELLING and terminal runs are answered unchanged, so repeating a cancel is harmless.
    """

    def __init__(self, services: GatewayServices) -> None:
        self.services = services

    async def on_post(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, run_id: str
    ) -> None:
        caller = caller_of(req)
        store = await self.services.run_store()
        await visible_snapshot(store, caller, run_id)
        try:
            snapshot = await cancel_run(store, run_id, caller.api_key_id)
        except RunNotFound:
            raise run_not_found(run_id) from None
        resp.media = await run_view(self.services, snapshot, set())


class RunWatchResource:
    """``GET /runs/{run_id}/watch``: the run's snapshots as server-sent events, until it ends.

    Validation, the 404 of a missing (or another tenant's) run and the 503 of a NATS outage
    are answered before the stream starts; see :mod:`..watch` for the events.
    """

    def __init__(self, services: GatewayServices, watchers: WatcherRegistry) -> None:
        self.services = services
        self.watchers = watchers

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, run_id: str
    ) -> None:
        query = watch_query(req, self.services.settings.watch_max_sec)
        store = await self.services.run_store()
        await visible_snapshot(store, caller_of(req), run_id)
        resp.set_header("Cache-Control", "no-cache")
        resp.set_header("X-Accel-Buffering", "no")  # proxies: pass events on at once
        watch = RunWatch(self.services, store, run_id, query, self.watchers)
        resp.sse = watch.events()


class RunTasksResource:
    """``GET /runs/{run_id}/tasks``: task states and records of one run."""

    def __init__(self, services: GatewayServices) -> None:
        self.services = services

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, run_id: str
    ) -> None:
        store = await self.services.run_store()
        snapshot, _ = await visible_snapshot(store, caller_of(req), run_id)
        resp.media = {
            "run_id": snapshot.get("run_id", run_id),
            "flow_name": snapshot.get("flow_name"),
            "status": snapshot.get("status"),
            "tasks": snapshot.get("tasks") or {},
            "task_records": snapshot.get("task_records") or {},
            "task_records_truncated": bool(snapshot.get("task_records_truncated")),
        }
