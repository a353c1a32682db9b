"""Pages of runs and of a run's tasks, filtered and sorted, and its timeline (the dashboard, `monitor --follow`).

Every query is bounded by a `LIMIT` the caller has already checked, and reads through an
index: runs by `ix_runs_status` (or the table, 10,000 rows, sorted in memory), tasks by
`ix_tasks_run_id_status` (a run's tasks only, never the whole table). Counts of tasks are
taken for the runs of the page only, so a page costs the same at 10 or 10,000 runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, UnaryExpression, case, func, or_, select

from ..inlists import padded
from .queries import RUN_COLUMNS, Row
from .tables import StateTables

TASK_COLUMNS = (
    "task_id",
    "workstream_id",
    "name",
    "tool",
    "status",
    "attempts",
    "error_type",
    "error_message",
    "started_at",
    "finished_at",
)
TASK_SORTS = frozenset({"task_id", "workstream_id", "name", "tool", "status", "attempts", "started_at", "finished_at"})
RUN_SORTS = frozenset({"created_at", "run_id", "name", "status", "started_at", "finished_at", "attention"})
# "attention": failed and partial runs, then those still moving, then the rest (`views.runs.ATTENTION_RANKS`)
ATTENTION_GROUPS = (("FAILED", "PARTIAL"), ("RUNNING", "PENDING"))
ERROR_MESSAGE_CHARS = 500  # an executor may store a whole traceback; the table shows its start


@dataclass(frozen=True, slots=True)
class RunFilter:
    """What `/api/runs` may ask for; values are already checked (lengths, allowed sorts) by the caller."""

    status: str | None = None
    search: str | None = None  # a substring of the run id or name
    sort: str = "created_at"
    descending: bool = True
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True, slots=True)
class TaskFilter:
    """What a run page's tasks table may ask for; checked by the caller like `RunFilter`."""

    status: str | None = None
    tool: str | None = None
    workstream_id: str | None = None
    search: str | None = None  # a substring of the task id, name or error type
    sort: str = "task_id"
    descending: bool = False
    limit: int = 100
    offset: int = 0


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _run_conditions(tables: StateTables, wanted: RunFilter) -> list[ColumnElement[bool]]:
    runs = tables.runs
    conditions: list[ColumnElement[bool]] = []
    if wanted.status is not None:
        conditions.append(tables.runs_in([wanted.status]))
    if wanted.search is not None:
        pattern = _like(wanted.search)
        conditions.append(or_(runs.c.run_id.like(pattern, escape="\\"), runs.c.name.like(pattern, escape="\\")))
    return conditions


def fetch_runs_page(connection: Connection, tables: StateTables, wanted: RunFilter) -> tuple[list[Row], int]:
    """The runs of one page, in the asked order, and how many runs match in all."""
    runs = tables.runs
    conditions = _run_conditions(tables, wanted)
    if wanted.sort == "attention":  # most urgent group first, newest first within it (`order` flips the groups)
        rank = case(
            *((tables.runs_in(group), n) for n, group in enumerate(ATTENTION_GROUPS)), else_=len(ATTENTION_GROUPS)
        )
        ranked = rank.asc() if wanted.descending else rank.desc()
        order: tuple[UnaryExpression[Any], ...] = (ranked, runs.c.created_at.desc(), runs.c.run_id.desc())
    else:
        column = runs.c[wanted.sort]
        order = (column.desc(), runs.c.run_id.desc()) if wanted.descending else (column.asc(), runs.c.run_id.asc())
    query = (
        select(*(runs.c[name] for name in RUN_COLUMNS))
        .where(*conditions)
        .order_by(*order)
        .limit(wanted.limit)
        .offset(wanted.offset)
    )
    rows = [dict(zip(RUN_COLUMNS, row, strict=True)) for row in connection.execute(query).all()]
    total = connection.execute(select(func.count()).select_from(runs).where(*conditions)).scalar_one()
    return rows, int(total)


def fetch_status_totals(connection: Connection, tables: StateTables) -> dict[str, int]:
    """Runs by status, for the filter buttons: answered from `ix_runs_status` alone."""
    runs = tables.runs
    totals: dict[str, int] = {}
    for status, count in connection.execute(select(runs.c.status, func.count()).group_by(runs.c.status)).all():
        totals[status] = totals.get(status, 0) + int(count)
    return totals


def fetch_task_counts_for(
    connection: Connection, tables: StateTables, run_ids: Sequence[str]
) -> dict[str, dict[str, int]]:
    """Tasks per status of the given runs only: index seeks on (run_id, status)."""
    tasks = tables.tasks
    counts: dict[str, dict[str, int]] = {}
    if not run_ids:
        return counts
    query = (
        select(tasks.c.run_id, tasks.c.status, func.count())
        .where(tasks.c.run_id.in_(padded(run_ids)))
        .group_by(tasks.c.run_id, tasks.c.status)
    )
    for run_id, status, count in connection.execute(query).all():
        per_run = counts.setdefault(run_id, {})
        per_run[status] = per_run.get(status, 0) + int(count)
    return counts


def _task_conditions(tables: StateTables, run_id: str, wanted: TaskFilter) -> list[ColumnElement[bool]]:
    tasks = tables.tasks
    conditions: list[ColumnElement[bool]] = [tasks.c.run_id == run_id]
    if wanted.status is not None:
        conditions.append(tables.tasks_in([wanted.status]))
    if wanted.tool is not None:
        conditions.append(tasks.c.tool == wanted.tool)
    if wanted.workstream_id is not None:
        conditions.append(tasks.c.workstream_id == wanted.workstream_id)
    if wanted.search is not None:
        pattern = _like(wanted.search)
        conditions.append(
            or_(
                tasks.c.task_id.like(pattern, escape="\\"),
                tasks.c.name.like(pattern, escape="\\"),
                tasks.c.error_type.like(pattern, escape="\\"),
            )
        )
    return conditions


def fetch_tasks(connection: Connection, tables: StateTables, run_id: str, wanted: TaskFilter) -> list[Row]:
    """One page of a run's tasks, filtered and sorted (a view's failed tasks: no count needed)."""
    tasks = tables.tasks
    column = tasks.c[wanted.sort]
    order = (column.desc(), tasks.c.task_id.desc()) if wanted.descending else (column.asc(), tasks.c.task_id.asc())
    selected = [tasks.c[name] for name in TASK_COLUMNS if name != "error_message"]
    query = (
        select(*selected, func.substr(tasks.c.error_message, 1, ERROR_MESSAGE_CHARS).label("error_message"))
        .where(*_task_conditions(tables, run_id, wanted))
        .order_by(*order)
        .limit(wanted.limit)
        .offset(wanted.offset)
    )
    return [dict(row) for row in connection.execute(query).mappings()]


def fetch_tasks_page(
    connection: Connection, tables: StateTables, run_id: str, wanted: TaskFilter
) -> tuple[list[Row], int]:
    """One page of a run's tasks, filtered and sorted, and how many match in all."""
    conditions = _task_conditions(tables, run_id, wanted)
    total = connection.execute(select(func.count()).select_from(tables.tasks).where(*conditions)).scalar_one()
    return fetch_tasks(connection, tables, run_id, wanted), int(total)


def fetch_timeline(connection: Connection, tables: StateTables, run_id: str, limit: int) -> list[Row]:
    """The run's started tasks for its timeline: the first `limit` by start, and up to `limit` of those an
    operator looks for wherever they are (failed, cancelled, running, retried)."""
    tasks = tables.tasks
    names = [name for name in TASK_COLUMNS if name not in ("name", "error_message")] + ["error_message"]
    selected = [tasks.c[name] for name in names[:-1]]
    message = func.substr(tasks.c.error_message, 1, ERROR_MESSAGE_CHARS).label("error_message")
    started = (tasks.c.run_id == run_id, tasks.c.started_at.is_not(None))
    first = select(*selected, message).where(*started).order_by(tasks.c.started_at, tasks.c.task_id).limit(limit)
    notable = or_(tables.tasks_in(["FAILED", "CANCELLED", "RUNNING"]), tasks.c.attempts > 1)
    wanted = select(*selected, message).where(*started, notable).order_by(tasks.c.task_id).limit(limit)
    found = list(
        connection.execute(first).all()
    )  # plain rows zipped with the names: half the time of a mapping per row
    if len(found) == limit:  # there are more: those an operator looks for may be among them
        found += connection.execute(wanted).all()
    rows: dict[Any, Row] = {}
    for row in found:
        rows.setdefault(row[0], dict(zip(names, row, strict=True)))
    return list(rows.values())


def fetch_archival(connection: Connection, tables: StateTables, run_id: str, limit: int) -> list[Row]:
    """The run's `archival_log` rows, newest first (where its archive is, and how archiving went)."""
    archival_log = tables.archival_log
    query = (
        select(
            archival_log.c.action,
            archival_log.c.status,
            archival_log.c.archive_path,
            archival_log.c.file_count,
            archival_log.c.total_bytes,
            archival_log.c.error,
            archival_log.c.finished_at,
        )
        .where(archival_log.c.run_id == run_id)
        .order_by(archival_log.c.id.desc())
        .limit(limit)
    )
    return [dict(row) for row in connection.execute(query).mappings()]
