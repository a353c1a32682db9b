"""The monitor's only write to the executor's runs: the completion mark, as a compare-and-set.

One short transaction re-reads the run and its tasks and applies the mark only if they are
still exactly as the decision saw them, so a retry that moves a task back to RUNNING just
before the mark simply keeps the run open. For the re-read to be what the mark updates, no
executor write may land between the two:

- SQLite: `BEGIN IMMEDIATE` takes the database's one write lock before the re-read.
- A server database (PostgreSQL) at READ COMMITTED: the re-read alone would miss a task an
  executor transaction changes and commits just after it. So the runs' task and workstream
  rows are locked FOR SHARE and their run rows FOR UPDATE first (one statement each for the
  whole batch): that waits for any executor transaction that changed them to end, and holds off
  any new change until the marks commit. Only these runs' rows are locked, so the executor's
  work on other runs never waits. A task
  *inserted* into the run meanwhile is not held off (no row to lock); it commits after the
  mark and is reported like any change after a mark, as `RUN_REOPENED`.
  Each of the three locking statements may take MARK_LOCK_STATEMENT_MS (a statement timeout,
  so however many rows it waits for), 0.9 s in all: less than PostgreSQL's default
  `deadlock_timeout` (1 s) after the executor starts waiting for a row the mark holds. Should
  an executor transaction lock the same rows in the other order, the monitor gives up first
  (the mark is retried) rather than the server aborting the executor's work.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, exc, select, text, update

from ..inlists import padded
from ..timefmt import format_timestamp, parse_timestamp
from .records import RunSnapshot
from .snapshots import fetch_snapshots, fetch_statuses, fetch_task_finish_times
from .tables import StateTables

MARK_LOCK_STATEMENT_MS = 300  # PostgreSQL: how long each locking statement of the mark may wait (see above)


@dataclass(frozen=True, slots=True)
class MarkResult:
    marked: bool
    deferred: bool = False  # its rows were held past the lock timeout: tried again on the next pass
    finished_at: str | None = None
    unreadable_times: int = 0


@contextmanager
def write_transaction(connection: Connection) -> Iterator[None]:
    """`BEGIN IMMEDIATE` on SQLite (take the write lock first, so the re-read is what we update)."""
    connection.execution_options(sqlite_begin="IMMEDIATE")
    try:
        with connection.begin():
            yield
    finally:
        connection.execution_options(sqlite_begin="")


def mark_runs(
    connection: Connection, tables: StateTables, chosen: list[tuple[RunSnapshot, str]], now: datetime
) -> dict[str, MarkResult]:
    """Set each run terminal if it is unchanged since its snapshot, all in one transaction (one commit,
    one fsync, however many runs a pass decided); `finished_at` = latest task finish.

    Set-based: the runs' rows are locked, re-read and updated by a few statements for the whole
    batch, not a dozen per run (bench/scale.py: per-run statements were 92% of a burst on
    PostgreSQL). Should the batch's locks wait past the lock timeout on a server database, each
    run is tried alone in a savepoint of its own, so that one held run is left for the next pass
    (`deferred`) and the others are marked. The status is written in the executor's own
    vocabulary (`runs.write` of the mapping), and the finish and update times only where the
    executor has those columns."""
    if not chosen:
        return {}
    with write_transaction(connection):
        if connection.dialect.name == "sqlite":
            return _mark_batch(connection, tables, chosen, now)
        try:
            with connection.begin_nested():
                _lock_run_rows(connection, tables, [seen.run_id for seen, _ in chosen])
        except exc.OperationalError:
            if len(chosen) == 1:
                return {chosen[0][0].run_id: MarkResult(marked=False, deferred=True)}
            return _mark_one_by_one(connection, tables, chosen, now)
        return _mark_batch(connection, tables, chosen, now)


def _mark_one_by_one(
    connection: Connection, tables: StateTables, chosen: list[tuple[RunSnapshot, str]], now: datetime
) -> dict[str, MarkResult]:
    results: dict[str, MarkResult] = {}
    for seen, status in chosen:
        try:
            with connection.begin_nested():
                _lock_run_rows(connection, tables, [seen.run_id])
                results.update(_mark_batch(connection, tables, [(seen, status)], now))
        except exc.OperationalError:
            results[seen.run_id] = MarkResult(marked=False, deferred=True)
    return results


def _mark_batch(
    connection: Connection, tables: StateTables, chosen: list[tuple[RunSnapshot, str]], now: datetime
) -> dict[str, MarkResult]:
    """The compare-and-sets, with the rows held (locked, or SQLite's write lock): re-read, compare, update."""
    ids = [seen.run_id for seen, _ in chosen]
    current = fetch_statuses(connection, tables, ids)
    same = {seen.run_id: seen.status for seen, _ in chosen if current.get(seen.run_id) == seen.status}
    reread = fetch_snapshots(connection, tables, same) if same else {}
    results = {run_id: MarkResult(marked=False) for run_id in ids}
    unchanged = [
        (seen, status)
        for seen, status in chosen
        if seen.run_id in reread and reread[seen.run_id].fingerprint == seen.fingerprint
    ]
    if not unchanged:
        return results
    times = fetch_task_finish_times(connection, tables, [seen.run_id for seen, _ in unchanged])
    part = tables.mapping.runs
    table = tables.runs_table
    columns = {name: part.columns[name] for name in ("finished_at", "updated_at") if name in part.columns}
    rows = []
    for seen, status in unchanged:
        finished, unreadable = latest_time(times[seen.run_id])
        finished_at = format_timestamp(finished or now)
        results[seen.run_id] = MarkResult(marked=True, finished_at=finished_at, unreadable_times=unreadable)
        row = {"b_key": seen.run_id, "b_status": part.written(status)}
        row.update({f"b_{name}": finished_at if name == "finished_at" else format_timestamp(now) for name in columns})
        rows.append(row)
    values: dict[str, Any] = {
        part.status: bindparam("b_status"),
        **{column: bindparam(f"b_{name}") for name, column in columns.items()},
    }
    # the status was just re-read under the lock: the key alone says which row (one statement, many rows)
    connection.execute(update(table).where(table.c[part.key] == bindparam("b_key")).values(values), rows)
    return results


def _lock_run_rows(connection: Connection, tables: StateTables, run_ids: list[str]) -> None:
    """Wait for, then hold off, executor changes to the runs' rows until the transaction ends."""
    postgresql = connection.dialect.name == "postgresql"
    if postgresql:
        previous = connection.execute(text("SELECT current_setting('statement_timeout')")).scalar_one()
        connection.execute(text(f"SET LOCAL statement_timeout = '{MARK_LOCK_STATEMENT_MS}ms'"))
    run_ids = padded(run_ids)
    rows = tables.task_rows
    connection.execute(select(rows.c.task_id).where(rows.c.run_id.in_(run_ids)).with_for_update(read=True))
    if tables.workstreams is not None:
        ws = tables.workstreams
        connection.execute(select(ws.c.workstream_id).where(ws.c.run_id.in_(run_ids)).with_for_update(read=True))
    runs = tables.runs
    connection.execute(select(runs.c.run_id).where(runs.c.run_id.in_(run_ids)).with_for_update())
    if postgresql:  # the rest of the mark runs under the usual timeout
        connection.execute(text("SELECT set_config('statement_timeout', :value, true)"), {"value": previous})


def latest_time(values: list[object]) -> tuple[datetime | None, int]:
    """The latest readable time and how many non-NULL values could not be read."""
    latest: datetime | None = None
    unreadable = 0
    for value in values:
        if value is None:
            continue
        moment = parse_timestamp(value)
        if moment is None:
            unreadable += 1
        elif latest is None or moment > latest:
            latest = moment
    return latest, unreadable
