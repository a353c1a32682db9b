"""The monitor's own state, in its own SQLite file under `.monitor/`.

Kept apart from the executor's database on purpose: the monitor's bookkeeping writes must
never wake its own watcher on `.state/` nor compete for the executor's write lock.
Detection, the event sequence and heartbeats add their tables here as they land.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
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
        connection.execute(_CREATE_EVENT_SEQ)
    finally:
        connection.close()


# The event sequence: one row holding the next `seq` never handed out. The bus reserves blocks
# of numbers (hi/lo), so a million events cost a hundred writes, not a million; a crash loses at
# most the rest of a block, which leaves a gap and never a repeat ("strictly increasing").
_CREATE_EVENT_SEQ = (
    "CREATE TABLE IF NOT EXISTS monitor_event_seq (id INTEGER PRIMARY KEY CHECK (id = 1), next_seq INTEGER NOT NULL)"
)


class EventSeqBlocks:
    """Reserves blocks of event sequence numbers in the monitor's database (for `Bus`)."""

    def __init__(self, path: Path, *, busy_timeout_seconds: float) -> None:
        self._path = path
        self._busy_timeout_seconds = busy_timeout_seconds

    def reserve(self, count: int) -> range:
        """The next `count` numbers, durable before they are handed out."""
        with closing(self._connect()) as connection:
            connection.execute("BEGIN IMMEDIATE")
            row = connection.execute("SELECT next_seq FROM monitor_event_seq WHERE id = 1").fetchone()
            first = 1 if row is None else int(row[0])
            connection.execute(
                "INSERT INTO monitor_event_seq (id, next_seq) VALUES (1, ?) "
                "ON CONFLICT (id) DO UPDATE SET next_seq = excluded.next_seq",
                (first + count,),
            )
            connection.execute("COMMIT")
        return range(first, first + count)

    def release(self, unused: range) -> None:
        """Give back the unused end of the last block on a clean stop, unless someone reserved after it."""
        if not unused:
            return
        with closing(self._connect()) as connection:
            connection.execute(
                "UPDATE monitor_event_seq SET next_seq = ? WHERE id = 1 AND next_seq = ?", (unused.start, unused.stop)
            )

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self._path, timeout=self._busy_timeout_seconds, isolation_level=None)
        connection.execute(_CREATE_EVENT_SEQ)
        return connection
