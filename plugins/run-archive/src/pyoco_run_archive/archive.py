"""The archive file: one row per finished run attempt, keyed by ``(run_id, attempt)``."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS finished_runs (
    run_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    flow_name TEXT,
    tag TEXT,
    tenant_id TEXT,
    finished_at REAL,
    error TEXT,
    snapshot TEXT NOT NULL,
    PRIMARY KEY (run_id, attempt)
);
CREATE INDEX IF NOT EXISTS finished_runs_time ON finished_runs (finished_at);
CREATE INDEX IF NOT EXISTS finished_runs_status ON finished_runs (status, finished_at);
"""
#: Columns a query can filter on with equality.
FILTERS = ("status", "flow_name", "tag", "tenant_id", "run_id")


class RunArchive:
    """A SQLite archive of final snapshots. Safe to use from several threads and processes
    (each write is one transaction; SQLite's WAL journal lets readers in meanwhile)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        with self._lock:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.executescript(SCHEMA)

    def add(self, snapshot: dict[str, Any]) -> None:
        """Store ``snapshot``; storing the same ``(run_id, attempt)`` again replaces it (the
        hook is at-least-once, so a repeat must not add a second row)."""
        finished = snapshot.get("updated_at")
        row = (
            snapshot["run_id"],
            int(snapshot.get("attempt") or 1),
            snapshot["status"],
            snapshot.get("flow_name"),
            snapshot.get("tag"),
            snapshot.get("tenant_id"),
            finished if isinstance(finished, (int, float)) else None,
            snapshot.get("error"),
            json.dumps(snapshot, default=repr),
        )
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO finished_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row
            )

    def query(
        self, *, since: float | None = None, limit: int = 100, **filters: str | None
    ) -> list[dict[str, Any]]:
        """Archived runs, newest first: ``status``, ``flow_name``, ``tag``, ``tenant_id``,
        ``run_id`` match exactly; ``since`` keeps those finished at or after it (epoch s)."""
        unknown = set(filters) - set(FILTERS)
        if unknown:
            raise ValueError(f"unknown filter(s): {', '.join(sorted(unknown))}")
        conditions = [f"{name} = ?" for name, value in filters.items() if value is not None]
        args: list[Any] = [value for value in filters.values() if value is not None]
        if since is not None:
            conditions.append("finished_at >= ?")
            args.append(since)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        with self._lock:
            rows = self._db.execute(
                f"SELECT snapshot FROM finished_runs {where}"
                " ORDER BY finished_at DESC, run_id LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [json.loads(snapshot) for (snapshot,) in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
