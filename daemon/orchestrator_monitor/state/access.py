"""Opening the state database through its schema mapping: checked first, then read.

`open_state` is how every command and the daemon reach the executor's tables: it loads the
configured mapping, looks at what the database has (tables, columns, indexes: one
`PRAGMA table_info` or catalog query per table), refuses a database that does not fit with
one line (exit 3), and hands back the engine with the mapped tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine, inspect

from ..config import Settings
from ..errors import Unavailable
from .engine import describe_database, open_engine, translate_errors
from .fit import Found, Indexes, archival_table, fit_problems, fold, missing_indexes, refusal, relevant_tables
from .mapping import BUILT_IN, SchemaMapping, built_in, built_in_text, load_mapping
from .tables import StateTables, build_tables


class SchemaMismatch(Unavailable):
    """The database does not fit the configured mapping (exit 3, nothing written to it)."""


@dataclass(frozen=True)
class StateDatabase:
    engine: Engine
    url: str
    name: str  # for messages: the file, or the URL without its password
    tables: StateTables
    index_advice: tuple[str, ...]  # CREATE INDEX statements the cheap pass would like

    @property
    def mapping(self) -> SchemaMapping:
        return self.tables.mapping

    def dispose(self) -> None:
        self.engine.dispose()


def configured_mapping(settings: Settings) -> SchemaMapping:
    schema_file = settings.database.schema_file
    return load_mapping(settings.database.schema_name, settings.resolve(schema_file) if schema_file else None)


def mapping_text(settings: Settings) -> str:
    """The configured mapping's TOML as written (comments included): where a user starts their own."""
    schema_file = settings.database.schema_file
    if schema_file is None:
        return built_in_text(settings.database.schema_name)
    configured_mapping(settings)  # a file that does not parse is reported as such, not printed
    return settings.resolve(schema_file).read_text(encoding="utf-8")


def settle_seconds(settings: Settings, mapping: SchemaMapping) -> float:
    """`completion.settle_seconds` when configured, else what the mapping's executor needs."""
    configured = settings.completion.settle_seconds
    return mapping.settle_seconds if configured is None else configured


def inspect_database(engine: Engine, name: str, mapping: SchemaMapping) -> tuple[Found, Indexes]:
    """The columns and indexes (the primary key counted as one) of the tables a mapping may need."""
    wanted = relevant_tables(mapping)
    with translate_errors(name), engine.connect() as connection:
        inspector = inspect(connection)
        columns: dict[str, list[str]] = {}
        indexes: dict[str, list[tuple[str, ...]]] = {}
        for table in (t for t in inspector.get_table_names() if t.casefold() in wanted):
            columns[table] = [column["name"] for column in inspector.get_columns(table)]
            found = [tuple(c for c in index["column_names"] if c is not None) for index in inspector.get_indexes(table)]
            primary = inspector.get_pk_constraint(table).get("constrained_columns") or []
            indexes[table.casefold()] = [tuple(c.casefold() for c in cols) for cols in (*found, tuple(primary)) if cols]
    return fold(columns), indexes


def check_fit(engine: Engine, mapping: SchemaMapping, name: str) -> tuple[StateTables, tuple[str, ...]]:
    """The mapped tables, or `SchemaMismatch` naming what is missing and what would fit."""
    found, indexes = inspect_database(engine, name, mapping)
    problems = fit_problems(mapping, found)
    if problems:
        raise SchemaMismatch(refusal(mapping, problems, found, name))
    return build_tables(mapping, archival_table(mapping, found)), tuple(missing_indexes(mapping, indexes))


def open_state(settings: Settings, *, readonly: bool) -> StateDatabase:
    """The state database, checked against the configured mapping; the caller disposes of it."""
    url = settings.database_url()
    mapping = configured_mapping(settings)
    engine = open_engine(url, busy_timeout_seconds=settings.database.busy_timeout_seconds, readonly=readonly)
    name = describe_database(url)
    try:
        tables, advice = check_fit(engine, mapping, name)
    except BaseException:
        engine.dispose()
        raise
    return StateDatabase(engine=engine, url=url, name=name, tables=tables, index_advice=advice)


@dataclass(frozen=True)
class Survey:
    """`orchestrator schema`: what each mapping lacks in the configured database (empty: it fits)."""

    database: str
    configured: SchemaMapping
    problems: dict[str, list[str]]  # mapping name -> what the database lacks for it, built-in ones and the configured
    index_advice: tuple[str, ...]  # for the configured mapping, when it fits


def survey(settings: Settings) -> Survey:
    url = settings.database_url()
    name = describe_database(url)
    configured = configured_mapping(settings)
    engine = open_engine(url, busy_timeout_seconds=settings.database.busy_timeout_seconds, readonly=True)
    try:
        found, indexes = inspect_database(engine, name, configured)
    finally:
        engine.dispose()
    mappings = {mapping.name: mapping for mapping in (*(built_in(n) for n in BUILT_IN), configured)}
    problems = {mapping_name: fit_problems(mapping, found) for mapping_name, mapping in mappings.items()}
    advice = () if problems[configured.name] else tuple(missing_indexes(configured, indexes))
    return Survey(database=name, configured=configured, problems=problems, index_advice=advice)


@contextmanager
def state_database(settings: Settings, *, readonly: bool = True) -> Iterator[StateDatabase]:
    database = open_state(settings, readonly=readonly)
    try:
        yield database
    finally:
        database.dispose()
