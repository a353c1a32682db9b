"""Read views of the state database: one short read-only transaction each."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection

from ..config import Settings
from ..errors import BadInput
from ..ids import task_log_path, validate_run_id
from ..state import queries
from ..state.access import StateDatabase, state_database
from ..state.engine import read_transaction, translate_errors
from ..state.pages import TaskFilter, fetch_tasks
from ..state.queries import Row
from ..state.tables import StateTables
from .runs import RunDetail, StatusView, build_run_detail, build_status_view

FAILED_TASKS_SHOWN = 20  # the most recent failures a run's view names; `failed_total` counts them all
_FAILED = TaskFilter(status="FAILED", sort="finished_at", descending=True, limit=FAILED_TASKS_SHOWN)


@contextmanager
def state_reader(settings: Settings) -> Iterator[StateDatabase]:
    """The configured database, read-only, checked against its schema mapping."""
    with state_database(settings, readonly=True) as state:
        yield state


def read_status(state: StateDatabase, now: datetime) -> StatusView:
    with translate_errors(state.name), read_transaction(state.engine) as connection:
        run_rows = queries.fetch_runs(connection, state.tables)
        counts = queries.fetch_task_counts(connection, state.tables)
    return build_status_view(run_rows, counts, now)


def read_run(state: StateDatabase, run_id: str, now: datetime, workspace: Path | None = None) -> RunDetail:
    """One run's detail (with its failed tasks' log files when `workspace` is given); an unknown run is bad
    input (exit 2) naming it."""
    validate_run_id(run_id)
    with translate_errors(state.name), read_transaction(state.engine) as connection:
        rows = fetch_run_rows(connection, state.tables, run_id)
    if rows is None:
        raise BadInput(f"unknown run: {run_id} (not in {state.name})")
    return run_detail(rows, now, workspace)


def run_detail(rows: tuple[Row, list[Row], list[Row], list[Row]], now: datetime, workspace: Path | None) -> RunDetail:
    """The detail of `fetch_run_rows`, each failed task with its log file when the run directory has one."""
    run_row, workstream_rows, groups, failed_rows = rows
    detail = build_run_detail(run_row, workstream_rows, groups, now, failed_rows)
    if workspace is None:
        return detail
    failed = []
    for task in detail.failed_tasks:
        log = task_log(workspace, run_row, task.task_id)
        failed.append(replace(task, log=None if log is None else str(log.relative_to(workspace))))
    return replace(detail, failed_tasks=failed)


def task_log(workspace: Path, run_row: Row, task_id: str) -> Path | None:
    """The task's log file (`ids.task_log_path`) when it is there as a regular file; neither it nor `logs/` may
    be a symbolic link, which could lead out of the run directory (the dashboard serves this file)."""
    log = task_log_path(workspace, run_row["run_id"], run_row.get("run_dir"), task_id)
    if log is None or log.is_symlink() or log.parent.is_symlink():
        return None
    return log if log.is_file() else None


def fetch_run_rows(
    connection: Connection, tables: StateTables, run_id: str
) -> tuple[Row, list[Row], list[Row], list[Row]] | None:
    """What a run's detail is built from (inside the caller's transaction); None for an unknown run."""
    run_row = queries.fetch_run(connection, tables, run_id)
    if run_row is None:
        return None
    failed = fetch_tasks(connection, tables, run_id, _FAILED)
    return (
        run_row,
        queries.fetch_workstreams(connection, tables, run_id),
        queries.fetch_task_groups(connection, tables, run_id),
        failed,
    )
