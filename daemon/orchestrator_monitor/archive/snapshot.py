"""`data/state/run.sqlite3`: the run's rows, taken in one read transaction.

On SQLite the staging file is ATTACHed to a read-only connection and filled with
`INSERT ... SELECT ... WHERE run_id = ?` inside one read transaction: one consistent snapshot,
however busy the executor. (SQLite's paged online backup restarts whenever a writer commits,
so under a busy executor it may never finish.) Other databases are read with SQLAlchemy in one
REPEATABLE READ transaction and written into a new SQLite file with the same tables.
"""

from __future__ import annotations

import os
import re
import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine, select

from ..state.engine import open_engine, sqlite_path
from ..state.schema import archival_log, metadata, runs, tasks, workstreams

SNAPSHOT_TABLES = (runs, workstreams, tasks, archival_log)
_CREATE_TABLE = re.compile(
    r"^\s*CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?(\"[^\"]+\"|`[^`]+`|\[[^\]]+\]|\S+?)(?=\s|\()", re.I
)


def snapshot_run_rows(url: str, run_id: str, destination: Path, *, busy_timeout_seconds: float) -> None:
    """Write the run's rows of every state table into a new SQLite file at `destination`, made durable."""
    destination.unlink(missing_ok=True)
    path = sqlite_path(url)
    if path is not None:
        _snapshot_sqlite(path, run_id, destination, busy_timeout_seconds)
    else:
        _snapshot_other(url, run_id, destination, busy_timeout_seconds)
    fd = os.open(destination, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _snapshot_sqlite(path: Path, run_id: str, destination: Path, busy_timeout_seconds: float) -> None:
    uri = f"file:{quote(str(path.absolute()))}?mode=ro"
    target = f"file:{quote(str(destination.absolute()))}?mode=rwc"
    with closing(sqlite3.connect(uri, uri=True, timeout=busy_timeout_seconds, isolation_level=None)) as connection:
        connection.execute("ATTACH DATABASE ? AS snap", (target,))
        connection.execute("BEGIN")
        try:
            for table in SNAPSHOT_TABLES:
                row = connection.execute(
                    "SELECT sql FROM main.sqlite_master WHERE type = 'table' AND name = ?", (table.name,)
                ).fetchone()
                if row is None:  # archival_log is created by the monitor; an executor's DDL may lack it
                    continue
                connection.execute(_CREATE_TABLE.sub(f'CREATE TABLE snap."{table.name}"', row[0], count=1))
                connection.execute(
                    f'INSERT INTO snap."{table.name}" SELECT * FROM main."{table.name}" WHERE run_id = ?', (run_id,)
                )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("DETACH DATABASE snap")


def _snapshot_other(url: str, run_id: str, destination: Path, busy_timeout_seconds: float) -> None:
    source = open_engine(url, busy_timeout_seconds=busy_timeout_seconds, readonly=True)
    target = create_engine(f"sqlite:///{destination}")
    try:
        with source.connect() as connection:
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                rows = {
                    t.name: connection.execute(select(t).where(t.c.run_id == run_id)).mappings().all()
                    for t in SNAPSHOT_TABLES
                }
        metadata.create_all(target)
        with target.begin() as out:
            for table in SNAPSHOT_TABLES:
                if rows[table.name]:
                    out.execute(table.insert(), [dict(r) for r in rows[table.name]])
    finally:
        source.dispose()
        target.dispose()
