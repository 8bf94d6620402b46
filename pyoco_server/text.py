"""Text that cannot be stored or sent: strings holding lone UTF-16 surrogates.

JSON (``"\\ud800"``) and YAML (``"\\uD800"``) escapes can produce Python strings with a
surrogate code point that has no partner. Such a string has no UTF-8 encoding, so a snapshot,
a job or a response containing it could never be written: inputs are checked when they are
parsed, and refused.
"""

from __future__ import annotations

from typing import Any

#: How a JSON text can spell a surrogate (``\\uD800``-``\\uDFFF``); anything else is valid.
JSON_SURROGATE_ESCAPES = (b"\\ud", b"\\uD")


def has_lone_surrogate(value: Any) -> bool:
    """True when a string anywhere in ``value`` (keys included) cannot be encoded as UTF-8."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(has_lone_surrogate(k) or has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_lone_surrogate(item) for item in value)
    return False


def json_may_hold_surrogates(raw: bytes) -> bool:
    """Cheap pre-check of a JSON text: only an escape can put a surrogate in a decoded string."""
    return any(escape in raw for escape in JSON_SURROGATE_ESCAPES)
