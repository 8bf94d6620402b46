"""Validation of what clients send: run submissions, query parameters, headers.

Each function either returns a clean value or raises a 422 (ERR-PYOCO-0002) whose ``errors``
list names every offending field, so a bad request never reaches NATS.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import falcon.asgi

from ..config import TAG_PATTERN, Settings
from ..model import RUN_STATUSES
from .error_responses import invalid

MAX_FLOW_NAME_CHARS = 256
MAX_TAG_CHARS = 64
MAX_TAGS = 32
MAX_IDEMPOTENCY_KEY_CHARS = 255
LIST_LIMIT_DEFAULT = 50
LIST_LIMIT_MAX = 200
MAX_RUN_ID_SEARCH_CHARS = 64
#: A page cursor is a stream sequence number (an unsigned 64-bit integer).
CURSOR_PATTERN = re.compile(r"^[1-9][0-9]{0,19}\Z")
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: The ``include`` values of ``GET /runs``.
LIST_INCLUDES = ("full",)
#: Spellings of a boolean query parameter (:func:`flag`; matched after lower-casing).
FLAG_TRUE_WORDS = ("1", "true", "yes", "on")
FLAG_FALSE_WORDS = ("0", "false", "no", "off", "")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]+\Z")


@dataclass(frozen=True)
class RunRequest:
    """A validated run submission."""

    flow_name: str
    tag: str
    tags: list[str]
    params: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self, **extra: Any) -> str:
        """A digest of the request, to recognise an ``Idempotency-Key`` reused for another."""
        document = {
            "flow_name": self.flow_name,
            "tag": self.tag,
            "tags": self.tags,
            "params": self.params,
            **extra,
        }
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), default=repr)
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ListQuery:
    """Validated ``GET /runs`` parameters."""

    status: str | None = None
    flow: str | None = None
    tag: str | None = None
    q: str | None = None
    limit: int = LIST_LIMIT_DEFAULT
    cursor: int | None = None
    full: bool = False
    schedule_id: str | None = None


class _Errors:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, name: str, message: str) -> None:
        self.items.append({"field": name, "message": message})

    def raise_if_any(self, what: str) -> None:
        if self.items:
            summary = "; ".join(f"{e['field']}: {e['message']}" for e in self.items)
            raise invalid(f"invalid {what}: {summary}", self.items)


def _check_flow_name(value: Any, errors: _Errors) -> str:
    if not isinstance(value, str) or not value.strip():
        errors.add("flow_name", "must be a non-empty string")
        return ""
    if len(value) > MAX_FLOW_NAME_CHARS:
        errors.add("flow_name", f"must be at most {MAX_FLOW_NAME_CHARS} characters")
    elif _CONTROL.search(value):
        errors.add("flow_name", "must not contain control characters")
    return value


def _check_tag(value: Any, name: str, errors: _Errors) -> str | None:
    if not isinstance(value, str):
        errors.add(name, "must be a string")
        return None
    if len(value) > MAX_TAG_CHARS:
        errors.add(name, f"must be at most {MAX_TAG_CHARS} characters")
        return None
    if not TAG_PATTERN.match(value):
        errors.add(name, "must match ^[A-Za-z0-9_-]+$ (letters, digits, '_' or '-'; no '.')")
        return None
    return value


def run_request(
    flow_name: Any,
    params: Any,
    tag: Any,
    tags: Any,
    settings: Settings,
) -> RunRequest:
    """Validate submission fields (``None`` means absent) and apply the contract's defaults.

    ``tag`` (the routing tag) defaults to the first of ``tags``, else ``PYOCO_DEFAULT_TAG``;
    ``tags`` defaults to ``[tag]`` and always contains ``tag``.
    """
    errors = _Errors()
    flow_name = _check_flow_name(flow_name, errors)
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        errors.add("params", "must be a JSON object")
    clean_tags: list[str] = []
    if tags is not None:
        if not isinstance(tags, list):
            errors.add("tags", "must be a list of tags")
        elif len(tags) > MAX_TAGS:
            errors.add("tags", f"must have at most {MAX_TAGS} entries")
        else:
            for index, item in enumerate(tags):
                checked = _check_tag(item, f"tags[{index}]", errors)
                if checked is not None and checked not in clean_tags:
                    clean_tags.append(checked)
    if tag is not None:
        tag = _check_tag(tag, "tag", errors)
    errors.raise_if_any("run request")
    routing_tag = tag or (clean_tags[0] if clean_tags else settings.default_tag)
    if routing_tag not in clean_tags:
        clean_tags.insert(0, routing_tag)
    return RunRequest(flow_name=flow_name, tag=routing_tag, tags=clean_tags, params=params)


def run_request_from_json(body: Any, settings: Settings) -> RunRequest:
    """Validate a ``POST /runs`` body (unknown fields are ignored, as the original did)."""
    if not isinstance(body, dict):
        raise invalid(
            "the request body must be a JSON object with 'flow_name'",
            [{"field": "body", "message": "must be a JSON object"}],
        )
    return run_request(
        body.get("flow_name"), body.get("params"), body.get("tag"), body.get("tags"), settings
    )


def _single(req: falcon.asgi.Request, name: str, errors: _Errors) -> str | None:
    values = req.get_param_as_list(name)
    if not values:
        return None
    if len(values) > 1:
        errors.add(name, "must be given at most once")
    return values[0]


def list_query(req: falcon.asgi.Request, *, seq_cursor: bool = True) -> ListQuery:
    """Validate ``GET /runs`` query parameters; ``seq_cursor=False`` leaves ``cursor`` to the
    delta listing (:mod:`.run_delta`)."""
    errors = _Errors()
    status = _single(req, "status", errors)
    if status is not None:
        status = status.strip().upper()
        if status not in RUN_STATUSES:
            errors.add("status", "must be one of " + ", ".join(RUN_STATUSES))
    flow = _single(req, "flow", errors)
    if flow is not None and len(flow) > MAX_FLOW_NAME_CHARS:
        errors.add("flow", f"must be at most {MAX_FLOW_NAME_CHARS} characters")
    tag = _single(req, "tag", errors)
    if tag is not None:
        _check_tag(tag, "tag", errors)
    limit = LIST_LIMIT_DEFAULT
    raw_limit = _single(req, "limit", errors)
    if raw_limit is not None:
        try:
            limit = int(raw_limit)
        except ValueError:
            errors.add("limit", f"must be an integer from 1 to {LIST_LIMIT_MAX}")
        else:
            if not 1 <= limit <= LIST_LIMIT_MAX:
                errors.add("limit", f"must be an integer from 1 to {LIST_LIMIT_MAX}")
    q = _single(req, "q", errors)
    if q is not None:
        q = q.strip() or None
        if q is not None and len(q) > MAX_RUN_ID_SEARCH_CHARS:
            errors.add("q", f"must be at most {MAX_RUN_ID_SEARCH_CHARS} characters")
    cursor = None
    raw_cursor = _single(req, "cursor", errors) if seq_cursor else None
    if raw_cursor is not None:
        if CURSOR_PATTERN.match(raw_cursor) and int(raw_cursor) < 2**64:
            cursor = int(raw_cursor)
        else:
            errors.add("cursor", "must be the Next-Cursor value of a previous page")
    full = "full" in includes(req, LIST_INCLUDES, errors)
    schedule_id = _single(req, "schedule_id", errors)
    errors.raise_if_any("query")
    return ListQuery(
        status=status,
        flow=flow,
        tag=tag,
        q=q,
        limit=limit,
        cursor=cursor,
        full=full,
        schedule_id=schedule_id,
    )


def includes(
    req: falcon.asgi.Request, allowed: tuple[str, ...], errors: _Errors | None = None
) -> set[str]:
    """The ``include`` values (repeatable and/or comma-separated); unknown ones are a 422."""
    own = errors is None
    errors = errors or _Errors()
    found: set[str] = set()
    for value in req.get_param_as_list("include") or []:
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            if item not in allowed:
                errors.add("include", f"unknown value {item!r}; accepted: {', '.join(allowed)}")
            found.add(item)
    if own:
        errors.raise_if_any("query")
    return found


def idempotency_key(req: falcon.asgi.Request) -> str | None:
    """The ``Idempotency-Key`` header: 1 to 255 printable ASCII characters, or absent."""
    value = req.get_header(IDEMPOTENCY_HEADER)
    if value is None:
        return None
    if not value or len(value) > MAX_IDEMPOTENCY_KEY_CHARS or not _PRINTABLE_ASCII.match(value):
        raise invalid(
            f"{IDEMPOTENCY_HEADER} must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII "
            "characters",
            [{"field": IDEMPOTENCY_HEADER, "message": "invalid header value"}],
        )
    return value


#: Longest ``reason`` accepted as a DLQ filter.
MAX_DLQ_REASON_CHARS = 64
MAX_RUN_ID_CHARS = 128
#: The largest stream sequence (a dead letter's ``seq``, a ``before`` cursor).
MAX_STREAM_SEQ = 2**63 - 1
_SEQ = re.compile(r"^[1-9][0-9]{0,18}\Z")


@dataclass(frozen=True)
class DlqQuery:
    """Validated ``GET /dlq`` / ``POST /dlq/redrive`` parameters."""

    tag: str | None = None
    reason: str | None = None
    run_id: str | None = None
    limit: int = LIST_LIMIT_DEFAULT
    before: int | None = None

    def filters(self) -> dict[str, Any]:
        """The filters as keyword arguments of :meth:`DeadLetterQueue.page` (not ``limit``)."""
        return {
            "tag": self.tag,
            "reason": self.reason,
            "run_id": self.run_id,
            "before": self.before,
        }


def dlq_seq(raw: str) -> int:
    """A dead letter's ``seq`` from the path; 422 when it is not a positive integer."""
    if _SEQ.match(raw) and int(raw) <= MAX_STREAM_SEQ:
        return int(raw)
    raise invalid(
        f"invalid dead-letter sequence {raw[:40]!r}: expected a positive integer",
        [{"field": "seq", "message": "must be a positive integer (the entry's seq)"}],
    )


def _limit(req: falcon.asgi.Request, errors: _Errors) -> int:
    raw = _single(req, "limit", errors)
    if raw is None:
        return LIST_LIMIT_DEFAULT
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= LIST_LIMIT_MAX:
        errors.add("limit", f"must be an integer from 1 to {LIST_LIMIT_MAX}")
    return limit


def dlq_query(req: falcon.asgi.Request) -> DlqQuery:
    """Validate the ``tag``, ``reason``, ``run_id``, ``limit`` and ``before`` parameters."""
    errors = _Errors()
    tag = _single(req, "tag", errors)
    if tag is not None:
        tag = _check_tag(tag, "tag", errors)
    reason = _single(req, "reason", errors)
    if reason is not None and (len(reason) > MAX_DLQ_REASON_CHARS or _CONTROL.search(reason)):
        errors.add("reason", f"must be at most {MAX_DLQ_REASON_CHARS} printable characters")
    run_id = _single(req, "run_id", errors)
    if run_id is not None and (len(run_id) > MAX_RUN_ID_CHARS or _CONTROL.search(run_id)):
        errors.add("run_id", f"must be at most {MAX_RUN_ID_CHARS} printable characters")
    limit = _limit(req, errors)
    before = None
    raw_before = _single(req, "before", errors)
    if raw_before is not None:
        if _SEQ.match(raw_before) and int(raw_before) <= MAX_STREAM_SEQ:
            before = int(raw_before)
        else:
            errors.add("before", "must be a positive integer (a Next-Cursor value)")
    errors.raise_if_any("query")
    return DlqQuery(
        tag=tag, reason=reason or None, run_id=run_id or None, limit=limit, before=before
    )


def flag(req: falcon.asgi.Request, name: str, default: bool = False) -> bool:
    """A boolean query parameter (``true/false``, ``1/0``, ``yes/no``); 422 otherwise."""
    errors = _Errors()
    raw = _single(req, name, errors)
    errors.raise_if_any("query")
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in FLAG_TRUE_WORDS:
        return True
    if lowered in FLAG_FALSE_WORDS:
        return False
    raise invalid(
        f"invalid query: {name}: must be true or false",
        [{"field": name, "message": "must be true or false"}],
    )
