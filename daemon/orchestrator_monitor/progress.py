"""The monitor's own state, in its own SQLite file under `.monitor/`.

Kept apart from the executor's database on purpose: the monitor's bookkeeping writes must
never wake its own watcher on `.state/` nor compete for the executor's write lock.
Detection, the event sequence and heartbeats add their tables here as they land.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

PROGRESS_SCHEMA_VERSION = 1


def create_progress_database(path: Path, *, busy_timeout_seconds: float) -> None:
    """Create (or open and upgrade) the monitor's database; idempotent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=busy_timeout_seconds, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE IF NOT EXISTS monitor_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        connection.execute(
            "INSERT OR IGNORE INTO monitor_meta (key, value) VALUES ('schema_version', ?)",
            (str(PROGRESS_SCHEMA_VERSION),),
        )
    finally:
        connection.close()
