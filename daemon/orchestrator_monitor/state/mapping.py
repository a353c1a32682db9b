"""Schema mappings: which tables and columns of an executor's database mean runs, workstreams and tasks.

Plain data and pure functions (no database): parsed from TOML, checked, and asked how a status
reads or is written. `state/tables.py` turns a mapping into the SQL that every reader uses, so
the stages above only ever see the reference vocabulary (`state/records.py`).

Three mappings are built in (`state/mappings/*.toml`): `reference` (SPEC.md's schema, the
default), `uet` and `pipeline` (the two schemas of ../shared/EXECUTORS.md). A workspace can
bring its own file (`database.schema_file`); `orchestrator schema` prints any of them as TOML.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, NoReturn

from ..errors import BadInput
from .records import RUN_STATUSES, TASK_STATUSES

BUILT_IN = ("reference", "uet", "pipeline")
DEFAULT_MAPPING = "reference"
ARCHIVAL_TABLE = "archival_log"
OWN_ARCHIVAL_TABLE = "monitor_archival_log"  # when the executor has an archival_log of its own

RUN_COLUMNS = ("name", "run_dir", "created_at", "started_at", "finished_at", "updated_at", "error_message")
WORKSTREAM_COLUMNS = ("name", "created_at", "updated_at")
TASK_COLUMNS = (
    "workstream_id",
    "name",
    "tool",
    "attempts",
    "retries",
    "error_type",
    "error_message",
    "created_at",
    "started_at",
    "finished_at",
    "updated_at",
)
WRITTEN_STATUSES = ("COMPLETED", "FAILED", "PARTIAL")  # what the monitor's mark can set
Attempts = Literal["column", "retries", "rows", "none"]


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """One table's status values: the executor's own (`read` keys) and what each means to the monitor."""

    read: Mapping[str, str]  # executor's value -> reference status

    def canonical(self, raw: str) -> str:
        """The reference status of an executor's value; an unknown value is shown as it is."""
        return self.read.get(raw, raw)

    def raw_values(self, statuses: Iterable[str]) -> tuple[str, ...]:
        """Every executor value that reads as one of `statuses` (a status nothing maps to: itself)."""
        found: list[str] = []
        for status in statuses:
            found.extend([raw for raw, canonical in self.read.items() if canonical == status] or [status])
        return tuple(found)

    @property
    def identity(self) -> bool:
        return all(raw == canonical for raw, canonical in self.read.items())


@dataclass(frozen=True, slots=True)
class TableMap:
    """A table: its name, its key and status columns, the optional columns it has, its statuses."""

    table: str
    key: str
    status: str
    columns: Mapping[str, str]  # reference name -> the executor's column, only those it has
    statuses: Vocabulary

    def real_columns(self) -> tuple[str, ...]:
        return (self.key, self.status, *self.columns.values())


@dataclass(frozen=True, slots=True)
class RunsMap(TableMap):
    write: Mapping[str, str]  # COMPLETED / FAILED / PARTIAL -> the executor's value
    run_dir_template: str | None  # e.g. ".worktrees/{run_id}", when there is no run_dir column

    def written(self, status: str) -> str:
        return self.write[status]

    def read_back(self, status: str) -> str:
        """What a run marked `status` reads as afterwards (PARTIAL written as `failed` reads FAILED)."""
        return self.statuses.canonical(self.write[status]) if status in self.write else status


@dataclass(frozen=True, slots=True)
class WorkstreamsMap(TableMap):
    run: str  # its column naming the run

    def real_columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*TableMap.real_columns(self), self.run)))


@dataclass(frozen=True, slots=True)
class TasksMap(TableMap):
    run: str | None  # its column naming the run; None: reached through its workstream
    workstream: str | None  # its column naming its workstream
    attempts: Attempts
    order: str | None  # attempts = "rows": the column whose highest value is the latest attempt

    def real_columns(self) -> tuple[str, ...]:
        extra = tuple(c for c in (self.run, self.workstream, self.order) if c is not None)
        return tuple(dict.fromkeys((*TableMap.real_columns(self), *extra)))


@dataclass(frozen=True, slots=True)
class SchemaMapping:
    name: str
    description: str
    runs: RunsMap
    workstreams: WorkstreamsMap | None
    tasks: TasksMap
    archival_table: str
    settle_seconds: float  # the completion settle window this executor's behaviour needs

    def tables(self) -> dict[str, tuple[str, ...]]:
        """Executor table -> the columns the mapping needs there."""
        found: dict[str, tuple[str, ...]] = {}
        for part in (self.runs, self.workstreams, self.tasks):
            if part is not None:
                found[part.table] = tuple(dict.fromkeys((*found.get(part.table, ()), *part.real_columns())))
        return found

    def true_status(self, stored: str, decided: str | None) -> str:
        """The outcome to tell (bag, reports): the monitor's own decision when the stored status is
        what writing it left there (PARTIAL stored as `failed`), else what the database says."""
        if decided is not None and decided in self.runs.write and self.runs.read_back(decided) == stored:
            return decided
        return stored


def load_mapping(name: str | None, schema_file: Path | None) -> SchemaMapping:
    """The configured mapping: a workspace's own file, else a built-in one by name (default `reference`)."""
    if schema_file is not None:
        try:
            data = tomllib.loads(schema_file.read_text(encoding="utf-8"))
        except OSError as err:
            raise BadInput(f"database.schema_file {schema_file}: {err.strerror}") from None
        except tomllib.TOMLDecodeError as err:
            raise BadInput(f"database.schema_file {schema_file} is not valid TOML: {err}") from None
        return parse_mapping(data, f"database.schema_file {schema_file}")
    return built_in(name or DEFAULT_MAPPING)


@cache
def built_in(name: str) -> SchemaMapping:
    if name not in BUILT_IN:
        raise BadInput(f"database.schema = {name!r}: no such built-in mapping (built in: {', '.join(BUILT_IN)})")
    text = resources.files(__package__).joinpath("mappings", f"{name}.toml").read_text(encoding="utf-8")
    return parse_mapping(tomllib.loads(text), f"built-in mapping {name}")


def built_in_text(name: str) -> str:
    """The built-in mapping's TOML, comments included: where a user starts their own."""
    built_in(name)
    return resources.files(__package__).joinpath("mappings", f"{name}.toml").read_text(encoding="utf-8")


def parse_mapping(data: Mapping[str, Any], origin: str) -> SchemaMapping:
    """Check and build a mapping; every problem is one `BadInput` line naming the key and `origin`."""
    reader = _Reader(origin)
    name = reader.text(data, "name")
    runs_data = reader.table(data, "runs") or {}
    tasks_data = reader.table(data, "tasks") or {}
    ws_data = reader.table(data, "workstreams", required=False)
    defaults = reader.table(data, "defaults", required=False) or {}
    reader.only(data, {"name", "description", "runs", "tasks", "workstreams", "defaults", "archival_table"}, "")
    reader.only(defaults, {"settle_seconds"}, "defaults.")
    settle = defaults.get("settle_seconds", 0.0)
    if not isinstance(settle, int | float) or isinstance(settle, bool) or settle < 0:
        reader.fail("defaults.settle_seconds", "must be a number of seconds >= 0")
    runs = _runs(reader, runs_data)
    workstreams = _workstreams(reader, ws_data) if ws_data is not None else None
    tasks = _tasks(reader, tasks_data, workstreams)
    archival = data.get("archival_table", ARCHIVAL_TABLE)
    if not isinstance(archival, str) or not archival:
        reader.fail("archival_table", "must be a table name")
    description = data.get("description", "")
    return SchemaMapping(
        name=name,
        description=description if isinstance(description, str) else "",
        runs=runs,
        workstreams=workstreams,
        tasks=tasks,
        archival_table=archival,
        settle_seconds=float(settle),
    )


class _Reader:
    def __init__(self, origin: str) -> None:
        self.origin = origin

    def fail(self, key: str, problem: str) -> NoReturn:
        raise BadInput(f"{self.origin}: {key} {problem}")

    def table(self, data: Mapping[str, Any], key: str, *, required: bool = True) -> dict[str, Any] | None:
        value = data.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, dict):
            self.fail(key, "must be a [table]")
        return value

    def text(self, data: Mapping[str, Any], key: str, prefix: str = "") -> str:
        value = data.get(key)
        if not isinstance(value, str) or not value:
            self.fail(prefix + key, "must be a non-empty string")
        return value

    def only(self, data: Mapping[str, Any], allowed: set[str], prefix: str) -> None:
        unknown = sorted(set(data) - allowed)
        if unknown:
            self.fail(prefix + unknown[0], f"is not a mapping key (known here: {', '.join(sorted(allowed))})")

    def columns(self, data: Mapping[str, Any], prefix: str, allowed: tuple[str, ...]) -> dict[str, str]:
        columns = data.get("columns", {})
        if not isinstance(columns, dict):
            self.fail(prefix + "columns", "must be a table of reference name = column")
        self.only(columns, set(allowed), prefix + "columns.")
        for key, value in columns.items():
            if not isinstance(value, str) or not value:
                self.fail(f"{prefix}columns.{key}", "must be a column name")
        return dict(columns)

    def vocabulary(self, data: Mapping[str, Any], prefix: str, statuses: tuple[str, ...]) -> Vocabulary:
        table = self.table(data, "statuses") or {}
        self.only(table, set(statuses), prefix + "statuses.")
        read: dict[str, str] = {}
        for canonical, values in table.items():
            if isinstance(values, str):
                values = [values]
            if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
                self.fail(f"{prefix}statuses.{canonical}", "must be a list of the executor's values")
            for value in values:
                if value in read:
                    self.fail(f"{prefix}statuses.{canonical}", f"repeats {value!r} (already {read[value]})")
                read[value] = canonical
        if not read:
            self.fail(prefix + "statuses", "must list the executor's status values")
        return Vocabulary(read)


def _runs(reader: _Reader, data: dict[str, Any]) -> RunsMap:
    reader.only(data, {"table", "key", "status", "columns", "statuses", "write", "run_dir_template"}, "runs.")
    vocabulary = reader.vocabulary(data, "runs.", RUN_STATUSES)
    write = reader.table(data, "write") or {}
    reader.only(write, set(WRITTEN_STATUSES), "runs.write.")
    for status in WRITTEN_STATUSES:
        value = write.get(status)
        if not isinstance(value, str) or value not in vocabulary.read:
            reader.fail(f"runs.write.{status}", "must be one of the executor's run statuses listed in runs.statuses")
    template = data.get("run_dir_template")
    columns = reader.columns(data, "runs.", RUN_COLUMNS)
    if template is not None and (not isinstance(template, str) or "{run_id}" not in template):
        reader.fail("runs.run_dir_template", "must be a path containing {run_id}, e.g. '.worktrees/{run_id}'")
    if template is not None and "run_dir" in columns:
        reader.fail("runs.run_dir_template", "and runs.columns.run_dir are both set: choose one")
    return RunsMap(
        table=reader.text(data, "table", "runs."),
        key=reader.text(data, "key", "runs."),
        status=reader.text(data, "status", "runs."),
        columns=columns,
        statuses=vocabulary,
        write=dict(write),
        run_dir_template=template,
    )


def _workstreams(reader: _Reader, data: dict[str, Any]) -> WorkstreamsMap:
    reader.only(data, {"table", "key", "run", "status", "columns", "statuses"}, "workstreams.")
    return WorkstreamsMap(
        table=reader.text(data, "table", "workstreams."),
        key=reader.text(data, "key", "workstreams."),
        run=reader.text(data, "run", "workstreams."),
        status=reader.text(data, "status", "workstreams."),
        columns=reader.columns(data, "workstreams.", WORKSTREAM_COLUMNS),
        statuses=reader.vocabulary(data, "workstreams.", RUN_STATUSES),
    )


def _tasks(reader: _Reader, data: dict[str, Any], workstreams: WorkstreamsMap | None) -> TasksMap:
    reader.only(data, {"table", "key", "run", "status", "columns", "statuses", "attempts", "order"}, "tasks.")
    columns = reader.columns(data, "tasks.", TASK_COLUMNS)
    run = data.get("run")
    if run is not None and (not isinstance(run, str) or not run):
        reader.fail("tasks.run", "must be a column name")
    workstream = columns.get("workstream_id")
    if run is None and (workstreams is None or workstream is None):
        reader.fail("tasks.run", "is missing: a task needs a run column, or columns.workstream_id and [workstreams]")
    attempts = data.get("attempts", "column" if "attempts" in columns else "none")
    if attempts not in ("column", "retries", "rows", "none"):
        reader.fail("tasks.attempts", "must be 'column', 'retries', 'rows' or 'none'")
    needed = {"column": "attempts", "retries": "retries"}.get(attempts)
    if needed is not None and needed not in columns:
        reader.fail("tasks.attempts", f"= {attempts!r} needs tasks.columns.{needed}")
    order = data.get("order")
    if attempts == "rows" and (not isinstance(order, str) or not order):
        reader.fail("tasks.order", "is needed when attempts = 'rows': the column whose highest value is the latest")
    return TasksMap(
        table=reader.text(data, "table", "tasks."),
        key=reader.text(data, "key", "tasks."),
        status=reader.text(data, "status", "tasks."),
        columns=columns,
        statuses=reader.vocabulary(data, "tasks.", TASK_STATUSES),
        run=run,
        workstream=workstream,
        attempts=attempts,
        order=order if attempts == "rows" else None,
    )
