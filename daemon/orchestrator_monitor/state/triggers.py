"""Change-notification triggers on PostgreSQL, generated from the schema mapping (`orchestrator init --triggers`).

Each of the executor's tables the mapping names (runs, workstreams, tasks) gets statement-level
AFTER INSERT, UPDATE and DELETE triggers whose transition tables give the run ids the statement
touched (a task's through its run column, or through its workstream when the mapping says so);
one `pg_notify` per statement sends them as a JSON array, or `"*"` ("many": reconcile) when the
array would not fit PostgreSQL's 8000-byte payload, and TRUNCATE sends `"*"` too. A bulk insert
of 10,000 tasks is one statement, so one notification. PostgreSQL folds notifications with the
same channel and payload within a transaction, so a transaction gives one notification per
distinct set of run ids its statements touched (ten updates of one run's tasks: one; updates of
three runs in three statements: three), all delivered at its commit, none if it rolls back.

The channel is per schema (several executors may share a database), and every table in the
generated SQL is schema-qualified, the functions running with `search_path = pg_catalog,
pg_temp`: whatever the executor's session has on its search path changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

from .mapping import SchemaMapping, TableMap

CHANNEL = "orchestrator_monitor"
PREFIX = "orchestrator_monitor_notify"
MANY = "*"  # the payload when the run ids would not fit, or a TRUNCATE: "reconcile"
PAYLOAD_LIMIT_BYTES = 7999  # PostgreSQL refuses a payload of 8000 bytes or more
NAME_LIMIT_BYTES = 63  # NAMEDATALEN - 1: longer channel and trigger names are cut or refused
EVENTS = {  # trigger suffix -> (event, its transition tables)
    "ins": ("INSERT", "NEW TABLE AS new_rows"),
    "upd": ("UPDATE", "NEW TABLE AS new_rows OLD TABLE AS old_rows"),
    "del": ("DELETE", "OLD TABLE AS old_rows"),
}
TRIGGERS = tuple(f"{PREFIX}_{suffix}" for suffix in (*EVENTS, "truncate"))


def channel_name(schema: str) -> str:
    """The channel the triggers of `schema` notify on (the plain name in `public`)."""
    name = CHANNEL if schema == "public" else f"{CHANNEL}_{schema}"
    return name.encode()[:NAME_LIMIT_BYTES].decode(errors="ignore")


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class _Watched:
    table: str
    run_ids: str  # a SELECT of the touched run ids from `{rows}` (a transition table)


def _watched(mapping: SchemaMapping, schema: str) -> list[_Watched]:
    """Each mapped table once, with how its rows name their run."""
    found: dict[str, _Watched] = {}

    def add(part: TableMap, run_ids: str) -> None:
        found.setdefault(part.table, _Watched(part.table, run_ids))

    add(mapping.runs, f"SELECT {quote(mapping.runs.key)}::text FROM {{rows}}")
    ws = mapping.workstreams
    if ws is not None:
        add(ws, f"SELECT {quote(ws.run)}::text FROM {{rows}}")
    tasks = mapping.tasks
    if tasks.run is not None:
        add(tasks, f"SELECT {quote(tasks.run)}::text FROM {{rows}}")
    else:
        assert ws is not None and tasks.workstream is not None
        add(
            tasks,
            f"SELECT w.{quote(ws.run)}::text FROM {{rows}} t JOIN {quote(schema)}.{quote(ws.table)} w "
            f"ON w.{quote(ws.key)} = t.{quote(tasks.workstream)}",
        )
    return list(found.values())


def _function_name(table: str) -> str:
    return f"{PREFIX}_{table}".encode()[:NAME_LIMIT_BYTES].decode(errors="ignore")


def watched_tables(mapping: SchemaMapping) -> list[str]:
    """The executor's tables that get the triggers."""
    return [watched.table for watched in _watched(mapping, "")]


def _function(schema: str, watched: _Watched) -> str:
    channel = literal(channel_name(schema))
    inserted = watched.run_ids.format(rows="new_rows")
    deleted = watched.run_ids.format(rows="old_rows")
    return f"""CREATE OR REPLACE FUNCTION {quote(schema)}.{quote(_function_name(watched.table))}() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $body$
DECLARE
    payload text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify({channel}, {literal(MANY)});
        RETURN NULL;
    ELSIF TG_OP = 'INSERT' THEN
        SELECT json_agg(DISTINCT run_id)::text INTO payload FROM ({inserted}) AS touched(run_id);
    ELSIF TG_OP = 'DELETE' THEN
        SELECT json_agg(DISTINCT run_id)::text INTO payload FROM ({deleted}) AS touched(run_id);
    ELSE
        SELECT json_agg(DISTINCT run_id)::text INTO payload
        FROM ({inserted} UNION {deleted}) AS touched(run_id);
    END IF;
    IF payload IS NULL THEN
        RETURN NULL;  -- the statement touched no row
    END IF;
    IF octet_length(payload) > {PAYLOAD_LIMIT_BYTES} THEN
        payload := {literal(MANY)};
    END IF;
    PERFORM pg_notify({channel}, payload);
    RETURN NULL;
END
$body$;"""


def _triggers(schema: str, watched: _Watched) -> list[str]:
    table = f"{quote(schema)}.{quote(watched.table)}"
    function = f"{quote(schema)}.{quote(_function_name(watched.table))}()"
    statements = []
    for suffix, (event, referencing) in EVENTS.items():
        name = quote(f"{PREFIX}_{suffix}")
        statements.append(f"DROP TRIGGER IF EXISTS {name} ON {table};")
        statements.append(
            f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {referencing}\n"
            f"    FOR EACH STATEMENT EXECUTE FUNCTION {function};"
        )
    name = quote(f"{PREFIX}_truncate")
    statements.append(f"DROP TRIGGER IF EXISTS {name} ON {table};")
    statements.append(
        f"CREATE TRIGGER {name} AFTER TRUNCATE ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {function};"
    )
    return statements


def install_sql(mapping: SchemaMapping, schema: str) -> str:
    """The DDL that installs (or replaces) the triggers: one transaction, safe to run again."""
    parts = [
        f"-- orchestrator-monitor change notifications for mapping {mapping.name!r} in schema {schema!r}",
        f"-- (the daemon LISTENs on channel {channel_name(schema)!r}; remove with `orchestrator init --drop-triggers`)",
        "BEGIN;",
    ]
    for watched in _watched(mapping, schema):
        parts.append(_function(schema, watched))
        parts.extend(_triggers(schema, watched))
    parts.append("COMMIT;")
    return "\n".join(parts) + "\n"


def drop_sql(mapping: SchemaMapping, schema: str) -> str:
    """The DDL that removes the triggers and their functions (nothing else); safe to run again."""
    parts = [f"-- remove orchestrator-monitor change notifications from schema {schema!r}", "BEGIN;"]
    for watched in _watched(mapping, schema):
        table = f"{quote(schema)}.{quote(watched.table)}"
        parts.extend(f"DROP TRIGGER IF EXISTS {quote(name)} ON {table};" for name in TRIGGERS)
        parts.append(f"DROP FUNCTION IF EXISTS {quote(schema)}.{quote(_function_name(watched.table))}();")
    parts.append("COMMIT;")
    return "\n".join(parts) + "\n"


def current_schema(connection: Connection) -> str:
    """Where the mapped tables are found: the first schema of the connection's search path."""
    schema = connection.execute(text("SELECT current_schema()")).scalar_one()
    return str(schema)


def installed(connection: Connection, mapping: SchemaMapping, schema: str) -> bool:
    """True when every trigger is there and enabled (a DBA may have dropped or disabled one)."""
    rows = connection.execute(
        text(
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :schema AND t.tgname LIKE :prefix AND t.tgenabled <> 'D'"
        ),
        {"schema": schema, "prefix": f"{PREFIX}_%"},
    ).all()
    have = {(str(table), str(name)) for table, name in rows}
    wanted = {(table, name) for table in watched_tables(mapping) for name in TRIGGERS}
    return wanted <= have
