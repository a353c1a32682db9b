"""The detector's reads: only what can have changed, each through an index.

A wake-up reads the open runs (`ix_runs_status`), the few whose tasks are all terminal
(`NOT EXISTS` seeks on `ix_tasks_run_id_status` and `ix_workstreams_run_id_status`: the
cost grows with the number of open runs, never with the number of tasks), and full
snapshots of those candidates only. Nothing here trusts `updated_at`; it is only part of
the fingerprint. Every read goes through the mapped tables (`state/tables.py`), so statuses
come back in the reference vocabulary whatever the executor writes; the index names above are
the reference schema's (`orchestrator daemon` warns about any the executor's schema lacks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from sys import intern
from typing import Any

import orjson
from sqlalchemy import (
    BindParameter,
    ColumnElement,
    CompoundSelect,
    Connection,
    Select,
    and_,
    bindparam,
    exc,
    exists,
    func,
    literal_column,
    select,
    union,
)

from ..inlists import chunks
from .records import RUN_STATUSES, RUN_TERMINAL, RunSnapshot, as_text
from .tables import StateTables

OPEN_RUN_STATUSES = tuple(s for s in RUN_STATUSES if s not in RUN_TERMINAL)
OPEN_TASK_STATUSES = ("PENDING", "QUEUED", "RUNNING")
STREAM_ROWS = 5000  # rows fetched at a time when every run is read
RUN_IDS = "run_ids"  # the expanding parameter of the statements that read given runs


def _statement(tables: StateTables, name: str, build: Callable[[], Any]) -> Any:
    """The statement `name` over `tables`, built on first use and kept: the same object every time, its
    run ids an expanding parameter (`RUN_IDS`), so neither it nor its cache key is built again."""
    statement = tables.statements.get(name)
    if statement is None:
        statement = tables.statements[name] = build()
    return statement


def _run_ids() -> BindParameter[str]:
    return bindparam(RUN_IDS, expanding=True)


def fetch_open_runs(
    connection: Connection, tables: StateTables, among: Sequence[str] | None = None
) -> dict[str, tuple[str, str | None]]:
    """run_id -> (status, run_dir) of the runs in a known open status (index seek on status), or of those
    `among` these runs (seeks by id: a notification said only they changed).

    Every read here fetches its whole result at once: row by row through the result object cost more
    than the query itself on 1,500 open runs."""
    runs = tables.runs

    def build() -> Select[tuple[str, str, str | None]]:
        return select(runs.c.run_id, runs.c.status, runs.c.run_dir).where(tables.runs_in(OPEN_RUN_STATUSES))

    if among is None:
        query = _statement(tables, "open runs", build)
        return {run_id: (status, run_dir) for run_id, status, run_dir in connection.execute(query).all()}
    query = _statement(tables, "open runs among", lambda: build().where(runs.c.run_id.in_(_run_ids())))
    found: dict[str, tuple[str, str | None]] = {}
    for chunk in chunks(among):
        rows = connection.execute(query, {RUN_IDS: chunk}).all()
        found.update((run_id, (status, run_dir)) for run_id, status, run_dir in rows)
    return found


def _text(value: object) -> str:
    return as_text(value) or "NULL"


def fetch_all_runs(connection: Connection, tables: StateTables) -> dict[str, tuple[str, str | None]]:
    """run_id -> (status, run_dir) of every run, for the first-start baseline and archival's backfill."""
    return {run_id: (status, run_dir) for run_id, status, run_dir in iterate_all_runs(connection, tables)}


def iterate_all_runs(connection: Connection, tables: StateTables) -> Iterator[tuple[str, str, str | None]]:
    """(run_id, status, run_dir) of every run, one at a time (the full reconciliation keeps few).

    The few distinct statuses are interned: a long history holds one copy of each, not one per run.
    `yield_per` makes PostgreSQL send the rows in batches (a server-side cursor) rather than all
    at once; SQLite steps through them anyway."""
    runs = tables.runs
    query = select(runs.c.run_id, runs.c.status, runs.c.run_dir).execution_options(yield_per=STREAM_ROWS)
    for run_id, status, run_dir in connection.execute(query):
        yield run_id, intern(_text(status)), run_dir


def fetch_newest_rowid(connection: Connection, tables: StateTables) -> int | None:
    """SQLite: the highest rowid of `runs`, the watermark for runs inserted later; None without rowids."""
    if connection.dialect.name != "sqlite":
        return None
    newest: Select[int] = select(func.coalesce(func.max(literal_column("rowid")), 0)).select_from(tables.runs_table)
    try:
        with connection.begin_nested():
            return int(connection.execute(newest).scalar_one())
    except exc.OperationalError:  # a WITHOUT ROWID table: reconciliation alone finds new terminal runs
        return None


def fetch_runs_after(connection: Connection, tables: StateTables, rowid: int) -> tuple[dict[str, str], int]:
    """Runs inserted after the watermark (a rowid range seek) and the new watermark.

    Catches a run inserted already terminal, or made terminal before a pass saw it open.
    """
    table = tables.runs_table
    row_id: ColumnElement[int] = literal_column("rowid")
    query = _statement(
        tables,
        "runs after",
        lambda: (
            select(row_id, table.c[tables.mapping.runs.key], tables.run_status())
            .select_from(table)
            .where(row_id > bindparam("after"))
            .order_by(row_id)
        ),
    )
    rows = connection.execute(query, {"after": rowid}).all()
    return {run_id: _text(status) for _, run_id, status in rows}, (rows[-1][0] if rows else rowid)


def fetch_statuses(connection: Connection, tables: StateTables, run_ids: Sequence[str]) -> dict[str, str]:
    runs = tables.runs
    query = _statement(
        tables, "statuses", lambda: select(runs.c.run_id, runs.c.status).where(runs.c.run_id.in_(_run_ids()))
    )
    found: dict[str, str] = {}
    for chunk in chunks(run_ids):
        found.update((run_id, _text(status)) for run_id, status in connection.execute(query, {RUN_IDS: chunk}).all())
    return found


def fetch_candidates(connection: Connection, tables: StateTables, among: Sequence[str] | None = None) -> list[str]:
    """Open runs (or those `among` these) that have tasks, none of them in a known open status, and no
    open workstream.

    Read from the executor's rows as they are: where rows are attempts, a run with any open
    attempt row waits (the snapshot, which folds the attempts, then decides exactly)."""
    if among is None:
        return list(connection.execute(_statement(tables, "candidates", lambda: _candidates(tables))).scalars().all())
    query = _statement(
        tables, "candidates among", lambda: _candidates(tables).where(tables.runs.c.run_id.in_(_run_ids()))
    )
    return [run_id for ids in chunks(among) for run_id in connection.execute(query, {RUN_IDS: ids}).scalars().all()]


def _candidates(tables: StateTables) -> Select[tuple[str]]:
    runs, rows = tables.runs, tables.task_rows
    conditions = [tables.runs_in(OPEN_RUN_STATUSES)]
    if tables.workstreams is not None:  # first: a run with an open workstream is the cheapest to rule out, and
        ws = tables.workstreams  # where tasks reach their run through workstreams the rest costs a join per run
        conditions.append(~exists().where(and_(ws.c.run_id == runs.c.run_id, tables.workstreams_in(OPEN_RUN_STATUSES))))
    conditions.append(exists().where(rows.c.run_id == runs.c.run_id))
    conditions.append(~exists().where(and_(rows.c.run_id == runs.c.run_id, tables.tasks_in(OPEN_TASK_STATUSES, rows))))
    return select(runs.c.run_id).where(*conditions)


def fetch_snapshots(
    connection: Connection, tables: StateTables, run_statuses: dict[str, str]
) -> dict[str, RunSnapshot]:
    """Full snapshots (counts, attempts, times) of a few runs."""
    tasks, workstreams = tables.tasks, tables.workstreams
    task_rows: dict[str, list[tuple[Any, ...]]] = {run_id: [] for run_id in run_statuses}
    ws_rows: dict[str, list[tuple[Any, ...]]] = {run_id: [] for run_id in run_statuses}
    task_query = _statement(
        tables,
        "task counts",
        lambda: (
            select(
                tasks.c.run_id,
                tasks.c.status,
                func.count(),
                func.coalesce(func.sum(tasks.c.attempts), 0),
                func.max(tasks.c.updated_at),
                func.max(tasks.c.finished_at),
            )
            .where(tasks.c.run_id.in_(_run_ids()))
            .group_by(tasks.c.run_id, tasks.c.status)
        ),
    )
    for ids in chunks(list(run_statuses)):
        for row in connection.execute(task_query, {RUN_IDS: ids}).all():
            task_rows[row[0]].append((_text(row[1]), *row[2:]))
        if workstreams is None:
            continue
        ws_query = _statement(
            tables,
            "workstream counts",
            lambda: (
                select(workstreams.c.run_id, workstreams.c.status, func.count())
                .where(workstreams.c.run_id.in_(_run_ids()))
                .group_by(workstreams.c.run_id, workstreams.c.status)
            ),
        )
        for row in connection.execute(ws_query, {RUN_IDS: ids}).all():
            ws_rows[row[0]].append((_text(row[1]), *row[2:]))
    return {
        run_id: _snapshot(run_id, status, sorted(task_rows[run_id]), sorted(ws_rows[run_id]))
        for run_id, status in run_statuses.items()
    }


def _snapshot(
    run_id: str, status: str, task_rows: list[tuple[Any, ...]], ws_rows: list[tuple[Any, ...]]
) -> RunSnapshot:
    return RunSnapshot(
        run_id=run_id,
        status=status,
        tasks={row[0]: row[1] for row in task_rows},
        workstreams={row[0]: row[1] for row in ws_rows},
        fingerprint=(status, *(tuple(map(str, row)) for row in task_rows), *(tuple(map(str, row)) for row in ws_rows)),
    )


def fingerprint_text(snapshot: RunSnapshot) -> str:
    """The rows' part of the fingerprint (the run's own status left out: the mark changes it), as the
    ledger keeps it: what a completion was decided on, compared again by the reopen checks and archival."""
    return orjson.dumps([str(part) for part in snapshot.fingerprint[1:]]).decode()


def fetch_run_snapshot(connection: Connection, tables: StateTables, run_id: str) -> RunSnapshot | None:
    """The run's status and rows as this transaction sees them; None when the run is gone."""
    status = fetch_statuses(connection, tables, [run_id]).get(run_id)
    return None if status is None else fetch_snapshots(connection, tables, {run_id: status})[run_id]


def fetch_runs_with_open_rows(connection: Connection, tables: StateTables, run_ids: Sequence[str]) -> set[str]:
    """Which of these runs have a task row or a workstream in a known open status.

    Index seeks only (`ix_tasks_run_id_status`, `ix_workstreams_run_id_status`: a run id and an
    open status each), so the cost follows the number of runs asked about, never the history.
    The cheap pass asks it about the runs completed within the reopen watch: a retry that moves a
    task of a marked run back to RUNNING is seen on the wake-up its commit causes. One statement
    per chunk, its list bound once (an expanding parameter: the statement is compiled once and
    cached, rather than 500 literals coerced on every wake-up).
    """
    if not run_ids:
        return set()
    query = _statement(tables, "runs with open rows", lambda: _runs_with_open_rows(tables))
    found: set[str] = set()
    for ids in chunks(run_ids):
        found.update(connection.execute(query, {RUN_IDS: ids}).scalars().all())
    return found


def _runs_with_open_rows(tables: StateTables) -> Select[tuple[str]] | CompoundSelect:
    rows, workstreams = tables.task_rows, tables.workstreams
    chunk = _run_ids()
    query: Select[tuple[str]] | CompoundSelect = select(rows.c.run_id).where(
        rows.c.run_id.in_(chunk), tables.tasks_in(OPEN_TASK_STATUSES, rows)
    )
    if workstreams is not None:
        open_ws = select(workstreams.c.run_id).where(
            workstreams.c.run_id.in_(chunk), tables.workstreams_in(OPEN_RUN_STATUSES)
        )
        query = union(query, open_ws)
    return query


def fetch_task_finish_times(
    connection: Connection, tables: StateTables, run_ids: Sequence[str]
) -> dict[str, list[Any]]:
    """Every task's `finished_at` of these runs, by run (one query per chunk, not one per run)."""
    tasks = tables.tasks
    query = _statement(
        tables,
        "finish times",
        lambda: select(tasks.c.run_id, tasks.c.finished_at).where(tasks.c.run_id.in_(_run_ids())),
    )
    found: dict[str, list[Any]] = {run_id: [] for run_id in run_ids}
    for ids in chunks(run_ids):
        for run_id, finished_at in connection.execute(query, {RUN_IDS: ids}).all():
            found[run_id].append(finished_at)
    return found


def fetch_orphan_run_ids(connection: Connection, tables: StateTables) -> set[str]:
    """Run ids that tasks or workstreams name but `runs` does not hold.

    The distinct run ids (a covering index scan), then one seek in `runs` for each: only the
    orphans come back, so a long history is never held as a set of every run id. (Filtering
    before DISTINCT would seek once per task: three times slower at ten tasks per run.)
    """
    runs = tables.runs
    found: set[str] = set()
    for table in (t for t in (tables.task_rows, tables.workstreams) if t is not None):
        referenced = select(table.c.run_id).distinct().subquery()
        query = select(referenced.c.run_id).where(~exists().where(runs.c.run_id == referenced.c.run_id))
        found.update(connection.execute(query).scalars())
    return found
