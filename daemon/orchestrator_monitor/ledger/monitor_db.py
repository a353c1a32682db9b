"""The monitor's own state, in its own SQLite file under `.monitor/`.

Kept apart from the executor's database on purpose: the monitor's bookkeeping writes must
never wake its own watcher on `.state/` nor compete for the executor's write lock.
Detection, the event sequence and heartbeats add their tables here as they land.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from ..timefmt import format_timestamp, parse_timestamp

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
        connection.execute(_CREATE_HEARTBEATS)
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


# Heartbeats: one row per job of the running daemon, rewritten every `health.heartbeat_seconds`,
# so `orchestrator health` (another process) can tell a live daemon from a stale one. Rows of
# a previous daemon are replaced when a new one starts (`clear_heartbeats`).
_CREATE_HEARTBEATS = (
    "CREATE TABLE IF NOT EXISTS monitor_heartbeats (job TEXT PRIMARY KEY, pid INTEGER NOT NULL, "
    "beat_at TEXT NOT NULL, errors TEXT NOT NULL, detail TEXT NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A job's last sign of progress: when, the daemon's pid, its recent errors, and what it reports."""

    job: str
    pid: int
    beat_at: datetime
    errors: tuple[str, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)

    def age_seconds(self, now: datetime) -> float:
        return max(0.0, (now - self.beat_at).total_seconds())


def record_heartbeats(path: Path, beats: Iterable[Heartbeat], *, busy_timeout_seconds: float) -> None:
    """Write the jobs' heartbeats in one transaction."""
    rows = [
        (
            b.job,
            b.pid,
            format_timestamp(b.beat_at),
            orjson.dumps(list(b.errors)).decode(),
            orjson.dumps(b.detail).decode(),
        )
        for b in beats
    ]
    with closing(sqlite3.connect(path, timeout=busy_timeout_seconds, isolation_level=None)) as connection:
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany("INSERT OR REPLACE INTO monitor_heartbeats VALUES (?, ?, ?, ?, ?)", rows)
        connection.execute("COMMIT")


def clear_heartbeats(path: Path, *, busy_timeout_seconds: float) -> None:
    """Forget a previous daemon's heartbeats (a starting daemon owns the workspace lock)."""
    with closing(sqlite3.connect(path, timeout=busy_timeout_seconds, isolation_level=None)) as connection:
        connection.execute("DELETE FROM monitor_heartbeats")


def read_heartbeats(path: Path, *, busy_timeout_seconds: float) -> list[Heartbeat]:
    """Every job's heartbeat; empty when no daemon ever ran here (or the file does not exist)."""
    if not path.is_file():
        return []
    uri = f"file:{quote(str(path.absolute()))}?mode=ro"  # quoted: a '#' or '?' in the path is a name
    try:
        with closing(sqlite3.connect(uri, uri=True, timeout=busy_timeout_seconds)) as connection:
            rows = connection.execute("SELECT job, pid, beat_at, errors, detail FROM monitor_heartbeats").fetchall()
    except sqlite3.OperationalError as err:
        if "no such table" in str(err):
            return []
        raise
    beats = []
    for job, pid, beat_at, errors, detail in rows:
        moment = parse_timestamp(beat_at)
        if moment is not None:
            beats.append(Heartbeat(job, int(pid), moment, tuple(orjson.loads(errors)), orjson.loads(detail)))
    return beats
