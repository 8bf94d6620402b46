"""The claim protocol on a KV key: create it, or take it over from a holder that is gone.

A claimer creates the key atomically. When the key exists already, the claimer reads the record
and asks the caller whether the holder may be replaced (a stale claim of a crashed gateway, say);
if so the record is replaced with compare-and-set against the revision read, so of several
claimers taking over the same record only one wins. Used for ``Idempotency-Key`` records
(:mod:`.idempotency`) and the DLQ redrive markers (:mod:`.redrive`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError


@dataclass(frozen=True)
class Held:
    """Another claimer holds the key and keeps it: its record as read."""

    record: dict[str, Any]


def decode_record(value: bytes | None) -> dict[str, Any] | None:
    """A claim record as stored: ``None`` for an empty value, ``{}`` when it is not a JSON
    object."""
    if not value:
        return None
    try:
        record = json.loads(value)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


async def read_record(kv: Any, key: str) -> tuple[dict[str, Any], int] | None:
    """The record at ``key`` and its revision, or ``None`` when there is none."""
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return None
    record = decode_record(entry.value)
    return None if record is None else (record, entry.revision)


async def claim_key(
    kv: Any, key: str, data: bytes, may_take_over: Callable[[dict[str, Any]], bool]
) -> int | Held | None:
    """One attempt to hold ``key`` with the record ``data``.

    :param may_take_over: asked with the existing record whether it may be replaced; it may
        also raise, to refuse the claim outright.
    :return: the revision this claimer now holds; :class:`Held` when the existing holder
        keeps the key; ``None`` when the key changed meanwhile (deleted, or another claimer
        won the take-over): try again.
    """
    try:
        return await kv.create(key, data)
    except KeyWrongLastSequenceError:
        pass
    found = await read_record(kv, key)
    if found is None:
        return None
    record, revision = found
    if not may_take_over(record):
        return Held(record)
    try:
        return await kv.update(key, data, last=revision)
    except KeyWrongLastSequenceError:
        return None
