"""What a client sees of one run: visibility (tenant) and the snapshot's projection.

Shared by ``GET /runs/{run_id}``, ``POST /runs/{run_id}/cancel`` and the events of
``GET /runs/{run_id}/watch``, so all three answer the same document for the same snapshot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nats.js.errors import InvalidKeyError

from ..model import PENDING
from ..run_store import RunNotFound, RunStore
from .children.listing import with_tree_fields
from .error_responses import run_not_found
from .queues import queue_view
from .tenancy import Caller
from .workers import get_worker, worker_view

if TYPE_CHECKING:
    from .services import GatewayServices

#: ``include`` values of a run: ``records`` adds ``task_records``; ``full`` and ``all`` return
#: the snapshot exactly as stored.
RUN_INCLUDES = ("records", "full", "all")


async def visible_snapshot(
    store: RunStore, caller: Caller, run_id: str
) -> tuple[dict[str, Any], int]:
    """The run's snapshot and revision, or 404 when it does not exist or belongs to another
    tenant (both answer alike)."""
    try:
        snapshot, revision = await store.get(run_id)
    except (RunNotFound, InvalidKeyError):
        raise run_not_found(run_id) from None
    if not caller.sees(snapshot):
        raise run_not_found(run_id)
    return snapshot, revision


async def run_view(
    services: GatewayServices, snapshot: dict[str, Any], wanted: set[str]
) -> dict[str, Any]:
    """The snapshot as the API shows it (``snapshot`` is changed in place and returned).

    ``task_records`` only when ``wanted`` (the ``include`` values) is not empty; when the run
    has a worker, its liveness from the workers bucket: ``worker_alive``,
    ``worker_heartbeat_at`` and ``worker_tags``; its place in a run tree (``parent_run_id``,
    ``root_run_id``, ``child_run_ids``, ``spawn_depth``, also for a run without one); for a
    PENDING run, its ``queue`` (which
    says when no live worker serves the run's tag).
    """
    if not wanted:
        snapshot.pop("task_records", None)
    with_tree_fields(snapshot)
    worker_id = snapshot.get("worker_id")
    if worker_id:
        record = await get_worker(await services.workers_kv(), worker_id)
        view = worker_view(record, services.settings.workers_kv_ttl_sec) if record else {}
        snapshot["worker_alive"] = bool(view.get("alive"))
        snapshot["worker_heartbeat_at"] = view.get("heartbeat_at")
        snapshot["worker_tags"] = view.get("tags")
    if snapshot.get("status") == PENDING:
        queue = await queue_view(services, snapshot)
        if queue is not None:
            snapshot["queue"] = queue
    return snapshot
