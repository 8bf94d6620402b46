"""The gateway's index of run summaries, fed from the KV stream, for ``GET /runs`` and metrics.

Design. The runs bucket keeps history 1, so its stream holds exactly one message per run — the
latest snapshot (or a delete/purge marker) — and stream order *is* update order (every
snapshot write stamps ``updated_at`` just before JetStream sequences it; the stream sequence of
a run's latest write is its KV revision). The index is an SQLite database (standard library,
WAL journal) on the gateway's disk, one per gateway, holding per run the small summary
``GET /runs`` returns plus the columns it is filtered by, keyed by that stream sequence; it
remembers the last sequence it applied, so a restart only reads what was written since
(:func:`~pyoco_server.stream_reader.read_stream` from ``applied_seq + 1``):

* ``GET /runs`` is one indexed query, ``ORDER BY seq DESC LIMIT n`` on an index that starts
  with the filter's column (status, flow, tag, tenant, and tenant plus each of them;
  ``schedule_id`` by the schedule's own index, other filters checked on its runs), so a
  page costs O(limit) whatever the number of runs stored — filtered or not, first page or a
  later one (``cursor`` is a sequence: ``seq < cursor``);
* a request first costs one ``stream_info`` round trip (to learn the stream's last sequence,
  so a list always includes every write committed before it — read-your-writes across
  gateways) plus reading only the writes since the previous sync;
* counts by status (overall and per tenant) are counters in memory, computed once when the
  database is opened (one pass over a covering index) and kept on every apply;
* memory stays small (SQLite's page cache is bounded by :data:`CACHE_KIB`); the database
  grows on disk by about 0.5 KB per run;
* every query runs on the feed's own thread (:meth:`RunIndexFeed.call`), so the event loop
  never waits for the disk.

Retention (``PYOCO_RUN_RETENTION_SEC``) removes expired runs from the stream with purge
markers, which the index applies like any other write; :meth:`RunIndex.expire` also drops
terminal runs older than retention plus a grace period by the index's own clock, so a
gateway that was stopped while the markers came and went (they expire) converges too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

from ..config import Settings
from ..log import get_logger
from ..model import RUN_STATUSES, TERMINAL_STATUSES
from ..nats_client import NatsConnection
from ..nesting import (
    DEFAULT_MAX_NESTING_DEPTH,
    STORED_DOCUMENT_HEADROOM,
    NestingTooDeep,
    load_stored,
    prune_nesting,
)
from ..stream_reader import StreamRecord, kv_stream_name, kv_subject_prefix, read_stream
from .run_delta.order import LocalDays, UpdatedKey, day_number, updated_at_of

log = get_logger(__name__)

T = TypeVar("T")

#: Fields of a run summary (``GET /runs``, docs/http-api.md).
SUMMARY_FIELDS = (
    "run_id",
    "flow_name",
    "tag",
    "tags",
    "status",
    "updated_at",
    "heartbeat_at",
    "worker_id",
    "error",
    "submitted_at",
    "start_time",
    "end_time",
    "workflow_yaml_sha256",
    # Schedules (issue 17): which schedule created the run, for ``GET /runs?schedule_id=``.
    "schedule_id",
)
#: Longest ``error`` text kept in a summary; the full text is in ``GET /runs/{id}``.
SUMMARY_ERROR_CHARS = 1024
#: SQLite page cache per connection (KiB): bounds the index's memory whatever its size.
CACHE_KIB = 8192
#: Bump when the schema changes: an index file with another version is rebuilt from NATS.
#: 3: the ``schedule`` column and its index (a file of an earlier version has summaries
#: without ``schedule_id``, so it is rebuilt rather than altered).
SCHEMA_VERSION = 3
#: Stream sequences read per step while catching up (bounds the records held in memory).
SYNC_WINDOW = 8192
#: :meth:`RunIndexFeed._stale`'s answer when the stream only starts past what the index applied:
#: read on from there (no rebuild; see :meth:`RunIndexFeed.sync`).
GAP_ONLY = "messages_missed"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL UNIQUE,
    tenant TEXT,
    status TEXT,
    flow TEXT,
    schedule TEXT,
    updated_at REAL,
    terminal INTEGER NOT NULL,
    summary TEXT NOT NULL,
    sha TEXT,
    updated_key REAL NOT NULL,
    day INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS runs_per_day (
    day INTEGER NOT NULL,
    status TEXT NOT NULL,
    runs INTEGER NOT NULL,
    PRIMARY KEY (day, status)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS run_tags (
    tag TEXT NOT NULL,
    seq INTEGER NOT NULL,
    tenant TEXT,
    PRIMARY KEY (tag, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS finished_per_minute (
    minute INTEGER NOT NULL,
    tenant TEXT NOT NULL,
    status TEXT NOT NULL,
    runs INTEGER NOT NULL,
    PRIMARY KEY (minute, tenant, status)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS queue_depth_per_minute (
    minute INTEGER NOT NULL,
    tag TEXT NOT NULL,
    depth INTEGER NOT NULL,
    PRIMARY KEY (minute, tag)
) WITHOUT ROWID;
"""
#: The secondary indexes: dropped while a large backlog is applied (:meth:`RunIndex.begin_bulk`) and
#: built again afterwards, which is several times faster than keeping them up to date per row.
INDEXES = {
    "runs_status": "runs (status, seq)",
    "runs_flow": "runs (flow, seq)",
    "runs_tenant": "runs (tenant, seq)",
    "runs_tenant_status": "runs (tenant, status, seq)",
    "runs_tenant_flow": "runs (tenant, flow, seq)",
    # Partial: only scheduled runs pay for it. One schedule's runs have one tenant.
    "runs_schedule": "runs (schedule, seq) WHERE schedule IS NOT NULL",
    "runs_updated": "runs (updated_at)",
    "runs_expiry": "runs (terminal, updated_at)",
    # delta listings walk (updated_key, run_id) newest first (see :meth:`RunIndex.select_delta`)
    "runs_delta": "runs (updated_key, run_id)",
    "runs_tenant_delta": "runs (tenant, updated_key, run_id)",
    "runs_sha_delta": "runs (sha, updated_key, run_id)",
    "run_tags_tenant": "run_tags (tenant, tag, seq)",
}
#: A catch-up of more stream sequences than this is applied in bulk mode.
BULK_BACKLOG = 50_000
#: Tenant value of ``finished_per_minute`` rows of runs without one (authentication off).
NO_TENANT = ""


def _loads(data: bytes | str) -> Any:
    """Parse JSON with orjson (several times faster than ``json`` on snapshots), falling back
    to ``json`` for what orjson refuses (a lone surrogate's ``\\u`` escape, huge integers)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def _dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, default=repr)  # \u escapes: lone surrogates too


def summarize(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The list view of a snapshot (``error`` trimmed to :data:`SUMMARY_ERROR_CHARS`)."""
    summary = {field: snapshot.get(field) for field in SUMMARY_FIELDS}
    error = summary["error"]
    if isinstance(error, str) and len(error) > SUMMARY_ERROR_CHARS:
        summary["error"] = error[:SUMMARY_ERROR_CHARS] + "…"
    return summary


def _tags_of(summary: dict[str, Any]) -> set[str]:
    tags = {summary["tag"]} if isinstance(summary.get("tag"), str) else set()
    listed = summary.get("tags")
    if isinstance(listed, list):
        tags.update(tag for tag in listed if isinstance(tag, str))
    return tags


LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(value: Any) -> str | None:
    """``value`` as a column value: a string SQLite can store (a lone surrogate, which a task
    may put anywhere, becomes U+FFFD), or ``None`` for anything else."""
    if not isinstance(value, str):
        return None
    return LONE_SURROGATE.sub("\ufffd", value)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class RunPage:
    """One page of a listing: the summaries, and the cursor of the next page (``None``: this
    page was not full, so there is nothing after it)."""

    runs: list[dict[str, Any]]
    next_cursor: int | None


class RunIndex:
    """Run summaries in update order, per tenant, with counts by status (overall and per
    tenant), in an SQLite database.

    ``path=None`` keeps the database in memory (tests); otherwise it is the index file, whose
    stored ``applied_seq`` lets a restart continue where the last run stopped. Not
    thread-safe: the gateway calls it from one thread only (:meth:`RunIndexFeed.call`).
    """

    def __init__(
        self,
        bucket: str,
        path: str | Path | None = None,
        max_depth: int = DEFAULT_MAX_NESTING_DEPTH,
    ) -> None:
        self._prefix = kv_subject_prefix(bucket)
        self.max_depth = max_depth
        self.path = str(path) if path is not None else ":memory:"
        self._on_close: list[Callable[[], Any]] = []
        #: The local calendar day of an ``updated_at`` (``pyoco_runs_today_total``).
        self.day_of = LocalDays()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
        self._open()

    def _open(self) -> None:
        self._db.executescript(SCHEMA)
        if self._meta("schema") not in (None, str(SCHEMA_VERSION)):
            self._drop()
            self._db.executescript(SCHEMA)
        self._create_indexes()  # also after a bulk build that was interrupted
        self._set_meta("schema", str(SCHEMA_VERSION))
        self.applied_seq = int(self._meta("applied_seq") or 0)
        self.stream_created = self._meta("stream_created")
        self.loaded = False
        self._counts: dict[str | None, Counter[str]] = {}
        for tenant, status, count in self._db.execute(
            "SELECT tenant, status, count(*) FROM runs GROUP BY tenant, status"
        ):
            self._counts.setdefault(tenant, Counter())[status] = count

    def _drop(self) -> None:
        self._db.executescript(
            "DROP TABLE IF EXISTS runs; DROP TABLE IF EXISTS run_tags;"
            " DROP TABLE IF EXISTS finished_per_minute;"
            " DROP TABLE IF EXISTS queue_depth_per_minute; DROP TABLE IF EXISTS runs_per_day;"
        )
        self._db.execute("DELETE FROM meta")

    def on_close(self, action: Callable[[], Any]) -> None:
        """Run ``action`` after :meth:`close` closed the database."""
        self._on_close.append(action)

    def close(self) -> None:
        """Close the database (the index is unusable afterwards)."""
        self._db.close()
        for action in self._on_close:
            action()

    def reset(self, stream_created: str | None = None) -> None:
        """Forget everything (the stream will be replayed from its start); remember which
        stream (its creation time) the rows will come from."""
        self._drop()
        self._db.executescript(SCHEMA)
        self._create_indexes()
        self._set_meta("schema", str(SCHEMA_VERSION))
        self._set_meta("stream_created", stream_created or "")
        self.applied_seq = 0
        self.stream_created = stream_created or ""
        self.loaded = False
        self._counts = {}

    def _create_indexes(self) -> None:
        for name, target in INDEXES.items():
            self._db.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")

    def begin_bulk(self) -> None:
        """Drop the secondary indexes before applying a large backlog (nothing may be listed
        until :meth:`end_bulk`)."""
        for name in INDEXES:
            self._db.execute(f"DROP INDEX IF EXISTS {name}")

    def end_bulk(self) -> None:
        """Build the secondary indexes again (one sort each)."""
        with self._transaction():
            self._create_indexes()

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def __len__(self) -> int:
        return sum(sum(counts.values()) for counts in self._counts.values())

    # -- writes ------------------------------------------------------------------------------

    def _load_snapshot(self, data: bytes) -> Any:
        """A stored snapshot, for its summary: parsed with orjson (whose own depth limit
        refuses absurd nesting; ``json`` with the shared nesting rules otherwise), the summary
        fields pruned to ``max_depth`` (only they are kept, so only they need it)."""
        try:
            snapshot = orjson.loads(data)
        except orjson.JSONDecodeError:
            return load_stored(data, self.max_depth, "run snapshot")
        if isinstance(snapshot, dict):
            limit = self.max_depth + STORED_DOCUMENT_HEADROOM
            for field in SUMMARY_FIELDS:
                if isinstance(snapshot.get(field), (dict, list)):
                    snapshot[field] = prune_nesting(snapshot[field], limit)
        return snapshot

    def apply(self, records: list[StreamRecord]) -> None:
        """Apply stream records in order (one transaction): a put replaces the run, a
        delete/purge removes it; the last record's sequence becomes :attr:`applied_seq`."""
        if not records:
            return
        with self._transaction():
            for record in records:
                run_id = record.subject[len(self._prefix) :]
                snapshot = None
                if not record.deleted:
                    try:
                        snapshot = self._load_snapshot(record.data)
                    except (ValueError, NestingTooDeep):
                        log.warning("run_index_invalid_snapshot", run_id=run_id, seq=record.seq)
                previous = self._remove(run_id)
                if isinstance(snapshot, dict):
                    self._put(run_id, record.seq, snapshot, previous)
            self.applied_seq = max(self.applied_seq, records[-1].seq)
            self._set_meta("applied_seq", str(self.applied_seq))

    def mark_applied(self, seq: int) -> None:
        """Remember that every write up to ``seq`` is applied (the stream had no more)."""
        if seq > self.applied_seq:
            self.applied_seq = seq
            self._set_meta("applied_seq", str(seq))

    @contextlib.contextmanager
    def _transaction(self) -> Any:
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            self._reload_counts()
            raise
        self._db.execute("COMMIT")

    def _reload_counts(self) -> None:
        self._counts = {}
        for tenant, status, count in self._db.execute(
            "SELECT tenant, status, count(*) FROM runs GROUP BY tenant, status"
        ):
            self._counts.setdefault(tenant, Counter())[status] = count
        self.applied_seq = int(self._meta("applied_seq") or 0)

    def _put(
        self, run_id: str, seq: int, snapshot: dict[str, Any], previous: str | None = None
    ) -> None:
        summary = summarize(snapshot)
        summary["run_id"] = run_id
        tenant = _text(snapshot.get("tenant_id"))
        status = _text(summary["status"])
        flow = _text(summary["flow_name"])
        updated_key = updated_at_of(summary)
        day = day_number(self.day_of(updated_key))
        self._db.execute(
            "INSERT INTO runs (seq, run_id, tenant, status, flow, schedule, updated_at, terminal,"
            " summary, sha, updated_key, day) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                seq,
                run_id,
                tenant,
                status,
                flow,
                _text(summary["schedule_id"]),
                _number(summary["updated_at"]),
                int(status in TERMINAL_STATUSES),
                _dumps(summary),
                _text(summary["workflow_yaml_sha256"]),
                updated_key,
                day,
            ),
        )
        self._db.execute(
            "INSERT INTO runs_per_day (day, status, runs) VALUES (?, ?, 1)"
            " ON CONFLICT DO UPDATE SET runs = runs + 1",
            (day, status or ""),
        )
        self._db.executemany(
            "INSERT INTO run_tags (tag, seq, tenant) VALUES (?, ?, ?)",
            [(_text(tag), seq, tenant) for tag in _tags_of(summary)],
        )
        self._counts.setdefault(tenant, Counter())[status] += 1
        finished_at = _number(summary["updated_at"])
        if status in TERMINAL_STATUSES and previous not in TERMINAL_STATUSES and finished_at:
            self._db.execute(
                "INSERT INTO finished_per_minute (minute, tenant, status, runs)"
                " VALUES (?, ?, ?, 1) ON CONFLICT DO UPDATE SET runs = runs + 1",
                (int(finished_at // 60), tenant or NO_TENANT, status),
            )

    def _remove(self, run_id: str) -> str | None:
        """Remove ``run_id``; returns the status it had (``None``: it was not listed)."""
        row = self._db.execute(
            "SELECT seq, tenant, status, summary, day FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is None:
            return None
        seq, tenant, status, summary, day = row
        self._db.execute("DELETE FROM runs WHERE seq = ?", (seq,))
        self._db.execute(
            "UPDATE runs_per_day SET runs = runs - 1 WHERE day = ? AND status = ?",
            (day, status or ""),
        )
        self._db.execute(
            "DELETE FROM runs_per_day WHERE day = ? AND status = ? AND runs <= 0",
            (day, status or ""),
        )
        self._db.executemany(
            "DELETE FROM run_tags WHERE tag = ? AND seq = ?",
            [(_text(tag), seq) for tag in _tags_of(_loads(summary))],
        )
        counts = self._counts[tenant]
        counts[status] -= 1
        if not +counts:
            del self._counts[tenant]
        return status

    def expire(self, cutoff: float, limit: int = 1000) -> list[str]:
        """Drop up to ``limit`` terminal runs last written before ``cutoff`` (epoch seconds);
        returns their run ids. Non-terminal runs are never dropped."""
        run_ids = [run_id for run_id, _ in self.expired(cutoff, limit)]
        if run_ids:
            with self._transaction():
                for run_id in run_ids:
                    self._remove(run_id)
        return run_ids

    def record_queue_depth(self, minute: int, depths: dict[str, int]) -> None:
        """Remember the work queue's depth per tag in ``minute`` (the last sample wins)."""
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO queue_depth_per_minute (minute, tag, depth)"
                " VALUES (?, ?, ?)",
                [(minute, tag, depth) for tag, depth in depths.items()],
            )

    def forget_activity_before(self, minute: int) -> None:
        """Drop the per-minute figures of the minutes before ``minute``."""
        with self._transaction():
            self._db.execute("DELETE FROM finished_per_minute WHERE minute < ?", (minute,))
            self._db.execute("DELETE FROM queue_depth_per_minute WHERE minute < ?", (minute,))

    # -- reads -------------------------------------------------------------------------------

    def finished_per_minute(
        self, tenant_id: str | None, since_minute: int
    ) -> list[tuple[int, str, int]]:
        """``(minute, status, runs)`` of the runs that reached a terminal status since
        ``since_minute`` (minutes since the epoch); one tenant's, or everyone's with ``None``."""
        if tenant_id is None:
            rows = self._db.execute(
                "SELECT minute, status, sum(runs) FROM finished_per_minute WHERE minute >= ?"
                " GROUP BY minute, status",
                (since_minute,),
            )
        else:
            rows = self._db.execute(
                "SELECT minute, status, runs FROM finished_per_minute"
                " WHERE minute >= ? AND tenant = ?",
                (since_minute, tenant_id),
            )
        return [(int(m), str(st), int(n)) for m, st, n in rows]

    def queue_depth_per_minute(self, since_minute: int) -> list[tuple[int, str, int]]:
        """``(minute, tag, depth)`` samples since ``since_minute``."""
        rows = self._db.execute(
            "SELECT minute, tag, depth FROM queue_depth_per_minute WHERE minute >= ?",
            (since_minute,),
        )
        return [(int(m), str(tag), int(depth)) for m, tag, depth in rows]

    def expired(self, cutoff: float, limit: int) -> list[tuple[str, int]]:
        """Up to ``limit`` terminal runs last written before ``cutoff``, oldest first, as
        ``(run_id, revision)`` pairs (the revision is the stream sequence of that write)."""
        return self._db.execute(
            "SELECT run_id, seq FROM runs WHERE terminal = 1 AND updated_at < ?"
            " ORDER BY updated_at LIMIT ?",
            (cutoff, limit),
        ).fetchall()

    def select_page(
        self,
        tenant_id: str | None,
        *,
        status: str | None = None,
        flow: str | None = None,
        tag: str | None = None,
        q: str | None = None,
        limit: int = 50,
        cursor: int | None = None,
        schedule_id: str | None = None,
    ) -> RunPage:
        """Up to ``limit`` summaries, most recently updated first, and the next page's cursor.

        ``tenant_id=None`` (authentication off) sees every run; otherwise only that tenant's.
        ``tag`` matches a run's routing ``tag`` or any of its ``tags``; ``q`` matches run ids
        containing it (case-insensitive); ``schedule_id`` keeps the runs of one schedule.
        ``cursor`` (a previous page's ``next_cursor``)
        continues after that page: only runs whose latest write is older are listed.
        """
        source = "runs r"
        order = "r.seq"
        conditions: list[str] = []
        args: list[Any] = []
        # A schedule's runs all belong to the schedule's tenant: with ``schedule_id``, its index
        # (schedule, seq) drives the query and the other filters are checks on each of its runs
        # (a unary ``+`` keeps SQLite from walking another column's index instead).
        check = "+" if schedule_id is not None else ""
        if tag is not None and schedule_id is None:
            # Walk the tag's own ordering (an index on (tag, seq)) and look each run up.
            source = "run_tags t JOIN runs r ON r.seq = t.seq"
            order = "t.seq"
            conditions.append("t.tag = ?")
            args.append(tag)
            if tenant_id is not None:
                conditions.append("t.tenant = ?")
                args.append(tenant_id)
        else:
            if schedule_id is not None:
                conditions.append("r.schedule = ?")
                args.append(schedule_id)
            if tag is not None:
                conditions.append(
                    "EXISTS (SELECT 1 FROM run_tags t WHERE t.tag = ? AND t.seq = r.seq)"
                )
                args.append(tag)
            if tenant_id is not None:
                conditions.append(f"{check}r.tenant = ?")
                args.append(tenant_id)
        for column, value in (("status", status), ("flow", flow)):
            if value is not None:
                conditions.append(f"{check}r.{column} = ?")
                args.append(value)
        if q:
            conditions.append("instr(lower(r.run_id), ?) > 0")
            args.append(q.lower())
        if cursor is not None:
            conditions.append(f"{order} < ?")
            args.append(cursor)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = self._db.execute(
            f"SELECT {order}, r.summary FROM {source}{where} ORDER BY {order} DESC LIMIT ?",
            (*args, limit),
        ).fetchall()
        runs = [_loads(summary) for _, summary in rows]
        return RunPage(runs, rows[-1][0] if len(rows) >= limit and rows else None)

    def select_delta(
        self,
        tenant_id: str | None,
        *,
        updated_after: float | None = None,
        before: UpdatedKey | None = None,
        workflow_yaml_sha256: str | None = None,
        status: str | None = None,
        flow: str | None = None,
        tag: str | None = None,
        q: str | None = None,
        limit: int = 50,
        schedule_id: str | None = None,
    ) -> list[tuple[UpdatedKey, dict[str, Any]]]:
        """Up to ``limit`` summaries ordered by ``(updated_at, run_id)``, newest first, each
        with its position: only ``updated_at > updated_after`` and positions below ``before``
        (both exclusive); other filters as in :meth:`select_page`. One walk down an index on
        ``(updated_key, run_id)`` (per tenant, or per ``workflow_yaml_sha256``), so a page
        costs O(limit) for listings filtered by nothing else."""
        conditions: list[str] = []
        args: list[Any] = []
        for column, value in (
            ("tenant", tenant_id),
            ("sha", workflow_yaml_sha256),
            ("status", status),
            ("flow", flow),
            ("schedule", schedule_id),
        ):
            if value is not None:
                conditions.append(f"r.{column} = ?")
                args.append(value)
        if tag is not None:
            conditions.append("EXISTS (SELECT 1 FROM run_tags t WHERE t.tag = ? AND t.seq = r.seq)")
            args.append(tag)
        if q:
            conditions.append("instr(lower(r.run_id), ?) > 0")
            args.append(q.lower())
        if updated_after is not None:
            conditions.append("r.updated_key > ?")
            args.append(updated_after)
        if before is not None:
            conditions.append("(r.updated_key, r.run_id) < (?, ?)")
            args.extend(before)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = self._db.execute(
            f"SELECT r.updated_key, r.run_id, r.summary FROM runs r{where}"
            " ORDER BY r.updated_key DESC, r.run_id DESC LIMIT ?",
            (*args, limit),
        ).fetchall()
        return [((key, run_id), _loads(summary)) for key, run_id, summary in rows]

    def updated_on(self, day: tuple[int, int, int]) -> dict[str, int]:
        """How many runs, by status, have their latest write on ``day`` (a local calendar
        day, ``(year, month, day)``): one indexed lookup."""
        rows = self._db.execute(
            "SELECT status, runs FROM runs_per_day WHERE day = ? AND runs > 0",
            (day_number(day),),
        )
        return {status: int(n) for status, n in rows if status}

    def select(self, tenant_id: str | None, **filters: Any) -> list[dict[str, Any]]:
        """The summaries of :meth:`select_page` (same arguments), without the cursor."""
        return self.select_page(tenant_id, **filters).runs

    def with_status(self, *statuses: str) -> list[dict[str, Any]]:
        """The summaries of every run (all tenants) in one of ``statuses``; costs
        O(matching runs), whatever the number of runs stored."""
        marks = ", ".join("?" for _ in statuses)
        rows = self._db.execute(f"SELECT summary FROM runs WHERE status IN ({marks})", statuses)
        return [_loads(summary) for (summary,) in rows]

    def status_of(self, run_id: str) -> str | None:
        """The indexed status of ``run_id`` (``None`` when not indexed): one lookup in the
        unique index on ``run_id``, whatever the number of runs stored."""
        row = self._db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return row[0] if row is not None else None

    def status_counts(self, tenant_id: str | None = None) -> dict[str, int]:
        """Number of stored runs per status (every contract status present, zeros included);
        with ``tenant_id``, only that tenant's runs."""
        if tenant_id is None:
            source: Counter[str] = Counter()
            for counts in self._counts.values():
                source.update(counts)
        else:
            source = self._counts.get(tenant_id, Counter())
        counts = dict.fromkeys(RUN_STATUSES, 0)
        counts.update({status: n for status, n in source.items() if n and status})
        return counts


class RunIndexFeed:
    """Keeps a :class:`RunIndex` current: on demand (:meth:`sync`) and in the background.

    Every use of the index goes through :meth:`call`, on one thread of its own: the database is
    never touched by two threads, and the event loop never waits for the disk.
    """

    def __init__(
        self,
        nats: NatsConnection,
        settings: Settings,
        index: RunIndex,
        poll_interval: float = 0.5,
    ) -> None:
        self.nats = nats
        self.index = index
        self.poll_interval = poll_interval
        self.stream = kv_stream_name(settings.runs_kv_bucket)
        self.subject = kv_subject_prefix(settings.runs_kv_bucket) + ">"
        self.fetch_timeout = settings.http_nats_timeout_sec
        self._lock = asyncio.Lock()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="run-index")
        self._closed = False

    async def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``function(*args, **kwargs)`` (a method of the index) on the index's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, lambda: function(*args, **kwargs))

    def close(self) -> None:
        """Finish the queued index work and close the database (a second call does nothing)."""
        if self._closed:
            return
        self._closed = True
        self._thread.submit(self.index.close)
        self._thread.shutdown(wait=True)

    async def sync(self) -> None:
        """Apply every write the stream holds now; afterwards the index is at least that new.

        Raises NATS errors (the caller answers 503).
        """
        js = self.nats.js
        info = await js.stream_info(self.stream)
        last_seq = info.state.last_seq
        created = str(info.created)
        index = self.index
        if last_seq == index.applied_seq and created == index.stream_created:
            self._loaded(kept=index.applied_seq, read_from=None, last_seq=last_seq)
            return
        async with self._lock:
            # Another sync may have applied more while this one waited: ask again.
            info = await js.stream_info(self.stream)
            last_seq = info.state.last_seq
            created = str(info.created)
            stale_reason = self._stale(index, created, info.state.first_seq, last_seq)
            if stale_reason == GAP_ONLY:
                # In a history-1 bucket every rewrite removes the key's previous message, so a
                # gateway that was behind finds the stream starting past what it applied: the
                # rewritten runs are read below. Only deletions whose markers expired unseen
                # are lost, and the retention pass (``expire``) drops those rows. No rebuild.
                log.info("run_index_gap", applied=index.applied_seq, first=info.state.first_seq)
            elif stale_reason:
                # Another stream than the one indexed: replay it from the start.
                if index.applied_seq:
                    log.warning(
                        "run_index_reset",
                        reason=stale_reason,
                        applied=index.applied_seq,
                        first=info.state.first_seq,
                        last=last_seq,
                    )
                await self.call(index.reset, created)
            kept = index.applied_seq
            position = index.applied_seq + 1
            applying: asyncio.Future[None] | None = None
            bulk = last_seq - index.applied_seq > BULK_BACKLOG
            if bulk:
                await self.call(index.begin_bulk)
            try:
                while position <= last_seq:
                    # A window of sequences at a time, so the records held stay bounded; the
                    # next window is read while the index thread applies the previous one.
                    records: list[StreamRecord] = []
                    window_end = position + SYNC_WINDOW - 1
                    await read_stream(
                        js,
                        self.stream,
                        self.subject,
                        position,
                        records.extend,
                        fetch_timeout=self.fetch_timeout,
                        until_seq=window_end if window_end < last_seq else None,
                    )
                    if applying is not None:
                        await applying
                    applying = asyncio.ensure_future(self.call(index.apply, records))
                    position = window_end + 1
            finally:
                if applying is not None:
                    await applying
                if bulk:
                    await self.call(index.end_bulk)
            if index.applied_seq < last_seq:
                # The read ended with nothing pending, so it covered everything up to last_seq
                # even when the newest messages were removed meanwhile.
                await self.call(index.mark_applied, last_seq)
            self._loaded(kept=kept, read_from=kept + 1, last_seq=last_seq)

    @staticmethod
    def _stale(index: RunIndex, created: str, first_seq: int, last_seq: int) -> str | None:
        """Why the index does not describe the stream any more (``None``: it does, up to its
        :attr:`~RunIndex.applied_seq`)."""
        if created != index.stream_created:
            # the bucket was deleted and created again, the NATS store wiped, or another
            # server answers at the same address: its stream was created at another time
            return "stream_created"
        if last_seq < index.applied_seq:
            return "sequence_went_back"
        if index.applied_seq and first_seq > index.applied_seq + 1:
            # messages the index did not see are gone (rewritten or purged): see :data:`GAP_ONLY`
            return GAP_ONLY
        return None

    def _loaded(self, kept: int, read_from: int | None, last_seq: int) -> None:
        """Mark the index ready; the first time, log how much of it came from the file."""
        if not self.index.loaded:
            log.info(
                "run_index_loaded",
                kept_from_file=kept,
                read_from_seq=read_from,
                last_seq=last_seq,
                runs=len(self.index),
            )
        self.index.loaded = True

    async def run(self, stop: asyncio.Event) -> None:
        """Background loop: sync every ``poll_interval`` while connected, until ``stop``."""
        while not stop.is_set():
            if self.nats.connected:
                try:
                    await self.sync()
                except Exception as exc:
                    log.warning("run_index_sync_failed", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_interval)
