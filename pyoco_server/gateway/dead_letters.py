"""The dead-letter stream as the gateway reads it: newest-first pages, one entry, delete,
publish.

Dead letters are messages on ``<PYOCO_DLQ_SUBJECT_PREFIX>.<tag>`` in the Limits-retention
stream ``PYOCO_DLQ``; an entry's id is its stream sequence (``seq``). A page is read
*backwards* from the stream's last sequence (or from ``before``) in windows of sequences: each
window is one short-lived consumer (filtered on the tag's subject when the listing is filtered
by tag) read up to the window's end. The first window is a little larger than ``limit`` (room for
deleted entries), later ones double up to :data:`MAX_WINDOW`, and the whole request examines at
most ``PYOCO_DLQ_LIST_SCAN_MAX`` sequences. An unfiltered page therefore costs about ``limit``
messages whatever the size of the DLQ; ``reason``/``run_id`` filters and other tenants' entries
are skipped in memory, so a rarely matching filter stops at the scan cap and answers a cursor
to continue from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from nats.js.errors import NotFoundError

from ..config import Settings
from ..stream_reader import StreamRecord, read_stream
from .error_responses import DEAD_LETTER_NOT_FOUND, ApiError
from .tenancy import Caller

#: Fields of a dead letter shown in a listing (``GET /dlq``); ``GET /dlq/{seq}`` has them all.
SUMMARY_FIELDS = (
    "timestamp",
    "reason",
    "error",
    "run_id",
    "flow_name",
    "tag",
    "tags",
    "worker_id",
    "num_delivered",
    "max_deliver",
    "attempt",
    "err_id",
    "tenant_id",
    "detected_by",
)
#: Longest ``error`` text in a listing; the whole text is in ``GET /dlq/{seq}``.
SUMMARY_ERROR_CHARS = 1024
#: Smallest and largest window of sequences one read covers.
MIN_WINDOW = 32
MAX_WINDOW = 1024
#: Messages fetched per pull inside a window.
FETCH_BATCH = 256
#: A stored dead letter larger than this is answered without its ``job`` (a foreign or
#: hand-written message; the worker caps the job it embeds at 512 KiB).
ENTRY_MAX_BYTES = 2 * 1024 * 1024
#: Characters of an unreadable message shown as ``payload``.
PAYLOAD_PREVIEW_CHARS = 4096


@dataclass(frozen=True)
class DlqPage:
    """Entries newest first, where to continue (``before`` of the next request; ``None`` when
    the stream has nothing older to read) and how many sequences the read examined."""

    entries: list[dict[str, Any]]
    next_cursor: int | None
    scanned: int = 0


def dead_letter_not_found(seq: int | str) -> ApiError:
    """The 404 of a dead letter that does not exist or belongs to another tenant."""
    return ApiError(404, DEAD_LETTER_NOT_FOUND, f"dead letter {seq} not found")


def decode_entry(seq: int, subject: str, data: bytes | None, prefix: str) -> dict[str, Any]:
    """A stored dead letter as a dict with its ``seq`` and ``dlq_subject``.

    A message that is not a JSON object (written by hand or by a foreign publisher) becomes an
    entry with ``reason`` ``None``, ``invalid: true`` and a ``payload`` preview, so one bad
    message never breaks a listing.
    """
    raw = data or b""
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        value = None
    if isinstance(value, dict):
        entry = dict(value)
    else:
        entry = {
            "reason": None,
            "error": None,
            "invalid": True,
            "payload": raw[:PAYLOAD_PREVIEW_CHARS].decode("utf-8", errors="replace"),
            "payload_bytes": len(raw),
        }
    if len(raw) > ENTRY_MAX_BYTES and "job" in entry:
        entry.pop("job")
        entry["job_omitted"] = True
        entry["entry_bytes"] = len(raw)
    entry["seq"] = seq
    entry["dlq_subject"] = subject
    if not isinstance(entry.get("tag"), str) and subject.startswith(prefix + "."):
        entry["tag"] = subject[len(prefix) + 1 :]
    return entry


def summarize(entry: dict[str, Any]) -> dict[str, Any]:
    """The listing view of an entry: :data:`SUMMARY_FIELDS`, ``seq``, ``has_job``."""
    summary = {"seq": entry["seq"], **{field: entry.get(field) for field in SUMMARY_FIELDS}}
    error = summary["error"]
    if isinstance(error, str) and len(error) > SUMMARY_ERROR_CHARS:
        summary["error"] = error[:SUMMARY_ERROR_CHARS] + "…"
    summary["has_job"] = isinstance(entry.get("job"), dict)
    return summary


def matches(entry: dict[str, Any], caller: Caller, reason: str | None, run_id: str | None) -> bool:
    """True when ``entry`` is the caller's (tenancy) and passes the ``reason``/``run_id``
    filters."""
    if not caller.sees(entry):
        return False
    if reason is not None and entry.get("reason") != reason:
        return False
    return run_id is None or entry.get("run_id") == run_id


class DeadLetterQueue:
    """Reads, deletes and publishes dead letters."""

    def __init__(self, js: Any, settings: Settings) -> None:
        self.js = js
        self.settings = settings
        self.stream = settings.dlq_stream
        self.prefix = settings.dlq_subject_prefix

    async def page(
        self,
        caller: Caller,
        *,
        tag: str | None = None,
        reason: str | None = None,
        run_id: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> DlqPage:
        """Up to ``limit`` of the caller's entries, newest first, older than ``before``."""
        info = await self.js.stream_info(self.stream)
        first, end = info.state.first_seq, info.state.last_seq
        if before is not None:
            end = min(end, before - 1)
        subject = self.settings.dlq_subject(tag) if tag else f"{self.prefix}.>"
        found: list[dict[str, Any]] = []
        budget = self.settings.dlq_list_scan_max
        window = max(limit + limit // 2, MIN_WINDOW)
        if not info.state.messages:
            return DlqPage([], None)
        scanned = 0
        while end >= first and budget > 0:
            span = min(window, budget, end - first + 1)
            start = end - span + 1
            records: list[StreamRecord] = []
            await read_stream(
                self.js,
                self.stream,
                subject,
                start,
                records.extend,
                batch=min(span, FETCH_BATCH),
                fetch_timeout=self.settings.http_nats_timeout_sec,
                until_seq=end,
            )
            budget -= span
            scanned += span
            for record in reversed(records):
                entry = decode_entry(record.seq, record.subject, record.data, self.prefix)
                if matches(entry, caller, reason, run_id):
                    found.append(summarize(entry))
                    if len(found) >= limit:
                        return DlqPage(found, record.seq, scanned)
            end = start - 1
            window = min(window * 2, MAX_WINDOW)
        return DlqPage(found, end + 1 if end >= first else None, scanned)

    async def get(self, caller: Caller, seq: int) -> dict[str, Any]:
        """The whole entry ``seq`` with its original job; 404 when missing or not the
        caller's."""
        try:
            message = await self.js.get_msg(self.stream, seq)
        except NotFoundError:
            raise dead_letter_not_found(seq) from None
        entry = decode_entry(seq, message.subject or "", message.data, self.prefix)
        if message.time is not None:
            entry["stored_at"] = message.time.timestamp()
        if not caller.sees(entry):
            raise dead_letter_not_found(seq)
        return entry

    async def delete(self, seq: int) -> bool:
        """Remove entry ``seq``; ``False`` when it did not exist."""
        try:
            await self.js.delete_msg(self.stream, seq)
        except NotFoundError:
            return False
        return True

    async def stream_id(self) -> str:
        """An id of this incarnation of the DLQ stream (its creation time), so records about
        entry ``seq`` never apply to a recreated stream whose sequences start again."""
        info = await self.js.stream_info(self.stream)
        created = info.created
        return str(int(created.timestamp() * 1e6)) if hasattr(created, "timestamp") else "0"

    async def publish(self, entry: dict[str, Any], msg_id: str) -> int:
        """Store a dead letter on the subject of its tag; returns its ``seq``. ``msg_id``
        (``Nats-Msg-Id``) makes a retried publish of the same dead letter a no-op."""
        data = json.dumps(entry, separators=(",", ":"), ensure_ascii=False, default=repr)
        ack = await self.js.publish(
            self.settings.dlq_subject(entry["tag"]),
            data.encode(),
            stream=self.stream,
            headers={"Nats-Msg-Id": msg_id},
        )
        return ack.seq
