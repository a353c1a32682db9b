"""Which runs' OpenLineage events went out, in the table `monitor_lineage` of `.monitor/monitor.db`.

A run gets one START and one terminal event, also across restarts: the bus may hand an event
again after a crash, and runs open at a start are seen anew. Self-contained (plain `sqlite3`,
its own table) like the alerts' outbox.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

SEEN_LIMIT = 10_000  # (run, phase) pairs remembered in memory
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS monitor_lineage "
    "(run_id TEXT NOT NULL, phase TEXT NOT NULL, PRIMARY KEY (run_id, phase))"
)


class LineageRecord:
    """`done(run_id, phase)` and `record(run_id, phase)` for the phases START, END and ARCHIVED."""

    def __init__(self, path: Path, *, busy_timeout_seconds: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(
            path, timeout=busy_timeout_seconds, isolation_level=None, check_same_thread=False
        )
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")  # as the lineage outbox: kill -9 loses nothing
        self._connection.execute(_SCHEMA)
        self._lock = threading.Lock()
        self._seen: set[tuple[str, str]] = set()  # done, known without a query (every status change asks)

    def done(self, run_id: str, phase: str) -> bool:
        if (run_id, phase) in self._seen:
            return True
        with self._lock:
            row = self._connection.execute(
                "SELECT 1 FROM monitor_lineage WHERE run_id = ? AND phase = ?", (run_id, phase)
            ).fetchone()
        if row is not None:
            self._remember(run_id, phase)
        return row is not None

    def record(self, run_id: str, phase: str) -> None:
        self._remember(run_id, phase)
        with self._lock:
            self._connection.execute(
                "INSERT OR IGNORE INTO monitor_lineage (run_id, phase) VALUES (?, ?)", (run_id, phase)
            )

    def _remember(self, run_id: str, phase: str) -> None:
        if len(self._seen) >= SEEN_LIMIT:
            self._seen.clear()  # the table still knows: a forgotten run costs one query
        self._seen.add((run_id, phase))

    def close(self) -> None:
        with self._lock:
            self._connection.close()
