"""`data/state/run.sqlite3`: the run's rows, taken in one read transaction, and checked in it.

On SQLite the staging file is ATTACHed to a read-only connection and filled with
`INSERT ... SELECT ... WHERE run_id = ?` inside one read transaction: one consistent snapshot,
however busy the executor. (SQLite's paged online backup restarts whenever a writer commits,
so under a busy executor it may never finish.) Other databases are read in one REPEATABLE READ
transaction and written into a new SQLite file with the same tables.

Both run on a SQLAlchemy connection, so that inside that same transaction the run's status and
rows are read again with the very query the detector decided on (`fetch_run_snapshot`, through
the mapping) and handed to `check`, which raises to keep the snapshot from being taken: what the
bag holds is then exactly what was checked. (Computing the fingerprint from the copied rows
instead would compare values that went through another database's types on PostgreSQL, where a
timestamp turned into text no longer sorts or prints as the detector saw it.)
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Callable
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.pool import NullPool

from ..state.access import StateDatabase
from ..state.engine import sqlite_path
from ..state.records import RunSnapshot
from ..state.snapshots import fetch_run_snapshot
from ..state.tables import StateTables

Check = Callable[[RunSnapshot | None], None]  # raises when the rows read must not be archived

_CREATE_TABLE = re.compile(
    r"^\s*CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?(\"[^\"]+\"|`[^`]+`|\[[^\]]+\]|\S+?)(?=\s|\()", re.I
)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def run_row_sources(tables: StateTables) -> list[tuple[str, str]]:
    """(table, condition on `:run_id`) for every table holding the run's rows, in the executor's own
    names: what the mapping reads, the whole rows, plus the monitor's archival rows."""
    mapping = tables.mapping
    sources = [(mapping.runs.table, f"{_quote(mapping.runs.key)} = :run_id")]
    ws = mapping.workstreams
    if ws is not None:
        sources.append((ws.table, f"{_quote(ws.run)} = :run_id"))
    task = mapping.tasks
    if task.run is not None:
        sources.append((task.table, f"{_quote(task.run)} = :run_id"))
    elif ws is not None and task.workstream is not None:
        members = f"SELECT {_quote(ws.key)} FROM {_quote(ws.table)} WHERE {_quote(ws.run)} = :run_id"
        sources.append((task.table, f"{_quote(task.workstream)} IN ({members})"))
    sources.append((tables.archival_log.name, "run_id = :run_id"))
    return list(dict.fromkeys(sources))


def snapshot_run_rows(
    state: StateDatabase, run_id: str, destination: Path, *, busy_timeout_seconds: float, check: Check
) -> None:
    """Write the run's rows of every state table into a new SQLite file at `destination`, made durable.

    `check` gets the run as the same read transaction sees it (None: gone); what it raises ends
    the snapshot, with nothing committed to `destination`."""
    destination.unlink(missing_ok=True)
    path = sqlite_path(state.url)
    sources = run_row_sources(state.tables)
    if path is not None:
        _snapshot_sqlite(path, sources, run_id, destination, busy_timeout_seconds, state.tables, check)
    else:
        _snapshot_other(state.engine, sources, run_id, destination, state.tables, check)
    fd = os.open(destination, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _snapshot_sqlite(
    path: Path,
    sources: list[tuple[str, str]],
    run_id: str,
    destination: Path,
    busy_timeout_seconds: float,
    tables: StateTables,
    check: Check,
) -> None:
    """Copy and check on one read-only connection with `destination` attached (ATTACH cannot run
    inside a transaction, so the connection comes attached), in one `BEGIN ... COMMIT`."""
    engine = create_engine(
        "sqlite://",
        creator=partial(_connect_attached, path, destination, busy_timeout_seconds),
        poolclass=NullPool,
    )
    event.listen(engine, "begin", lambda connection: connection.exec_driver_sql("BEGIN"))
    try:
        with engine.connect() as connection, connection.begin():
            for table, condition in sources:
                row = connection.exec_driver_sql(
                    "SELECT sql FROM main.sqlite_master WHERE type = 'table' AND name = ?", (table,)
                ).first()
                if row is None:  # archival_log is created by the monitor; an executor's DDL may lack it
                    continue
                connection.exec_driver_sql(_CREATE_TABLE.sub(f"CREATE TABLE snap.{_quote(table)}", row[0], count=1))
                connection.exec_driver_sql(
                    f"INSERT INTO snap.{_quote(table)} SELECT * FROM main.{_quote(table)} WHERE {condition}",
                    {"run_id": run_id},
                )
            check(fetch_run_snapshot(connection, tables, run_id))  # unqualified names: `main` comes first
    finally:
        engine.dispose()


def _connect_attached(path: Path, destination: Path, busy_timeout_seconds: float) -> sqlite3.Connection:
    uri = f"file:{quote(str(path.absolute()))}?mode=ro"
    target = f"file:{quote(str(destination.absolute()))}?mode=rwc"
    connection = sqlite3.connect(uri, uri=True, timeout=busy_timeout_seconds, isolation_level=None)
    connection.execute("ATTACH DATABASE ? AS snap", (target,))
    return connection


def _snapshot_other(
    engine: Engine,
    sources: list[tuple[str, str]],
    run_id: str,
    destination: Path,
    tables: StateTables,
    check: Check,
) -> None:
    """A server database: the run's rows read in one REPEATABLE READ transaction on the daemon's own engine,
    written into SQLite tables of the same names and columns (SQLite keeps any value in an untyped column).

    The columns are the result's own (`SELECT *`), not a reflection of each table: reflecting four tables
    cost more catalog queries than the rows themselves, half a second a bag (tests/service/test_cluster.py)."""
    with engine.connect() as connection:
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            present = set(inspect(connection).get_table_names())
            rows: dict[str, tuple[list[str], list[Any]]] = {}
            for table, condition in sources:
                if table in present:
                    result = connection.execute(
                        text(f"SELECT * FROM {_quote(table)} WHERE {condition}"), {"run_id": run_id}
                    )
                    rows[table] = (list(result.keys()), list(result))
            check(fetch_run_snapshot(connection, tables, run_id))
    with closing(sqlite3.connect(destination, isolation_level=None)) as out:
        out.execute("BEGIN")
        for table, (columns, values) in rows.items():
            out.execute(f"CREATE TABLE {_quote(table)} ({', '.join(map(_quote, columns))})")
            marks = ", ".join("?" * len(columns))
            out.executemany(f"INSERT INTO {_quote(table)} VALUES ({marks})", [tuple(map(_plain, v)) for v in values])
        out.execute("COMMIT")


def _plain(value: object) -> object:
    """A value SQLite can store: server types (timestamps, JSON, decimals) as their text."""
    return value if value is None or isinstance(value, int | float | str | bytes) else str(value)
