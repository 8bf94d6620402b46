"""Delta listings of ``GET /runs`` (the 0.5 "vnext" mode).

A listing is in delta mode when the query has ``updated_after``, ``cursor`` (other than a
digits-only ``Next-Cursor`` of the plain listing) or ``workflow_yaml_sha256``; it answers
``{"items": [...], "next_cursor": str | null}``. Items are the same summaries as the plain
listing, newest ``updated_at`` first; ``updated_after`` keeps runs updated strictly after that
epoch time; ``next_cursor`` is set only when more matching runs follow the page. The walk runs
down the index's ``(updated_at, run_id)`` ordering from the cursor to ``updated_after``
(:meth:`~..run_index.RunIndex.select_delta`) and stops one match after the page, so a page
costs O(limit) for listings not filtered by status, flow, tag or ``q``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import falcon.asgi

from ..error_responses import invalid
from .cursor import InvalidCursor, decode_cursor, encode_cursor
from .order import UpdatedKey

if TYPE_CHECKING:
    from ..run_index import RunIndex

#: Longest ``workflow_yaml_sha256`` filter accepted (a SHA-256 is 64 hex digits).
MAX_SHA256_CHARS = 128
_DIGITS = re.compile(r"^[0-9]+\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class DeltaQuery:
    """The delta-mode parameters of a ``GET /runs`` query."""

    updated_after: float | None = None
    cursor: UpdatedKey | None = None
    workflow_yaml_sha256: str | None = None


def is_delta(req: falcon.asgi.Request) -> bool:
    """True when the query asks for a delta listing (see the module text)."""
    if req.get_param("updated_after") is not None:
        return True
    if req.get_param("workflow_yaml_sha256") is not None:
        return True
    cursors = req.get_param_as_list("cursor") or []
    return any(not _DIGITS.match(value) for value in cursors)


def delta_query(req: falcon.asgi.Request) -> DeltaQuery:
    """Validate the delta parameters; 422 (ERR-PYOCO-0002) naming each bad one."""
    errors: list[dict[str, str]] = []

    def single(name: str) -> str | None:
        values = req.get_param_as_list(name) or []
        if len(values) > 1:
            errors.append({"field": name, "message": "must be given at most once"})
        return values[0] if values else None

    updated_after = None
    raw = single("updated_after")
    if raw is not None:
        try:
            updated_after = float(raw)
        except ValueError:
            updated_after = math.nan
        if not math.isfinite(updated_after):
            errors.append({"field": "updated_after", "message": "must be a number (epoch seconds)"})
            updated_after = None
    cursor = None
    raw = single("cursor")
    if raw:
        try:
            cursor = decode_cursor(raw)
        except InvalidCursor:
            errors.append(
                {"field": "cursor", "message": "must be the next_cursor of a previous page"}
            )
    sha = single("workflow_yaml_sha256")
    if sha is not None:
        sha = sha.strip().lower() or None
        if sha is not None and (len(sha) > MAX_SHA256_CHARS or _CONTROL.search(sha)):
            errors.append(
                {
                    "field": "workflow_yaml_sha256",
                    "message": f"must be at most {MAX_SHA256_CHARS} printable characters",
                }
            )
    if errors:
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise invalid(f"invalid query: {summary}", errors)
    return DeltaQuery(updated_after=updated_after, cursor=cursor, workflow_yaml_sha256=sha)


@dataclass(frozen=True)
class DeltaPage:
    """One delta page: summaries and the token of the next page (``None``: nothing follows)."""

    items: list[dict[str, Any]]
    next_cursor: str | None


def delta_page(
    index: RunIndex,
    tenant_id: str | None,
    query: DeltaQuery,
    *,
    limit: int,
    **filters: Any,
) -> DeltaPage:
    """Up to ``limit`` summaries of ``tenant_id``'s runs (``None``: every run) matching
    ``filters`` (the plain listing's ``status``, ``flow``, ``tag``, ``q``) and ``query``.
    Call it on the index's thread; it reads one row more than ``limit`` to learn whether
    another page follows."""
    rows = index.select_delta(
        tenant_id,
        updated_after=query.updated_after,
        before=query.cursor,
        workflow_yaml_sha256=query.workflow_yaml_sha256,
        limit=limit + 1,
        **filters,
    )
    page = rows[:limit]
    more = len(rows) > limit and page
    return DeltaPage([summary for _, summary in page], encode_cursor(page[-1][0]) if more else None)
