"""``GET /runs?parent_run_id=``: the children of one run, in spawn order.

Answered from the parent's ``child_run_ids`` and the children's snapshots, not from the run
index (a parent lists at most ``PYOCO_SPAWN_MAX_CHILDREN`` ids). ``status``, ``flow``, ``tag``,
``schedule_id`` and ``limit`` filter as for any listing; a parent the caller cannot see has no
children.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import falcon.asgi
from nats.js.errors import InvalidKeyError

from ...run_store import RunNotFound
from ..error_responses import invalid
from ..run_index import summarize
from ..tenancy import Caller
from ..validation import MAX_RUN_ID_CHARS, ListQuery

if TYPE_CHECKING:
    from ..services import GatewayServices

#: Tree fields added to each child's summary.
TREE_SUMMARY_FIELDS = ("parent_run_id", "root_run_id", "spawn_depth", "child_run_ids")


def parent_filter(req: falcon.asgi.Request) -> str | None:
    """The ``parent_run_id`` query parameter (``None`` when absent); 422 when malformed."""
    values = req.get_param_as_list("parent_run_id")
    if not values:
        return None
    if len(values) > 1 or not values[0] or len(values[0]) > MAX_RUN_ID_CHARS:
        raise invalid(
            f"invalid run listing: parent_run_id must be one run id of 1 to {MAX_RUN_ID_CHARS} "
            "characters",
            [{"field": "parent_run_id", "message": "must be one run id"}],
        )
    return values[0]


def with_tree_fields(snapshot: dict[str, Any]) -> dict[str, Any]:
    """``snapshot`` with the tree fields every run shows (a run nobody spawned is its own
    root, at depth 0, without children)."""
    snapshot.setdefault("parent_run_id", None)
    snapshot.setdefault("root_run_id", snapshot.get("run_id"))
    snapshot.setdefault("child_run_ids", [])
    snapshot.setdefault("spawn_depth", 0)
    return snapshot


def tree_summary(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The list view of a run with its place in the tree."""
    summary = summarize(snapshot)
    for key in TREE_SUMMARY_FIELDS:
        if key in snapshot:
            summary[key] = snapshot[key]
    return summary


async def list_children(
    services: GatewayServices, caller: Caller, parent_run_id: str, query: ListQuery
) -> list[dict[str, Any]]:
    """Summaries of the visible children of ``parent_run_id`` that match ``query``."""
    store = await services.run_store()
    try:
        parent, _ = await store.get(parent_run_id)
    except (RunNotFound, InvalidKeyError):  # no run has an id that is not a valid key
        return []
    if not caller.sees(parent):
        return []

    async def load(run_id: str) -> dict[str, Any] | None:
        try:
            snapshot, _ = await store.get(run_id)
        except (RunNotFound, InvalidKeyError):
            return None
        return snapshot if caller.sees(snapshot) else None

    ids = list(parent.get("child_run_ids") or [])
    snapshots = await asyncio.gather(*(load(run_id) for run_id in ids))
    found = []
    for snapshot in snapshots:
        if snapshot is None:
            continue
        if query.status and snapshot.get("status") != query.status:
            continue
        if query.flow and snapshot.get("flow_name") != query.flow:
            continue
        if query.tag and query.tag not in (snapshot.get("tags") or [snapshot.get("tag")]):
            continue
        if query.schedule_id and snapshot.get("schedule_id") != query.schedule_id:
            continue
        found.append(tree_summary(snapshot))
    return found[: query.limit]
