"""`archival_log` rows in the executor's database: one per archival step (STARTED, SUCCEEDED, FAILED).

Apart from the completion mark this is the monitor's only write there, so each row is one
short `BEGIN IMMEDIATE` transaction. A database that is locked past the busy timeout or
read-only does not lose the row: it waits in memory, in order, and goes in with the next
write or `flush` (the worker flushes on every pass), so bookkeeping never holds archival up.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass

from sqlalchemy import Engine, exc, insert, select

from ..timefmt import format_timestamp, utc_now
from .marks import write_transaction
from .schema import archival_log

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
    """Writes rows now when it can, later when it cannot; thread-safe."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._pending: list[ArchivalRow] = []
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def record(self, row: ArchivalRow) -> bool:
        """Queue `row` and try to write everything queued; False when it has to wait."""
        with self._lock:
            self._pending.append(row)
        return self.flush()

    def has_succeeded(self, run_id: str) -> bool:
        """Whether a SUCCEEDED archive row of `run_id` is in the database or waiting to go there."""
        with self._lock:
            if any(row.run_id == run_id and row.status == "SUCCEEDED" for row in self._pending):
                return True
        query = select(archival_log.c.id).where(
            archival_log.c.run_id == run_id,
            archival_log.c.action == ACTION_ARCHIVE,
            archival_log.c.status == "SUCCEEDED",
        )
        with self._engine.connect() as connection:
            return connection.execute(query.limit(1)).first() is not None

    def flush(self) -> bool:
        with self._lock:
            if not self._pending:
                return True
            try:
                with self._engine.connect() as connection, write_transaction(connection):
                    connection.execute(insert(archival_log), [asdict(row) for row in self._pending])
            except exc.DBAPIError as err:  # locked, read-only, unreachable: the rows wait, never lost here
                logger.warning("archival_log: %d rows wait for the state database: %s", len(self._pending), err.orig)
                return False
            self._pending.clear()
            return True


def now_text() -> str:
    return format_timestamp(utc_now())
