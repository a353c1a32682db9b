"""Read queries of the state database, each answered from an index.

They return plain dicts and tuples; `views/runs.py` turns them into what people read. Callers run
them inside `engine.read_transaction` so that one view sees one snapshot.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, RowMapping, case, func, select

from .records import as_text
from .tables import StateTables

RUN_COLUMNS = ("run_id", "name", "status", "run_dir", "created_at", "started_at", "finished_at", "updated_at")

Row = dict[str, Any]
GROUP_TEXT_COLUMNS = ("workstream_id", "tool", "status", "error_type")


def fetch_runs(connection: Connection, tables: StateTables) -> list[Row]:
    runs = tables.runs
    query = select(*(runs.c[name] for name in RUN_COLUMNS)).order_by(runs.c.created_at, runs.c.run_id)
    # One fetchall of plain rows zipped with the names: about half the time of a RowMapping per
    # row, ~15 ms of `orchestrator status` at 10,000 runs (bench/views.py).
    return [dict(zip(RUN_COLUMNS, row, strict=True)) for row in connection.execute(query).all()]


def fetch_run(connection: Connection, tables: StateTables, run_id: str) -> Row | None:
    runs = tables.runs
    query = select(*(runs.c[name] for name in RUN_COLUMNS)).where(runs.c.run_id == run_id)
    row = connection.execute(query).mappings().first()
    return dict(row) if row is not None else None


def fetch_task_counts(connection: Connection, tables: StateTables) -> dict[str, dict[str, int]]:
    """Tasks per run and status, for every run: a scan of the (run_id, status) index only."""
    tasks = tables.tasks
    query = select(tasks.c.run_id, tasks.c.status, func.count()).group_by(tasks.c.run_id, tasks.c.status)
    counts: dict[str, dict[str, int]] = {}
    for run_id, status, count in connection.execute(query).all():  # one fetchall, not a fetchone per row
        per_run = counts.setdefault(run_id, {})
        key = as_text(status) or "NULL"
        per_run[key] = per_run.get(key, 0) + count
    return counts


def fetch_workstreams(connection: Connection, tables: StateTables, run_id: str) -> list[Row]:
    workstreams = tables.workstreams
    if workstreams is None:
        return []
    query = (
        select(workstreams.c.workstream_id, workstreams.c.name, workstreams.c.status)
        .where(workstreams.c.run_id == run_id)
        .order_by(workstreams.c.workstream_id)
    )
    return [_texts(row, ("name", "status")) for row in connection.execute(query).mappings()]


def fetch_task_groups(connection: Connection, tables: StateTables, run_id: str) -> list[Row]:
    """The run's tasks grouped by workstream, tool, status and error type, with attempt totals."""
    tasks = tables.tasks
    query = (
        select(
            tasks.c.workstream_id,
            tasks.c.tool,
            tasks.c.status,
            tasks.c.error_type,
            func.count().label("tasks"),
            func.coalesce(func.sum(tasks.c.attempts), 0).label("attempts"),
            func.coalesce(func.max(tasks.c.attempts), 0).label("max_attempts"),
            func.sum(case((tasks.c.attempts > 1, 1), else_=0)).label("retried"),
        )
        .where(tasks.c.run_id == run_id)
        .group_by(tasks.c.workstream_id, tasks.c.tool, tasks.c.status, tasks.c.error_type)
    )
    return [_texts(row, GROUP_TEXT_COLUMNS) for row in connection.execute(query).mappings()]


def _texts(row: RowMapping, columns: tuple[str, ...]) -> Row:
    """The row with these TEXT columns as text, whatever a writer stored in them (see `as_text`)."""
    return {**row, **{column: as_text(row[column]) for column in columns}}
