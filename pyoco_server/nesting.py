"""Bounded nesting of parsed input: JSON bodies, workflow YAML, stored documents read back.

Python's parsers, copiers and encoders recurse once per level, so a few kilobytes of ``[[[[``
reach the interpreter's recursion limit (a ``RecursionError`` deep inside a request). Every
document that comes from outside is therefore measured here first, without recursion, and
refused when it nests deeper than ``PYOCO_MAX_NESTING_DEPTH`` levels (each object or array is
one level; the document itself is level 1).
"""

from __future__ import annotations

import json
from typing import Any

from .errors import PyocoServerError

#: The default of ``PYOCO_MAX_NESTING_DEPTH``.
DEFAULT_MAX_NESTING_DEPTH = 64
#: Largest accepted ``PYOCO_MAX_NESTING_DEPTH``: well below the interpreter's recursion limit,
#: so code that walks an accepted document recursively can never hit it.
MAX_NESTING_DEPTH_LIMIT = 200
#: Extra levels allowed in documents this system wrote itself (a snapshot holds the params one
#: level down, task records three levels down).
STORED_DOCUMENT_HEADROOM = 8
#: What replaces a part of a stored document that nests too deeply.
PRUNED_MARKER = "[removed: nested deeper than {limit} levels]"


class NestingTooDeep(PyocoServerError):
    """A document nests deeper than the limit (or too deep to parse at all)."""

    number = 2

    def __init__(self, what: str, limit: int) -> None:
        self.what = what
        self.limit = limit
        super().__init__(
            f"{what} nests deeper than {limit} levels (PYOCO_MAX_NESTING_DEPTH={limit})"
        )


def nesting_depth(document: Any, stop_after: int | None = None) -> int:
    """How many dicts/lists (and tuples) deep ``document`` goes; scalars are depth 0.

    Iterative, so any depth is measured safely. With ``stop_after``, returns as soon as the
    depth exceeds it (the result is then ``stop_after + 1``).
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, (list, tuple)):
            children = value
        else:
            continue
        if depth > deepest:
            deepest = depth
            if stop_after is not None and deepest > stop_after:
                return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def check_nesting(document: Any, limit: int, what: str) -> Any:
    """Return ``document``, or raise :class:`NestingTooDeep` when it is deeper than ``limit``."""
    if nesting_depth(document, stop_after=limit) > limit:
        raise NestingTooDeep(what, limit)
    return document


def loads_bounded(raw: bytes | str, limit: int, what: str) -> Any:
    """``json.loads`` that raises :class:`NestingTooDeep` (never ``RecursionError``) past
    ``limit`` levels. Other decoding errors propagate as ``json.loads`` raises them."""
    try:
        document = json.loads(raw)
    except RecursionError:
        raise NestingTooDeep(what, limit) from None
    return check_nesting(document, limit, what)


def prune_nesting(document: Any, limit: int) -> Any:
    """A copy of ``document`` whose containers below level ``limit`` are replaced by a marker.

    For documents this system stored earlier (a snapshot written by an older version): they
    stay readable, and nothing downstream recurses deeper than ``limit``.
    """
    if nesting_depth(document, stop_after=limit) <= limit:
        return document
    marker = PRUNED_MARKER.format(limit=limit)

    def copy(value: Any, depth: int) -> Any:
        if not isinstance(value, (dict, list, tuple)):
            return value
        if depth > limit:
            return marker
        if isinstance(value, dict):
            return {key: copy(item, depth + 1) for key, item in value.items()}
        return [copy(item, depth + 1) for item in value]

    return copy(document, 1)


def load_stored(raw: bytes | str, limit: int, what: str) -> Any:
    """Decode a document this system stored (a run snapshot, an index record).

    Allows :data:`STORED_DOCUMENT_HEADROOM` levels above ``limit`` and prunes anything deeper,
    so an old over-deep snapshot is still shown; one too deep even to decode raises
    :class:`NestingTooDeep`.
    """
    try:
        document = json.loads(raw)
    except RecursionError:
        raise NestingTooDeep(what, limit) from None
    return prune_nesting(document, limit + STORED_DOCUMENT_HEADROOM)
