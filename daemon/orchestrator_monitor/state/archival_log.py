"""`archival_log` rows in the executor's database: one per archival step (STARTED, SUCCEEDED, FAILED).

Apart from the completion mark this is the monitor's only write there, so each row is one
short `BEGIN IMMEDIATE` transaction. A database that is locked past the busy timeout or
read-only does not lose the row, and never holds archival up: the row waits, in order, and
goes in with the next write or `flush` (the worker flushes on every pass). While it waits it
is also kept in the monitor's own database (`monitor_archival_outbox` in `.monitor/monitor.db`),
so a crash or a restart does not lose it either: the next `ArchivalLog` on that workspace (the
restarted daemon, or an `archive` command) writes it. A row is written at most once: a crash
between writing it and emptying the outbox leaves a copy there, which the next write finds
already in `archival_log` (same run, action, status and start time) and drops; on PostgreSQL
an advisory lock keeps two processes' writes apart, as `BEGIN IMMEDIATE` does on SQLite.
A row the database refuses for good (a constraint, a value out of range) must not hold up the
rows after it: it is set aside in the outbox, marked with the database's reason, and logged.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson
from sqlalchemy import Connection, Engine, Table, exc, insert, select, text

from ..streaks import Streak
from ..timefmt import format_timestamp, utc_now
from .marks import write_transaction

logger = logging.getLogger(__name__)

ACTION_ARCHIVE = "archive"


@dataclass(frozen=True, slots=True)
class ArchivalRow:
    run_id: str
    status: str  # STARTED, SUCCEEDED, FAILED
    archive_path: str
    started_at: str
    finished_at: str | None = None
    file_count: int | None = None
    total_bytes: int | None = None
    manifest_sha256: str | None = None
    error: str | None = None
    action: str = ACTION_ARCHIVE


class ArchivalLog:
    """Writes rows now when it can, later when it cannot (keeping them in `outbox` meanwhile); thread-safe."""

    def __init__(self, engine: Engine, table: Table, *, outbox: Path, busy_timeout_seconds: float) -> None:
        self._engine = engine
        self._table = table  # archival_log, or monitor_archival_log beside an executor's own
        self._outbox = _Outbox(outbox, busy_timeout_seconds)
        self._pending: list[tuple[int | None, ArchivalRow]] = list(self._outbox.load())  # (outbox key, row)
        self._lock = threading.Lock()
        self._refusals = Streak()  # the database away: one line, not one per flush (under the lock)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def record(self, row: ArchivalRow) -> bool:
        """Queue `row` and try to write everything queued; False when it has to wait."""
        with self._lock:
            self._pending.append((None, row))
        return self.flush()

    def has_succeeded(self, run_id: str) -> bool:
        """Whether a SUCCEEDED archive row of `run_id` is in the database or waiting to go there."""
        with self._lock:
            if any(row.run_id == run_id and row.status == "SUCCEEDED" for _, row in self._pending):
                return True
        archival_log = self._table
        query = select(archival_log.c.id).where(
            archival_log.c.run_id == run_id,
            archival_log.c.action == ACTION_ARCHIVE,
            archival_log.c.status == "SUCCEEDED",
        )
        with self._engine.connect() as connection:
            return connection.execute(query.limit(1)).first() is not None

    def flush(self) -> bool:
        """Write every waiting row, in order; False when the state database refused (they keep waiting)."""
        with self._lock:
            if not self._pending:
                return True
            try:
                self._write(self._pending)
            except _REFUSED_FOR_GOOD:
                return self._write_one_by_one()
            except exc.SQLAlchemyError as err:  # locked, read-only, unreachable: the rows wait, never lost here
                return self._wait(err)
            written = [key for key, _ in self._pending if key is not None]
            self._pending.clear()
            if written:
                self._outbox.remove(written)
            if self._refusals.ended():
                logger.info("archival_log: the waiting rows are written")
            return True

    def _write(self, rows: list[tuple[int | None, ArchivalRow]]) -> None:
        with self._engine.connect() as connection, write_transaction(connection):
            if connection.dialect.name == "postgresql":  # two processes' flushes one after the other
                connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('orchestrator_monitor.archival_log'))"))
            for _, row in rows:
                _insert_once(connection, self._table, row)

    def _write_one_by_one(self) -> bool:
        """After a row was refused for good: each row alone, the refused ones set aside (under the lock)."""
        while self._pending:
            key, row = self._pending[0]
            try:
                self._write([(key, row)])
            except _REFUSED_FOR_GOOD as err:
                logger.error(
                    "archival_log: the state database refuses the %s row of run %s for good (%s); it is kept "
                    "in %s, table monitor_archival_outbox",
                    row.status,
                    row.run_id,
                    err.orig,
                    self._outbox.path,
                )
                self._outbox.set_aside(key, row, str(err.orig))
            except exc.SQLAlchemyError as err:
                return self._wait(err)
            else:
                if key is not None:
                    self._outbox.remove([key])
            self._pending.pop(0)
        return True

    def _wait(self, err: exc.SQLAlchemyError) -> bool:
        self._keep_waiting_rows()
        reason = err.orig if isinstance(err, exc.DBAPIError) else err
        if self._refusals.news(str(reason)):
            logger.warning("archival_log: %d rows wait for the state database: %s", len(self._pending), reason)
        return False

    def _keep_waiting_rows(self) -> None:
        """Put the rows that are only in memory into the outbox (under the lock)."""
        fresh = [row for key, row in self._pending if key is None]
        if not fresh:
            return
        try:
            keys = iter(self._outbox.add(fresh))
        except sqlite3.Error as err:  # the monitor's own database fails too: memory is all there is
            logger.error("archival_log: %d rows wait in memory only (outbox: %s)", len(fresh), err)
            return
        self._pending = [(next(keys) if key is None else key, row) for key, row in self._pending]


def _insert_once(connection: Connection, archival_log: Table, row: ArchivalRow) -> None:
    """Insert `row` unless it is there already (written before a crash emptied the outbox)."""
    present = select(archival_log.c.id).where(
        archival_log.c.run_id == row.run_id,
        archival_log.c.action == row.action,
        archival_log.c.status == row.status,
        archival_log.c.started_at == row.started_at,
    )
    if connection.execute(present.limit(1)).first() is None:
        connection.execute(insert(archival_log).values(asdict(row)))


_REFUSED_FOR_GOOD = (exc.DataError, exc.IntegrityError)  # retrying the same row cannot help

# Rows waiting for the state database, in the monitor's own database: a crash keeps them. A row
# the database refused for good stays too, with the reason in `refused`, and is not retried.
_CREATE_OUTBOX = (
    "CREATE TABLE IF NOT EXISTS monitor_archival_outbox "
    "(id INTEGER PRIMARY KEY AUTOINCREMENT, row TEXT NOT NULL, refused TEXT)"
)


class _Outbox:
    def __init__(self, path: Path, busy_timeout_seconds: float) -> None:
        self.path = path
        self._busy_timeout_seconds = busy_timeout_seconds

    def load(self) -> list[tuple[int, ArchivalRow]]:
        """What earlier processes left waiting, oldest first."""
        if not self.path.is_file():
            return []
        with closing(self._connect()) as connection:
            rows = connection.execute(
                "SELECT id, row FROM monitor_archival_outbox WHERE refused IS NULL ORDER BY id"
            ).fetchall()
        return [(key, ArchivalRow(**orjson.loads(row))) for key, row in rows]

    def add(self, rows: list[ArchivalRow]) -> list[int]:
        """Keep `rows` (durably, in one transaction); their keys, in order."""
        with closing(self._connect()) as connection:
            connection.execute("BEGIN IMMEDIATE")
            insert_row = "INSERT INTO monitor_archival_outbox (row) VALUES (?)"
            keys = [connection.execute(insert_row, (orjson.dumps(asdict(row)),)).lastrowid or 0 for row in rows]
            connection.execute("COMMIT")
        return keys

    def remove(self, keys: list[int]) -> None:
        try:
            with closing(self._connect()) as connection:
                connection.execute("BEGIN IMMEDIATE")
                connection.executemany("DELETE FROM monitor_archival_outbox WHERE id = ?", [(key,) for key in keys])
                connection.execute("COMMIT")
        except sqlite3.Error as err:  # harmless: the rows are written, a later load finds them there and drops them
            logger.warning("archival_log: written rows stay in the outbox for now: %s", err)

    def set_aside(self, key: int | None, row: ArchivalRow, reason: str) -> None:
        """Keep a row the state database refuses for good, with the reason, out of later loads."""
        try:
            with closing(self._connect()) as connection:
                if key is None:
                    connection.execute(
                        "INSERT INTO monitor_archival_outbox (row, refused) VALUES (?, ?)",
                        (orjson.dumps(asdict(row)), reason),
                    )
                else:
                    connection.execute("UPDATE monitor_archival_outbox SET refused = ? WHERE id = ?", (reason, key))
        except sqlite3.Error as err:
            logger.error("archival_log: the refused row of run %s is lost: %s", row.run_id, err)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=self._busy_timeout_seconds, isolation_level=None)
        connection.execute(_CREATE_OUTBOX)
        return connection


def now_text() -> str:
    return format_timestamp(utc_now())
