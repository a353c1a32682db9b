"""`orchestrator init`: the workspace's folders, the state schema and the monitor's own database.

The monitor creates only the reference schema (it is the only one whose DDL it owns), and only in
a database with none of those tables yet. An executor's database that fits its mapping gets
just the monitor's archival table; one that does not fit is refused and left exactly as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from ..errors import BadInput, Unavailable
from ..ledger.store import open_store
from ..workspace import Workspace
from .access import SchemaMismatch, check_fit, configured_mapping, inspect_database
from .engine import (
    create_archival_table,
    create_sqlite_database,
    create_tables,
    describe_database,
    open_engine,
    sqlite_path,
    translate_errors,
)
from .fit import fit_problems, has_any_table, refusal
from .mapping import DEFAULT_MAPPING
from .triggers import channel_name, current_schema, drop_sql, install_sql


@dataclass(frozen=True)
class InitResult:
    workspace: Path
    database: str
    created_database: bool
    schema: str


def init_workspace(settings: Settings) -> InitResult:
    """Create the folders, the state schema and the monitor's own database; safe to repeat."""
    workspace = Workspace.from_settings(settings)
    url = settings.database_url()
    name = describe_database(url)
    mapping = configured_mapping(settings)
    busy = settings.database.busy_timeout_seconds
    path = sqlite_path(url)
    missing = path is not None and (not path.exists() or path.stat().st_size == 0)
    if missing and mapping.name != DEFAULT_MAPPING:
        raise Unavailable(
            f"state database not found: {name} (the {mapping.name!r} schema is its executor's own: start the "
            "executor first, or point database.url at the file it writes)"
        )
    for folder in workspace.folders():
        folder.mkdir(parents=True, exist_ok=True)
    created = False
    if path is not None and missing:
        created = create_sqlite_database(path, busy_timeout_seconds=busy)
    else:
        engine = open_engine(url, busy_timeout_seconds=busy, readonly=False)
        try:
            found, _ = inspect_database(engine, name, mapping)
            problems = fit_problems(mapping, found)
            if problems and mapping.name == DEFAULT_MAPPING and not has_any_table(mapping, found):
                create_tables(engine, name)
            elif problems:
                raise SchemaMismatch(refusal(mapping, problems, found, name))
            tables, _ = check_fit(engine, mapping, name)
            create_archival_table(engine, tables.archival_log, name)
        finally:
            engine.dispose()
    store = open_store(settings)  # .monitor/monitor.db, or the monitor_ tables of a server database
    assert store is not None
    store.dispose()
    return InitResult(workspace=workspace.root, database=name, created_database=created, schema=mapping.name)


def refuse_sqlite_triggers(url: str) -> None:
    if sqlite_path(url) is not None:
        raise BadInput("init --triggers is for a PostgreSQL state database; a SQLite one is watched through its file")


@dataclass(frozen=True)
class TriggerResult:
    sql: str
    schema: str
    channel: str


def trigger_sql(settings: Settings, *, drop: bool, apply: bool) -> TriggerResult:
    """The DDL that installs (or, `drop`, removes) the triggers in the configured schema; run it when `apply`.

    SQLite has no LISTEN/NOTIFY (its file is watched instead): bad input, before anything is touched.
    """
    url = settings.database_url()
    if sqlite_path(url) is not None:
        raise BadInput("init --triggers is for a PostgreSQL state database; a SQLite one is watched through its file")
    name = describe_database(url)
    mapping = configured_mapping(settings)
    engine = open_engine(url, busy_timeout_seconds=settings.database.busy_timeout_seconds, readonly=not apply)
    try:
        if engine.dialect.name != "postgresql":
            raise BadInput(f"init --triggers is for PostgreSQL; {name} is {engine.dialect.name}")
        with translate_errors(name), engine.connect() as connection:
            schema = current_schema(connection)
            connection.rollback()
            if not drop:
                check_fit(engine, mapping, name)
            sql = drop_sql(mapping, schema) if drop else install_sql(mapping, schema)
            if apply:  # the DDL holds its own BEGIN/COMMIT: one transaction, all or nothing
                connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(sql)
    finally:
        engine.dispose()
    return TriggerResult(sql=sql, schema=schema, channel=channel_name(schema))
