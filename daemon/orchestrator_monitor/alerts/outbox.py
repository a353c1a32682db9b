"""Alerts waiting for delivery, in the table `monitor_alerts` of `.monitor/monitor.db`: they survive kill -9.

One row per alert and destination, so that a destination that took it is never sent it again
while another is retried. A row is written before anyone is told (the rule fired), marked
delivered only after its destination took it, and given up (`gave_up`) after too many
attempts until the next start, which tries every undelivered row again. Delivery is therefore
at least once: a kill between a destination's answer and the mark sends that one alert again.
The destination is kept as a digest of its URL, never the URL (it holds credentials).
`(key, destination)` is unique: the same run alerting the same rule again is ignored, which
is the de-duplication; a delivered row is forgotten once its `keep_until` passed.

Self-contained on purpose (plain `sqlite3`, its own table): the ledger's tables may move.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS monitor_alerts (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    rule TEXT NOT NULL,
    destination TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    due_at REAL NOT NULL,
    keep_until REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    delivered_at REAL,
    gave_up INTEGER NOT NULL DEFAULT 0,
    UNIQUE (key, destination)
)
"""
_DUE_INDEX = "CREATE INDEX IF NOT EXISTS monitor_alerts_due ON monitor_alerts (due_at) WHERE delivered_at IS NULL"


_COUNTS = "SELECT count(*), coalesce(sum(gave_up), 0) FROM monitor_alerts WHERE delivered_at IS NULL"


def destination_id(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Pending:
    id: int
    key: str
    rule: str
    destination: str
    title: str
    body: str
    attempts: int


class Outbox:
    """The table, behind one lock (the alert sink's thread adds, the delivery thread takes and marks)."""

    def __init__(self, path: Path, *, busy_timeout_seconds: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(
            path, timeout=busy_timeout_seconds, isolation_level=None, check_same_thread=False
        )
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=FULL")  # an alert recorded must survive power loss
        self._connection.execute(_SCHEMA)
        self._connection.execute(_DUE_INDEX)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def retry_given_up(self) -> int:
        """At start: rows given up by an earlier process are tried again; returns how many."""
        with self._lock:
            cursor = self._connection.execute(
                "UPDATE monitor_alerts SET gave_up = 0, attempts = 0 WHERE gave_up = 1 AND delivered_at IS NULL"
            )
            return cursor.rowcount

    def known(self, key: str) -> bool:
        """Was an alert with this key recorded (and not yet forgotten)? The de-duplication."""
        with self._lock:
            return (
                self._connection.execute("SELECT 1 FROM monitor_alerts WHERE key = ? LIMIT 1", (key,)).fetchone()
                is not None
            )

    def add(
        self, key: str, rule: str, destinations: list[str], title: str, body: str, *, now: float, keep_seconds: float
    ) -> int:
        """Record an alert for each destination; rows already there (de-duplicated) are left alone.
        Returns how many rows were added."""
        rows = [(key, rule, d, title, body, now, now, now + keep_seconds) for d in destinations]
        with self._lock:
            before = self._connection.total_changes
            self._connection.executemany(
                "INSERT OR IGNORE INTO monitor_alerts "
                "(key, rule, destination, title, body, created_at, due_at, keep_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            return self._connection.total_changes - before

    def put_summary(
        self, key: str, rule: str, destinations: list[str], title: str, body: str, *, due: float, keep_seconds: float
    ) -> None:
        """A throttle window's summary, due when the window ends; its text is replaced while it waits."""
        rows = [(key, rule, d, title, body, due, due, due + keep_seconds) for d in destinations]
        with self._lock:
            self._connection.executemany(
                "INSERT INTO monitor_alerts "
                "(key, rule, destination, title, body, created_at, due_at, keep_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (key, destination) DO UPDATE SET title = excluded.title, body = excluded.body "
                "WHERE delivered_at IS NULL",
                rows,
            )

    def due(self, now: float, limit: int) -> list[Pending]:
        with self._lock:
            rows = self._connection.execute(
                "SELECT id, key, rule, destination, title, body, attempts FROM monitor_alerts "
                "WHERE delivered_at IS NULL AND gave_up = 0 AND due_at <= ? ORDER BY due_at, id LIMIT ?",
                (now, limit),
            ).fetchall()
        return [Pending(*row) for row in rows]

    def next_due(self) -> float | None:
        with self._lock:
            row = self._connection.execute(
                "SELECT min(due_at) FROM monitor_alerts WHERE delivered_at IS NULL AND gave_up = 0"
            ).fetchone()
        return None if row[0] is None else float(row[0])

    def delivered(self, row_id: int, now: float) -> None:
        with self._lock:
            self._connection.execute("UPDATE monitor_alerts SET delivered_at = ? WHERE id = ?", (now, row_id))

    def failed(self, row_id: int, *, retry_at: float | None) -> None:
        """One more failed attempt; `retry_at` None gives the row up until the next start."""
        with self._lock:
            self._connection.execute(
                "UPDATE monitor_alerts SET attempts = attempts + 1, due_at = coalesce(?, due_at), gave_up = ? "
                "WHERE id = ?",
                (retry_at, 1 if retry_at is None else 0, row_id),
            )

    def drop(self, row_id: int) -> None:
        """A row whose destination is no longer configured (a reload removed it)."""
        with self._lock:
            self._connection.execute("DELETE FROM monitor_alerts WHERE id = ?", (row_id,))

    def forget_delivered(self, now: float) -> None:
        with self._lock:
            self._connection.execute(
                "DELETE FROM monitor_alerts WHERE delivered_at IS NOT NULL AND keep_until < ?", (now,)
            )

    def counts(self) -> dict[str, int]:
        """`pending` (to deliver, given up included) and `undeliverable` (given up until the next start)."""
        with self._lock:
            pending, given_up = self._connection.execute(_COUNTS).fetchone()
        return {"pending": int(pending), "undeliverable": int(given_up)}


def read_alert_counts(path: Path, *, busy_timeout_seconds: float) -> dict[str, int]:
    """The outbox's counts for `orchestrator health`, read-only; zeros when there is no outbox."""
    if not path.exists():
        return {"pending": 0, "undeliverable": 0}
    connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=busy_timeout_seconds)
    try:
        pending, given_up = connection.execute(_COUNTS).fetchone()
    except sqlite3.OperationalError:  # no such table: alerts never configured here
        return {"pending": 0, "undeliverable": 0}
    finally:
        connection.close()
    return {"pending": int(pending), "undeliverable": int(given_up)}
