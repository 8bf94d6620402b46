"""Routes of child runs: ``POST /runs/bundle``, ``POST /runs/{id}/approve|reject``."""

from __future__ import annotations

import uuid
from typing import Any

import falcon
import falcon.asgi

from ...children.crash_points import BEFORE_APPROVAL_WRITE, crash_point
from ...children.tree import APPROVED_BY, Continuations, publish
from ...jobs import build_job, pending_snapshot
from ...log import get_logger
from ...model import PENDING, PENDING_APPROVAL, WorkflowContext
from ...run_store import RunNotFound
from ..error_responses import ApiError, invalid, run_not_found
from ..media import parse_json, read_body, read_form, required_file
from ..run_view import run_view, visible_snapshot
from ..services import GatewayServices
from ..submit import encoded_job, publish_run
from ..tenancy import caller_of
from ..validation import run_request
from .approval import APPROVED, REJECTED, Decide
from .bundle import parse_bundle
from .join import ChildJoin

log = get_logger(__name__)

#: ERR-PYOCO-0036: approve/reject of a run that is not PENDING_APPROVAL (409).
NOT_AWAITING_APPROVAL = 36
#: Longest ``reason`` of a rejection.
MAX_REASON_CHARS = 1024


class RunBundleResource:
    """``POST /runs/bundle``: multipart ``bundle`` (the YAML file) and ``tag`` (optional).

    Answers ``{"run_id", "status"}``: PENDING, or PENDING_APPROVAL when the entry workflow
    can reach a ``spawn:`` task and ``PYOCO_SPAWN_REQUIRES_APPROVAL`` is on.
    """

    def __init__(self, services: GatewayServices) -> None:
        self.services = services

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        settings = self.services.settings
        form = await read_form(req, settings.workflow_yaml_max_bytes, settings.http_max_body_bytes)
        part = required_file(form, "bundle", "the bundle YAML")
        tag = form["tag"].text().strip() if "tag" in form else ""
        caller = caller_of(req)
        # The entry's name is not known yet: validate the tag with a placeholder flow name.
        request = run_request("bundle", {}, tag or None, None, settings)
        bundle = parse_bundle(
            part.data,
            self.services.pm,
            WorkflowContext(
                settings=settings, tag=request.tag, tenant_id=caller.tenant_id, where="gateway"
            ),
        )
        job = build_job(
            str(uuid.uuid4()),
            bundle.entry,
            request.tag,
            request.tags,
            bundle.params,
            tenant_id=caller.tenant_id,
            api_key_id=caller.api_key_id,
            workflow_yaml=bundle.workflows[bundle.entry].encode("utf-8"),
        )
        job["bundle_workflows"] = bundle.workflows
        job["bundle_sha256"] = bundle.sha256
        if bundle.spawns and settings.spawn_requires_approval:
            await self._hold(job)
            status = PENDING_APPROVAL
        else:
            await publish_run(self.services, job)
            status = PENDING
        resp.media = {"run_id": job["run_id"], "status": status}

    async def _hold(self, job: dict[str, Any]) -> None:
        """Store the run PENDING_APPROVAL with its job kept for the approval."""
        encoded_job(self.services, job)  # 413 now rather than at approval time
        continuations = Continuations(
            await self.services.nats.kv(self.services.settings.spawn_kv_bucket)
        )
        await continuations.put(job["run_id"], {"job": job})
        snapshot = pending_snapshot(job)
        snapshot["status"] = PENDING_APPROVAL
        snapshot["approval"] = {"state": "pending"}
        store = await self.services.run_store()
        await store.create(snapshot, job)


class RunDecisionResource:
    """``POST /runs/{run_id}/approve`` or ``/reject`` of a PENDING_APPROVAL run; a reject may
    carry ``{"reason": "..."}``.

    Answers the snapshot; 409 ERR-PYOCO-0036 when the run is not awaiting approval (a
    repeated identical decision answers 200 with the snapshot, unchanged). An approval
    publishes the job before it writes the snapshot: a worker may claim the job first, and
    then records the approval itself (``approved_by`` in the job), so an approval is never
    half done (PENDING without a job).
    """

    def __init__(self, services: GatewayServices, decision: str) -> None:
        self.services = services
        self.decision = decision

    async def on_post(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, run_id: str
    ) -> None:
        caller = caller_of(req)
        reason = await self._reason(req) if self.decision == REJECTED else None
        store = await self.services.run_store()
        before, _ = await visible_snapshot(store, caller, run_id)
        if self.decision == APPROVED and before.get("status") == PENDING_APPROVAL:
            # Publish first: the queued job is the approval (a worker that takes it before
            # the write below runs it and records the approval), so a gateway killed here
            # loses nothing.
            await self._queue(run_id, caller.api_key_id)
            crash_point(BEFORE_APPROVAL_WRITE)
        change = Decide(self.decision, caller.api_key_id, reason)
        try:
            snapshot, _ = await store.update(run_id, change, f"run_{self.decision}")
        except RunNotFound:
            raise run_not_found(run_id) from None
        repeated = (snapshot.get("approval") or {}).get("state") == self.decision
        if not change.applied and not repeated:
            raise ApiError(
                409,
                NOT_AWAITING_APPROVAL,
                f"run {run_id!r} is {change.found}, not {PENDING_APPROVAL}",
                status=change.found,
            )
        log.info("run_approval", run_id=run_id, decision=self.decision, applied=change.applied)
        resp.media = await run_view(self.services, snapshot, set())

    async def _reason(self, req: falcon.asgi.Request) -> str | None:
        """The optional ``reason`` of a rejection (no body, or a JSON object)."""
        settings = self.services.settings
        raw = await read_body(req, settings.http_max_body_bytes)
        if not raw.strip():
            return None
        document = parse_json(req, raw, settings.max_nesting_depth)
        if not isinstance(document, dict):
            raise invalid("the request body must be a JSON object")
        reason = document.get("reason")
        if reason is None:
            return None
        if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS:
            raise invalid(
                f"reason must be a string of at most {MAX_REASON_CHARS} characters",
                [{"field": "reason", "message": "expected a short string"}],
            )
        return reason.strip() or None

    async def _queue(self, run_id: str, approved_by: str | None) -> None:
        settings = self.services.settings
        continuations = Continuations(await self.services.nats.kv(settings.spawn_kv_bucket))
        record, _ = await continuations.get(run_id)
        if record is None:
            log.error("approved_run_without_job", run_id=run_id)
            return
        job = {**record["job"], APPROVED_BY: approved_by}
        await publish(self.services.nats, settings, job, f"{run_id}:{job.get('attempt', 1)}")


def install_child_routes(app: falcon.asgi.App, services: GatewayServices) -> None:
    """Add the bundle and approval routes, and the fan-in / cascade service."""
    app.add_middleware(ChildJoin(services))
    app.add_route("/runs/bundle", RunBundleResource(services))
    app.add_route("/runs/{run_id}/approve", RunDecisionResource(services, APPROVED))
    app.add_route("/runs/{run_id}/reject", RunDecisionResource(services, REJECTED))
