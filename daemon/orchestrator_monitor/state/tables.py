"""A schema mapping as SQL: the runs, workstreams and tasks every reader selects from.

Each is a subquery whose columns carry the reference names (`run_id`, `status`, `run_dir`,
`attempts`...), so a query is written once for every mapping. `status` is the reference status
(a CASE over the executor's value, left out when the values are the reference ones);
`stored_status` is the executor's own value, and every filter on status goes through it
(`runs_in`, `tasks_in`): the subqueries are simple enough for SQLite and PostgreSQL to flatten
into the outer query, so a filter on `stored_status` seeks the executor's index on that column.
A column the executor lacks is NULL. Tasks whose rows are attempts are folded to the latest
attempt per key (a window function, partitioned by run first so a filter on the run is pushed
into it); `task_rows` are the rows as they are, for the cheap pass and the mark's row locks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column as SqlColumn
from sqlalchemy import (
    ColumnElement,
    FromClause,
    Integer,
    Label,
    MetaData,
    Subquery,
    Table,
    Text,
    case,
    cast,
    func,
    literal,
    null,
    select,
)

from .mapping import SchemaMapping, TableMap, TasksMap, Vocabulary
from .schema import archival_log_table

INTEGER_COLUMNS = frozenset({"attempts", "retries"})


@dataclass(frozen=True)
class StateTables:
    mapping: SchemaMapping
    runs: Subquery
    workstreams: Subquery | None
    tasks: Subquery  # one row per task (attempts folded)
    task_rows: Subquery  # the executor's rows: run_id, task_id, stored_status
    runs_table: Table  # the executor's own table, for the mark and rowid reads
    archival_log: Table
    # the readers' statements over these tables, built once (state/snapshots.py `_statement`): building
    # one on every wake-up cost more than SQLite took to run it
    statements: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def runs_in(self, statuses: Iterable[str]) -> ColumnElement[bool]:
        return self.runs.c.stored_status.in_(self.mapping.runs.statuses.raw_values(statuses))

    def tasks_in(self, statuses: Iterable[str], source: Subquery | None = None) -> ColumnElement[bool]:
        return (source if source is not None else self.tasks).c.stored_status.in_(
            self.mapping.tasks.statuses.raw_values(statuses)
        )

    def workstreams_in(self, statuses: Iterable[str]) -> ColumnElement[bool]:
        assert self.workstreams is not None and self.mapping.workstreams is not None
        return self.workstreams.c.stored_status.in_(self.mapping.workstreams.statuses.raw_values(statuses))

    def run_status(self) -> ColumnElement[str]:
        """The reference status of a row of `runs_table` (for reads that need the real table)."""
        part = self.mapping.runs
        return _status(self.runs_table.c[part.status], part.statuses)


def build_tables(mapping: SchemaMapping, archival_table: str) -> StateTables:
    """The selectables of `mapping`; `archival_table` is where the monitor's archival rows go."""
    meta = MetaData()
    runs_table = _table(meta, mapping.runs)
    ws_map = mapping.workstreams
    ws_table = _table(meta, ws_map) if ws_map is not None else None
    task_table = _table(meta, mapping.tasks)
    return StateTables(
        mapping=mapping,
        runs=_runs(mapping, runs_table),
        workstreams=_workstreams(mapping, ws_table) if ws_table is not None else None,
        tasks=_tasks(mapping, task_table, ws_table),
        task_rows=_task_rows(mapping, task_table, ws_table),
        runs_table=runs_table,
        archival_log=archival_log_table(archival_table),
    )


def _table(meta: MetaData, part: TableMap) -> Table:
    """The executor's table with just the columns the mapping names (a table may be mapped twice)."""
    if part.table in meta.tables:
        table = meta.tables[part.table]
        for name in part.real_columns():
            if name not in table.c:
                table.append_column(SqlColumn(name, Text))
        return table
    return Table(part.table, meta, *(SqlColumn(name, Text) for name in part.real_columns()))


def _status(column: ColumnElement[str], vocabulary: Vocabulary) -> ColumnElement[str]:
    if vocabulary.identity:
        return column
    return case({raw: literal(canonical) for raw, canonical in vocabulary.read.items()}, value=column, else_=column)


def _optional(table: Table, part: TableMap, name: str) -> ColumnElement[Any]:
    column = part.columns.get(name)
    if column is not None:
        return table.c[column]
    return cast(null(), Integer if name in INTEGER_COLUMNS else Text)


def _runs(mapping: SchemaMapping, table: Table) -> Subquery:
    part = mapping.runs
    run_dir: ColumnElement[Any] = _optional(table, part, "run_dir")
    if part.run_dir_template is not None:
        prefix, _, suffix = part.run_dir_template.partition("{run_id}")
        run_dir = literal(prefix, Text) + table.c[part.key] + literal(suffix, Text)
    return select(
        table.c[part.key].label("run_id"),
        _optional(table, part, "name").label("name"),
        _status(table.c[part.status], part.statuses).label("status"),
        table.c[part.status].label("stored_status"),
        run_dir.label("run_dir"),
        *(_optional(table, part, name).label(name) for name in ("created_at", "started_at", "finished_at")),
        _optional(table, part, "updated_at").label("updated_at"),
    ).subquery("run")


def _workstreams(mapping: SchemaMapping, table: Table) -> Subquery:
    part = mapping.workstreams
    assert part is not None
    return select(
        table.c[part.key].label("workstream_id"),
        table.c[part.run].label("run_id"),
        _optional(table, part, "name").label("name"),
        _status(table.c[part.status], part.statuses).label("status"),
        table.c[part.status].label("stored_status"),
        _optional(table, part, "created_at").label("created_at"),
        _optional(table, part, "updated_at").label("updated_at"),
    ).subquery("workstream")


def _run_of_task(mapping: SchemaMapping, table: Table, ws_table: Table | None) -> ColumnElement[str]:
    part = mapping.tasks
    if part.run is not None:
        return table.c[part.run]
    assert ws_table is not None and mapping.workstreams is not None
    return ws_table.c[mapping.workstreams.run]


def _from(mapping: SchemaMapping, table: Table, ws_table: Table | None) -> FromClause:
    part = mapping.tasks
    if part.run is not None:
        return table
    assert ws_table is not None and mapping.workstreams is not None and part.workstream is not None
    return table.join(ws_table, table.c[part.workstream] == ws_table.c[mapping.workstreams.key])


def _attempts(part: TasksMap, table: Table) -> ColumnElement[int]:
    """A task's attempts from a count column, or from a retry counter (+1 once it left the queue)."""
    if part.attempts == "column":
        return table.c[part.columns["attempts"]]
    started = case((table.c[part.status].in_(part.statuses.raw_values(("PENDING", "QUEUED"))), 0), else_=1)
    if part.attempts == "retries":
        return func.coalesce(cast(table.c[part.columns["retries"]], Integer), 0) + started
    return started


def _tasks(mapping: SchemaMapping, table: Table, ws_table: Table | None) -> Subquery:
    part = mapping.tasks
    run_id = _run_of_task(mapping, table, ws_table)
    key = table.c[part.key]
    rows = part.attempts == "rows"
    attempts = (func.count().over(partition_by=(run_id, key)) if rows else _attempts(part, table)).label("attempts")
    columns: list[Label[Any]] = [
        cast(key, Text).label("task_id"),
        run_id.label("run_id"),
        _optional(table, part, "workstream_id").label("workstream_id"),
        *(_optional(table, part, name).label(name) for name in ("name", "tool")),
        _status(table.c[part.status], part.statuses).label("status"),
        table.c[part.status].label("stored_status"),
        attempts,
        *(
            _optional(table, part, name).label(name)
            for name in ("error_type", "error_message", "created_at", "started_at", "finished_at", "updated_at")
        ),
    ]
    source = _from(mapping, table, ws_table)
    if not rows:
        return select(*columns).select_from(source).subquery("task")
    assert part.order is not None
    latest = func.row_number().over(partition_by=(run_id, key), order_by=table.c[part.order].desc()).label("latest")
    every = select(*columns, latest).select_from(source).subquery("attempt")
    return select(*(every.c[c.name] for c in columns)).where(every.c.latest == 1).subquery("task")


def _task_rows(mapping: SchemaMapping, table: Table, ws_table: Table | None) -> Subquery:
    part = mapping.tasks
    return (
        select(
            _run_of_task(mapping, table, ws_table).label("run_id"),
            table.c[part.key].label("task_id"),
            table.c[part.status].label("stored_status"),
        )
        .select_from(_from(mapping, table, ws_table))
        .subquery("task_row")
    )
