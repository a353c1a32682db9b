"""Does a database fit a mapping? Pure functions over what the database has (table -> columns, indexes).

Every command checks this before its first query, so a foreign or mismatched database gets one
line naming what is missing and the built-in mappings that would fit, never a driver error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .mapping import BUILT_IN, OWN_ARCHIVAL_TABLE, SchemaMapping, built_in

Found = Mapping[str, frozenset[str]]  # table -> its columns, names case-folded
Indexes = Mapping[str, Sequence[tuple[str, ...]]]  # table -> each index's columns, in order, case-folded
ARCHIVAL_COLUMNS = frozenset({"id", "run_id", "action", "status", "archive_path", "started_at", "finished_at"})


def fold(found: Mapping[str, Sequence[str]]) -> Found:
    return {table.casefold(): frozenset(c.casefold() for c in columns) for table, columns in found.items()}


def relevant_tables(mapping: SchemaMapping) -> frozenset[str]:
    """The tables any answer here can look at (case-folded): a shared database may hold hundreds of
    others, which every command would otherwise inspect at start."""
    names = {mapping.archival_table, OWN_ARCHIVAL_TABLE, *mapping.tables()}
    for other in BUILT_IN:
        names.update(built_in(other).tables())
    return frozenset(name.casefold() for name in names)


def fit_problems(mapping: SchemaMapping, found: Found) -> list[str]:
    """What the database lacks for `mapping`: one phrase per table; empty when it fits."""
    problems = []
    for table, columns in mapping.tables().items():
        have = found.get(table.casefold())
        if have is None:
            problems.append(f"no table {table}")
            continue
        missing = [column for column in columns if column.casefold() not in have]
        if missing:
            problems.append(f"table {table} has no column {', '.join(missing)}")
    return problems


def has_any_table(mapping: SchemaMapping, found: Found) -> bool:
    return any(table.casefold() in found for table in mapping.tables())


def fitting(found: Found) -> list[str]:
    """The built-in mappings the database fits."""
    return [name for name in BUILT_IN if not fit_problems(built_in(name), found)]


def refusal(mapping: SchemaMapping, problems: list[str], found: Found, database: str) -> str:
    """The one line a mismatched database gets (stderr, health, the daemon's last word)."""
    if mapping.name == "reference" and not has_any_table(mapping, found):  # an empty or unrelated database
        return f"state database {database} has no table 'runs' (run 'orchestrator init' to create the schema)"
    fits = [name for name in fitting(found) if name != mapping.name]
    if fits:
        hint = f"it fits the built-in mapping {' and '.join(fits)}: set database.schema = {fits[0]!r}"
    else:
        hint = "no built-in mapping fits it: write one (database.schema_file; see 'orchestrator schema')"
    return f"state database {database} does not fit the schema mapping {mapping.name!r}: {'; '.join(problems)} ({hint})"


def archival_table(mapping: SchemaMapping, found: Found) -> str:
    """Where the monitor's archival rows go: the mapping's table, unless a table of that name with
    other columns is there already (an executor's own archival log)."""
    have = found.get(mapping.archival_table.casefold())
    if have is None or have >= ARCHIVAL_COLUMNS:
        return mapping.archival_table
    return OWN_ARCHIVAL_TABLE


def missing_indexes(mapping: SchemaMapping, indexes: Indexes) -> list[str]:
    """`CREATE INDEX` statements for what the cheap pass seeks but the executor has no index for.

    The monitor never creates them itself: the database is the executor's."""
    wanted: list[tuple[str, tuple[str, ...]]] = [(mapping.runs.table, (mapping.runs.status,))]
    tasks = mapping.tasks
    ws = mapping.workstreams
    if tasks.run is not None:
        wanted.append((tasks.table, (tasks.run, tasks.status)))
    elif tasks.workstream is not None:
        wanted.append((tasks.table, (tasks.workstream, tasks.status)))
    if ws is not None:
        wanted.append((ws.table, (ws.run, ws.status)))
        if tasks.run is None:
            wanted.append((ws.table, (ws.key,)))
    statements = []
    for table, columns in wanted:
        have = indexes.get(table.casefold(), ())
        folded = tuple(c.casefold() for c in columns)
        if not any(index[: len(folded)] == folded for index in have):
            name = "monitor_ix_" + "_".join((table, *columns))
            statements.append(f"CREATE INDEX {name} ON {table} ({', '.join(columns)});")
    return statements
