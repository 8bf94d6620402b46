"""The ``cursor`` of a delta listing: an opaque, URL-safe token naming the last run of a page.

It encodes the page's last position in the ``(updated_at, run_id)`` ordering
(:mod:`.order`), so the next page starts right after it in O(log n), whatever happened to the
runs before it. Tokens are base64url text of a small JSON object, so they never consist of
digits only (a digits-only ``cursor`` is the plain listing's ``Next-Cursor``).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re

from .order import UpdatedKey

#: Longest token accepted (a run id is at most 128 characters).
MAX_CURSOR_CHARS = 512
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InvalidCursor(ValueError):
    """The text is not a cursor this gateway issued."""


def encode_cursor(key: UpdatedKey) -> str:
    """The token of a position."""
    text = json.dumps({"t": key[0], "id": key[1]}, separators=(",", ":"), ensure_ascii=True)
    return base64.urlsafe_b64encode(text.encode("ascii")).decode("ascii").rstrip("=")


def decode_cursor(token: str) -> UpdatedKey:
    """The position a token names; raises :class:`InvalidCursor` for anything else."""
    if not token or len(token) > MAX_CURSOR_CHARS or not _TOKEN.match(token):
        raise InvalidCursor(token)
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        document = json.loads(raw.decode("ascii"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursor(token) from None
    if not isinstance(document, dict) or set(document) != {"t", "id"}:
        raise InvalidCursor(token)
    updated_at, run_id = document["t"], document["id"]
    if isinstance(updated_at, bool) or not isinstance(updated_at, (int, float)):
        raise InvalidCursor(token)
    if not math.isfinite(updated_at):
        raise InvalidCursor(token)
    if not isinstance(run_id, str) or not run_id or len(run_id) > 128 or _CONTROL.search(run_id):
        raise InvalidCursor(token)
    return float(updated_at), run_id
