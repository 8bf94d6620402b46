"""Schedule endpoints (tenant-scoped like runs: another tenant's schedule is a 404).

* ``POST /schedules`` (JSON) and ``POST /schedules/yaml`` (multipart, the 0.7.0 form);
* ``GET /schedules``, ``GET /schedules/{id}`` (with the next 10 fire times);
* ``PATCH /schedules/{id}`` (pause/resume, policies, ``end_at``), ``DELETE /schedules/{id}``;
* ``GET /schedules/{id}/runs`` and ``POST /schedules/{id}/backfill``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import falcon
import falcon.asgi
from nats.js.errors import KeyWrongLastSequenceError

from ...run_store import RunNotFound
from ..error_responses import ApiError, invalid, nats_unavailable
from ..media import read_json
from ..services import GatewayServices
from ..tenancy import Caller, caller_of
from ..validation import includes, run_request_from_json
from ..workflow_form import read_workflow_form
from .creation import build_definition, check_limit
from .firing import FIRED, SKIPPED, TAKEN, Firer, outcome_change
from .service import SchedulesService
from .spec import PATCH_FIELDS, Policies, Problems, parse_instant, parse_policies
from .store import ScheduleNotFound, ScheduleStore
from .timing import TriggerError, fire_times
from .view import schedule_view

#: Error number of an unknown (or another tenant's) schedule.
SCHEDULE_NOT_FOUND = 46
#: Schedule ids are uuid4 hex texts (anything else is a 404 without a KV lookup).
SCHEDULE_ID_PATTERN = re.compile(r"[0-9a-f]{32}")
#: Most slots one backfill request may create.
MAX_BACKFILL_SLOTS = 1000
#: Extra room for multipart framing around a workflow file.
#: Form fields of ``POST /schedules/yaml`` read as numbers.
NUMERIC_FORM_FIELDS = ("interval_seconds", "catchup_window_sec", "max_catchup", "jitter_sec")
LIST_LIMIT_MAX = 200


def schedule_not_found(schedule_id: str) -> ApiError:
    return ApiError(404, SCHEDULE_NOT_FOUND, f"schedule {schedule_id!r} not found")


async def visible_definition(
    store: ScheduleStore, caller: Caller, schedule_id: str
) -> tuple[dict[str, Any], int]:
    """The definition when it exists and belongs to the caller's tenant; 404 otherwise."""
    if not SCHEDULE_ID_PATTERN.fullmatch(schedule_id):
        raise schedule_not_found(schedule_id[:64])
    try:
        definition, revision = await store.get_definition(schedule_id)
    except ScheduleNotFound:
        raise schedule_not_found(schedule_id) from None
    if caller.tenant_id is not None and definition.get("tenant_id") != caller.tenant_id:
        raise schedule_not_found(schedule_id)
    return definition, revision


class SchedulesResource:
    """``POST /schedules`` (create from JSON) and ``GET /schedules`` (the caller's schedules,
    newest first; ``?status=ACTIVE|PAUSED|COMPLETED``, ``?limit=1..200``,
    ``?include=last_run`` adds each one's ``last_run_status``)."""

    def __init__(self, services: GatewayServices, schedules: SchedulesService) -> None:
        self.services = services
        self.schedules = schedules

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        settings = self.services.settings
        body = await read_json(req, settings)
        if not isinstance(body, dict):
            raise invalid("the body must be a JSON object", [{"field": "body", "message": "!"}])
        request = run_request_from_json(body, settings)
        resp.media = await create(self.services, self.schedules, caller_of(req), request, body)

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        problems = Problems()
        status = req.get_param("status")
        if status is not None and status.upper() not in ("ACTIVE", "PAUSED", "COMPLETED"):
            problems.add("status", "must be ACTIVE, PAUSED or COMPLETED")
        limit = req.get_param("limit")
        if limit is not None and (not limit.isdigit() or not 1 <= int(limit) <= LIST_LIMIT_MAX):
            problems.add("limit", f"must be an integer from 1 to {LIST_LIMIT_MAX}")
        problems.raise_if_any()
        caller = caller_of(req)
        store = await self.schedules.store()
        definitions = [
            d
            for d in await store.definitions()
            if caller.tenant_id is None or d.get("tenant_id") == caller.tenant_id
        ]
        definitions.sort(key=lambda d: d.get("created_at") or 0, reverse=True)
        views = []
        for definition in definitions:
            state, _ = await store.get_state(definition["schedule_id"])
            view = schedule_view(self.services.pm, definition, state)
            if status is None or view["status"] == status.upper():
                views.append(view)
            if limit is not None and len(views) >= int(limit):
                break
        if "last_run" in includes(req, ("last_run",)):
            last_runs = await asyncio.gather(
                *(last_run(self.services, view.get("last_run_id")) for view in views)
            )
            for view, run in zip(views, last_runs, strict=True):
                view["last_run_status"] = run["status"] if run else None
        resp.media = views


async def last_run(services: GatewayServices, run_id: str | None) -> dict[str, Any] | None:
    """The status of a schedule's last run (``None`` when it has none or it is gone)."""
    if not run_id:
        return None
    store = await services.run_store()
    try:
        snapshot, _ = await store.get(run_id)
    except RunNotFound:
        return None
    return {key: snapshot.get(key) for key in ("run_id", "status", "updated_at", "error")}


async def create(
    services: GatewayServices,
    schedules: SchedulesService,
    caller: Caller,
    request: Any,
    body: dict[str, Any],
    workflow_yaml: bytes | None = None,
) -> dict[str, Any]:
    """Store a new schedule and answer its view."""
    definition, state = build_definition(
        services, caller, request, body, workflow_yaml=workflow_yaml
    )
    store = await schedules.store()
    await check_limit(services, schedules, store, caller.tenant_id)
    await store.create(definition, state, workflow_yaml)
    return schedule_view(services.pm, definition, state, detail=True)


def _form_body(form: dict[str, Any]) -> dict[str, Any]:
    """The schedule fields of a ``POST /schedules/yaml`` form as a JSON-like body."""
    body: dict[str, Any] = {}
    for name, part in form.items():
        if name in ("workflow", "flow_name", "tag"):
            continue
        text = part.text().strip()
        if not text:
            continue
        if name in NUMERIC_FORM_FIELDS:
            try:
                body[name] = float(text)
            except ValueError:
                raise invalid(
                    f"{name}: must be a number", [{"field": name, "message": text}]
                ) from None
        elif name == "paused":
            body[name] = text.lower() in ("1", "true", "yes", "on")
        else:
            body[name] = text
    return body


class ScheduleYamlResource:
    """``POST /schedules/yaml`` (multipart, as in 0.7.0): ``workflow`` (file), ``flow_name``,
    ``tag`` and the schedule fields (``run_at`` | ``interval_seconds`` [+ ``start_at``] |
    ``cron`` [+ ``timezone``], ``end_at``, policies). The YAML is checked by every
    ``pyoco_check_workflow_yaml`` hook now and again at every firing."""

    def __init__(self, services: GatewayServices, schedules: SchedulesService) -> None:
        self.services = services
        self.schedules = schedules

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        caller = caller_of(req)
        form = await read_workflow_form(self.services, req, caller)
        resp.media = await create(
            self.services,
            self.schedules,
            caller,
            form.request,
            _form_body(form.fields),
            form.workflow_yaml,
        )


class ScheduleResource:
    """``GET``, ``PATCH`` and ``DELETE /schedules/{schedule_id}``.

    ``PATCH`` accepts ``paused`` (with ``resume_from``: where catch-up starts on resume;
    default now, so the paused time is not caught up), the policies (``catchup``,
    ``catchup_window_sec``, ``max_catchup``, ``overlap``, ``jitter_sec``) and ``end_at``.
    """

    def __init__(self, services: GatewayServices, schedules: SchedulesService) -> None:
        self.services = services
        self.schedules = schedules

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, schedule_id: str
    ) -> None:
        store = await self.schedules.store()
        definition, _ = await visible_definition(store, caller_of(req), schedule_id)
        state, _ = await store.get_state(schedule_id)
        view = schedule_view(self.services.pm, definition, state, detail=True)
        view["last_run"] = await last_run(self.services, view.get("last_run_id"))
        resp.media = view

    async def on_patch(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, schedule_id: str
    ) -> None:
        settings = self.services.settings
        body = await read_json(req, settings)
        if not isinstance(body, dict) or not body:
            raise invalid(
                "the body must be a JSON object with fields to change",
                [{"field": "body", "message": "accepted: " + ", ".join(PATCH_FIELDS)}],
            )
        problems = Problems()
        for name in body:
            if name not in PATCH_FIELDS:
                problems.add(name, "cannot be changed; accepted: " + ", ".join(PATCH_FIELDS))
        if "paused" in body and not isinstance(body["paused"], bool):
            problems.add("paused", "must be true or false")
        resume_from = parse_instant(body.get("resume_from"), "resume_from", problems)
        problems.raise_if_any()
        caller = caller_of(req)
        store = await self.schedules.store()
        for _ in range(10):
            definition, revision = await visible_definition(store, caller, schedule_id)
            edited = self._edited(definition, body, problems)
            resuming = definition.get("paused") and edited.get("paused") is False
            if resuming:
                await self._move_cursor(store, schedule_id, resume_from or time.time())
            try:
                await store.update_definition(schedule_id, edited, revision)
            except KeyWrongLastSequenceError:
                continue
            state, _ = await store.get_state(schedule_id)
            resp.media = schedule_view(self.services.pm, edited, state, detail=True)
            return
        raise nats_unavailable("the schedule kept changing; retry")

    def _edited(
        self, definition: dict[str, Any], body: dict[str, Any], problems: Problems
    ) -> dict[str, Any]:
        edited = json.loads(json.dumps(definition))
        base = Policies(**definition.get("policies", {}))
        edited["policies"] = parse_policies(body, problems, base).as_dict()
        if "paused" in body:
            edited["paused"] = body["paused"]
        if "end_at" in body:
            edited["spec"]["end_at"] = parse_instant(body["end_at"], "end_at", problems)
        problems.raise_if_any()
        edited["updated_at"] = time.time()
        return edited

    async def _move_cursor(self, store: ScheduleStore, schedule_id: str, cursor: float) -> None:
        def change(state: dict[str, Any]) -> dict[str, Any] | None:
            if float(state.get("cursor") or 0.0) >= cursor:
                return None
            return {**state, "cursor": cursor}

        await store.change_state(schedule_id, change, None)

    async def on_delete(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, schedule_id: str
    ) -> None:
        store = await self.schedules.store()
        await visible_definition(store, caller_of(req), schedule_id)
        await store.delete(schedule_id)
        resp.media = {"schedule_id": schedule_id, "deleted": True}


class ScheduleRunsResource:
    """``GET /schedules/{schedule_id}/runs``: the schedule's runs, most recently updated
    first (``?limit=1..200``, default 50); the same as ``GET /runs?schedule_id=``."""

    def __init__(self, services: GatewayServices, schedules: SchedulesService) -> None:
        self.services = services
        self.schedules = schedules

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, schedule_id: str
    ) -> None:
        limit = req.get_param("limit") or "50"
        if not limit.isdigit() or not 1 <= int(limit) <= LIST_LIMIT_MAX:
            raise invalid(
                f"limit: must be an integer from 1 to {LIST_LIMIT_MAX}",
                [{"field": "limit", "message": "out of range"}],
            )
        caller = caller_of(req)
        store = await self.schedules.store()
        await visible_definition(store, caller, schedule_id)
        page = await self.services.query_index(
            "select_page", caller.tenant_id, schedule_id=schedule_id, limit=int(limit)
        )
        resp.media = page.runs


class ScheduleBackfillResource:
    """``POST /schedules/{schedule_id}/backfill`` ``{"start": T1, "end": T2}``: create the runs
    of every slot in ``[start, end]`` (at most 1000, none in the future). Idempotent: a slot
    whose run exists is listed under ``existing`` and nothing new is created. Overlap and
    catch-up policies do not apply; the key and YAML checks do."""

    def __init__(self, services: GatewayServices, schedules: SchedulesService) -> None:
        self.services = services
        self.schedules = schedules

    async def on_post(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, schedule_id: str
    ) -> None:
        settings = self.services.settings
        body = await read_json(req, settings)
        problems = Problems()
        if not isinstance(body, dict):
            raise invalid("the body must be a JSON object with start and end")
        start = parse_instant(body.get("start"), "start", problems)
        end = parse_instant(body.get("end"), "end", problems)
        if start is None and not problems.items:
            problems.add("start", "required")
        if end is None and not problems.items:
            problems.add("end", "required")
        problems.raise_if_any()
        assert start is not None and end is not None
        now = time.time()
        if end > now:
            problems.add("end", "must not be in the future")
        if start > end:
            problems.add("start", "must not be after end")
        problems.raise_if_any()
        store = await self.schedules.store()
        definition, _ = await visible_definition(store, caller_of(req), schedule_id)
        try:
            slots = fire_times(
                self.services.pm,
                definition["spec"],
                start - 0.001,
                until=end,
                limit=MAX_BACKFILL_SLOTS + 1,
            )
        except TriggerError as exc:
            raise invalid(str(exc)) from None
        if len(slots) > MAX_BACKFILL_SLOTS:
            raise invalid(
                f"the range holds more than {MAX_BACKFILL_SLOTS} slots; backfill in parts",
                [{"field": "end", "message": "range too large"}],
            )
        firer = Firer(self.services, store, self.schedules.metrics)
        outcomes = [await firer.fire(definition, slot, check_overlap=False) for slot in slots]
        await store.change_state(schedule_id, outcome_change(0.0, 0, outcomes, False), None)
        resp.media = {
            "schedule_id": schedule_id,
            "slots": len(slots),
            "created": [o.run_id for o in outcomes if o.kind == FIRED],
            "existing": [o.run_id for o in outcomes if o.kind == TAKEN],
            "skipped": [
                {"nominal": o.nominal, "reason": o.reason} for o in outcomes if o.kind == SKIPPED
            ],
        }


def install_schedule_routes(
    app: falcon.asgi.App, services: GatewayServices, schedules: SchedulesService
) -> None:
    """Add the schedule endpoints to ``app``."""
    app.add_route("/schedules", SchedulesResource(services, schedules))
    app.add_route("/schedules/yaml", ScheduleYamlResource(services, schedules))
    app.add_route("/schedules/{schedule_id}", ScheduleResource(services, schedules))
    app.add_route("/schedules/{schedule_id}/runs", ScheduleRunsResource(services, schedules))
    app.add_route(
        "/schedules/{schedule_id}/backfill", ScheduleBackfillResource(services, schedules)
    )
