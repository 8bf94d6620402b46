"""Validated ``GET /workers`` parameters.

``scope`` (``active``: RUNNING and IDLE workers, the default; ``all``), ``state`` (one or more
states, case-insensitive, repeatable or comma-separated; 0.5's ``STOPPED_GRACEFUL`` is read as
``STOPPED``), ``include_hidden`` (default false),
``limit`` (1..500, default 100), and the older ``include_stopped``. When ``scope`` is absent but
``state`` or ``include_stopped`` is given, the scope is ``all``, so those filters keep the
meaning they had before ``scope`` existed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import falcon.asgi

from ..error_responses import invalid
from ..validation import flag
from ..workers import IDLE, RUNNING, STOPPED, WORKER_STATES

SCOPES = ("active", "all")
ACTIVE_STATES = frozenset({RUNNING, IDLE})
WORKERS_LIMIT_DEFAULT = 100
WORKERS_LIMIT_MAX = 500
#: State names of pyoco-server 0.5 accepted as ours.
STATE_ALIASES = {"STOPPED_GRACEFUL": STOPPED}
_LIMIT = re.compile(r"[0-9]{1,6}")


@dataclass(frozen=True)
class WorkersQuery:
    """What to list: states kept (``None``: every state), hidden workers or not, how many."""

    states: frozenset[str] | None
    include_hidden: bool
    limit: int

    def keeps(self, view: dict) -> bool:
        """Whether a worker view (with ``state`` and ``hidden``) is listed."""
        if self.states is not None and view.get("state") not in self.states:
            return False
        return self.include_hidden or not view.get("hidden")


def _one(req: falcon.asgi.Request, name: str) -> str | None:
    values = req.get_param_as_list(name) or []
    if len(values) > 1:
        raise invalid(
            f"invalid query: {name}: must be given at most once",
            [{"field": name, "message": "must be given at most once"}],
        )
    return values[0] if values else None


def _states(req: falcon.asgi.Request) -> frozenset[str] | None:
    found: set[str] = set()
    for value in req.get_param_as_list("state") or []:
        for item in value.split(","):
            name = item.strip().upper()
            if not name:
                continue
            name = STATE_ALIASES.get(name, name)
            if name not in WORKER_STATES:
                message = f"unknown state {name[:40]!r}; accepted: {', '.join(WORKER_STATES)}"
                raise invalid(
                    f"invalid query: state: {message}", [{"field": "state", "message": message}]
                )
            found.add(name)
    return frozenset(found) or None


def workers_query(req: falcon.asgi.Request) -> WorkersQuery:
    """Validate the query of ``GET /workers``; 422 (ERR-PYOCO-0002) naming a bad parameter."""
    raw_scope = _one(req, "scope")
    scope = raw_scope.strip().lower() if raw_scope is not None else None
    if scope is not None and scope not in SCOPES:
        raise invalid(
            "invalid query: scope: must be active or all",
            [{"field": "scope", "message": "must be active or all"}],
        )
    states = _states(req)
    raw_stopped = _one(req, "include_stopped")
    include_stopped = flag(req, "include_stopped", default=True)
    include_hidden = flag(req, "include_hidden", default=False)
    limit = WORKERS_LIMIT_DEFAULT
    raw_limit = _one(req, "limit")
    if raw_limit is not None:
        limit = int(raw_limit) if _LIMIT.fullmatch(raw_limit) else 0
        if not 1 <= limit <= WORKERS_LIMIT_MAX:
            message = f"must be an integer from 1 to {WORKERS_LIMIT_MAX}"
            raise invalid(
                f"invalid query: limit: {message}", [{"field": "limit", "message": message}]
            )
    if scope is None:
        scope = "all" if states is not None or raw_stopped is not None else "active"
    kept = set(WORKER_STATES) if states is None else set(states)
    if scope == "active":
        kept &= ACTIVE_STATES
    if not include_stopped:
        kept.discard(STOPPED)
    return WorkersQuery(
        states=None if kept == set(WORKER_STATES) else frozenset(kept),
        include_hidden=include_hidden,
        limit=limit,
    )
