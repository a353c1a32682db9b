"""Where the monitor keeps its own state: `.monitor/monitor.db`, or `monitor_` tables of a shared PostgreSQL.

On SQLite the monitor's bookkeeping stays out of the executor's file on purpose: its writes must
never wake its own watcher on `.state/` nor compete for the executor's write lock. A PostgreSQL
state database is shared by daemons on several hosts, so what they must agree on (the ledger,
the event numbering, heartbeats, which daemons are alive) lives in tables beside the executor's,
never in local files. The tables are defined once here for both; `schema/monitor.*.sql` is the
same DDL for a DBA (a test keeps them in step). Every write transaction is short: `BEGIN
IMMEDIATE` on SQLite (the write lock first), READ COMMITTED with row locks on PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    create_engine,
    event,
    exc,
    inspect,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.pool import QueuePool

from ..config import Settings
from ..errors import BadInput, Unavailable
from ..workspace import Workspace

SCHEMA_VERSION = 2
LOCAL = "local"  # the one daemon of a SQLite workspace: its event numbering keeps this key whatever its name
ACTIVE_PHASES = ("marking", "completed", "announced", "reopened", "published", "archived")  # a daemon owes them work

metadata = MetaData()

monitor_meta = Table(
    "monitor_meta", metadata, Column("key", Text, primary_key=True), Column("value", Text, nullable=False)
)
_active = f"phase IN ({', '.join(repr(phase) for phase in ACTIVE_PHASES)})"
# That partial index's WHERE, for the queries of owed runs to say word for word: SQLite seeks on a partial index
# only for a query whose WHERE holds its very term, and a bound `phase IN (?, ...)` or a `phase = ?` alone scans
# every run ever seen (0.1 s a query at a million runs of history, four of them before READY).
OWED = text(_active)
monitor_runs = Table(
    "monitor_runs",
    metadata,
    Column("run_id", Text, primary_key=True),
    Column("phase", Text, nullable=False),
    Column("status", Text),
    Column("marked_by", Text),
    Column("tasks", Text),
    Column("fingerprint", Text),
    Column("reopened", Integer, nullable=False, server_default="0"),
    Column("owner", Text),  # the daemon that finishes the run's work (NULL: a workspace's one daemon)
    Column("updated_at", Text, nullable=False),
    # what is still owed, by whom: a seek among the few, never a scan of every run ever seen
    Index("ix_monitor_runs_owed", "phase", "owner", sqlite_where=text(_active), postgresql_where=text(_active)),
    # the full comparison's hour of recent completions, read by time on each pass instead of held in memory
    Index("ix_monitor_runs_updated_at", "updated_at"),
)
monitor_refusals = Table(
    "monitor_refusals",
    metadata,
    Column("run_id", Text, primary_key=True),
    Column("reason", Text, nullable=False),
    Column("at", Text, nullable=False),
)
# The event numbering, per daemon: the next `seq` never handed out (see `ledger.monitor_db.EventSeqBlocks`).
monitor_sequences = Table(
    "monitor_sequences",
    metadata,
    Column("daemon_id", Text, primary_key=True),
    Column("next_seq", BigInteger, nullable=False),
)
monitor_heartbeats = Table(
    "monitor_heartbeats",
    metadata,
    Column("daemon_id", Text, nullable=False),
    Column("job", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("beat_at", Text, nullable=False),
    Column("errors", Text, nullable=False),
    Column("detail", Text, nullable=False),
    PrimaryKeyConstraint("daemon_id", "job"),
)
# The daemons sharing the database: a daemon whose `beat_at` (the server's clock) is older than the
# lease has lost its runs to the others.
monitor_daemons = Table(
    "monitor_daemons",
    metadata,
    Column("daemon_id", Text, primary_key=True),
    Column("host", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("version", Text, nullable=False),
    Column("started_at", Text, nullable=False),
    Column("beat_at", Text, nullable=False),
    Column("lease_seconds", Float, nullable=False),  # its own: a reader needs no configuration to judge it
    Column("stopped", Integer, nullable=False, server_default="0"),
)

# The archive catalog (`ledger.catalog`): one row per published bag, filled as bags are published
# and rebuilt from the bags by `orchestrator archives reindex` (the bags stay the truth).
monitor_archives = Table(
    "monitor_archives",
    metadata,
    Column("run_id", Text, primary_key=True),
    Column("name", Text),
    Column("status", Text, nullable=False),
    Column("started_at", Text),
    Column("finished_at", Text),
    Column("archived_at", Text, nullable=False),  # the bag's Bagging-Time
    Column("ended_at", Text, nullable=False),  # finished_at, else archived_at: what searches sort and bound
    Column("files", BigInteger, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("manifest_sha256", Text, nullable=False),
    Column("verified_at", Text),  # the last fixity check (NULL: none since the catalog knew the bag)
    Column("verify_result", Text),  # ok | corrupt
    Column("verify_detail", Text),
    # A search's page is its newest bags: by status, the second index walks one status's bags in that
    # order; the first, narrower, counts them in about half the time.
    Index("ix_monitor_archives_status", "status"),
    Index("ix_monitor_archives_status_ended", "status", "ended_at"),
    # run_id is here for width too: SQLite counts all rows with the first-listed among the narrowest
    # indexes (its creation order, arbitrary), and only status or verify_result, single and short, are cheap.
    Index("ix_monitor_archives_ended", "ended_at", "run_id"),
    # `--name 'nightly-*'` seeks its prefix (and counts within a time range from the index alone): SQLite's
    # LIKE ignores ASCII case, so its index does too; PostgreSQL's LIKE is exact and needs `text_pattern_ops`
    # whatever the database's collation.
    Index("ix_monitor_archives_name_nocase", text("name COLLATE NOCASE"), "ended_at").ddl_if(dialect="sqlite"),
    Index("ix_monitor_archives_name", "name", "ended_at", postgresql_ops={"name": "text_pattern_ops"}).ddl_if(
        dialect="postgresql"
    ),
    Index("ix_monitor_archives_result", "verify_result"),  # `--result corrupt`: the few marked
    Index("ix_monitor_archives_audit", "verified_at", "archived_at", "run_id"),  # the audit's order
)
# Every place a bag is stored (today the local archive root; later offload targets).
monitor_archive_locations = Table(
    "monitor_archive_locations",
    metadata,
    Column("run_id", Text, nullable=False),
    Column("kind", Text, nullable=False),  # local
    Column("location", Text, nullable=False),
    Column("recorded_at", Text, nullable=False),
    PrimaryKeyConstraint("run_id", "location"),
)
# The offload journal (`offload.journal`): each bag file a target has confirmed, so a restarted daemon sends
# only the rest; and each multipart upload under way, so a killed one is resumed or aborted, never left.
monitor_offload_files = Table(
    "monitor_offload_files",
    metadata,
    Column("target", Text, nullable=False),
    Column("run_id", Text, nullable=False),
    Column("path", Text, nullable=False),  # in the bag
    Column("sha256", Text, nullable=False),  # hex, the bag's manifest's
    Column("bytes", BigInteger, nullable=False),
    Column("remote_checksum", Text, nullable=False),  # what the target keeps and answers (S3: base64, or composite)
    Column("confirmed_at", Text, nullable=False),
    PrimaryKeyConstraint("target", "run_id", "path"),
)
monitor_offload_uploads = Table(
    "monitor_offload_uploads",
    metadata,
    Column("target", Text, nullable=False),
    Column("run_id", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("upload_id", Text, nullable=False),
    Column("started_at", Text, nullable=False),
    PrimaryKeyConstraint("target", "run_id", "path"),
)
# What a search by tool or error type seeks: one row per distinct value in the bag's task rows, with
# the bag's status and end copied in, so that a search's count is one range of this index, never a
# lookup per matching bag (at a million bags that lookup made `--tool X` miss its 50 ms).
monitor_archive_facets = Table(
    "monitor_archive_facets",
    metadata,
    Column("run_id", Text, nullable=False),
    Column("kind", Text, nullable=False),  # tool | error_type
    Column("value", Text, nullable=False),
    Column("status", Text, nullable=False),  # monitor_archives.status
    Column("ended_at", Text, nullable=False),  # monitor_archives.ended_at
    PrimaryKeyConstraint("run_id", "kind", "value"),
    Index("ix_monitor_archive_facets_search", "kind", "value", "status", "ended_at"),
)

# Retention (`ledger.prunings`): what it deleted, when and why (a run directory, or a local bag whose
# location row goes too), and the reasons it refused, each said once per run.
monitor_prunings = Table(
    "monitor_prunings",
    metadata,
    Column("run_id", Text, nullable=False),
    Column("target", Text, nullable=False),  # run_dir | bag
    Column("pruned_at", Text, nullable=False),
    Column("why", Text, nullable=False),
    Column("files", BigInteger, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("kept", BigInteger, nullable=False),  # files left in place (not in the bag)
    PrimaryKeyConstraint("run_id", "target"),
)
monitor_retention_holds = Table(
    "monitor_retention_holds",
    metadata,
    Column("run_id", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", Text, nullable=False),
    PrimaryKeyConstraint("run_id", "target", "reason"),
)


@dataclass(frozen=True)
class MonitorStore:
    """The monitor's own database; `shared` when several daemons may use it (PostgreSQL)."""

    engine: Engine
    shared: bool
    daemon_id: str

    @property
    def postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @property
    def seq_key(self) -> str:
        return self.daemon_id if self.shared else LOCAL

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One short write transaction (`BEGIN IMMEDIATE` on SQLite)."""
        with self.engine.connect() as connection, connection.begin():
            yield connection

    def insert(self, table: Table) -> Any:
        """An INSERT that can say ON CONFLICT, in this backend's dialect (both spell it alike)."""
        return postgresql.insert(table) if self.postgresql else sqlite.insert(table)

    def dispose(self) -> None:
        self.engine.dispose()


def open_store(settings: Settings, *, readonly: bool = False) -> MonitorStore | None:
    """The workspace's monitor database, its tables created (never when `readonly`).

    A server state database (PostgreSQL) holds it; otherwise `.monitor/monitor.db`. None when
    `readonly` and there is none yet (no daemon or command ever ran here).
    """
    daemon_id = settings.daemon_id()
    busy = settings.database.busy_timeout_seconds
    url = settings.database_url()
    try:
        parsed = make_url(url)
    except (exc.ArgumentError, ValueError):
        raise BadInput("database.url is not a valid SQLAlchemy URL") from None
    if parsed.get_backend_name() != "sqlite":
        try:
            engine = create_engine(parsed, pool_pre_ping=True, pool_size=3, max_overflow=5)
        except (exc.ArgumentError, exc.NoSuchModuleError, ImportError) as err:
            raise BadInput(f"database.url: {err}") from None
        store = MonitorStore(engine, shared=True, daemon_id=daemon_id)
    else:
        path = Workspace.from_settings(settings).progress_db
        if readonly and not path.is_file():
            return None
        store = MonitorStore(_sqlite_engine(path, busy, readonly=readonly), shared=False, daemon_id=daemon_id)
    if not readonly:
        _create(store)
    return store


def sqlite_store(path: Path, *, busy_timeout_seconds: float, daemon_id: str = LOCAL) -> MonitorStore:
    """A one-daemon store in the SQLite file `path`, its tables created (benchmarks and tests build one)."""
    store = MonitorStore(_sqlite_engine(path, busy_timeout_seconds, readonly=False), shared=False, daemon_id=daemon_id)
    _create(store)
    return store


def _create(store: MonitorStore) -> None:
    try:
        create_store_tables(store.engine)
    except exc.DBAPIError as err:
        store.dispose()
        raise Unavailable(f"the monitor's database cannot be used: {str(err.orig).splitlines()[0]}") from None


def _sqlite_engine(path: Path, busy_timeout_seconds: float, *, readonly: bool) -> Engine:
    if not readonly:
        path.parent.mkdir(parents=True, exist_ok=True)
    uri = f"file:{quote(str(path.absolute()))}?mode={'ro' if readonly else 'rwc'}"  # quoted: '#', '?' are names

    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(
            uri, uri=True, timeout=busy_timeout_seconds, isolation_level=None, check_same_thread=False
        )
        if not readonly:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")  # a recorded completion must survive power loss
        return connection

    engine = create_engine("sqlite://", creator=connect, poolclass=QueuePool, pool_size=2, max_overflow=8)

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return engine


def create_store_tables(engine: Engine) -> None:
    """Create the monitor's tables, and bring a database of an earlier version up to this one; idempotent."""
    with engine.connect() as connection, connection.begin():
        _upgrade(connection)
        metadata.create_all(connection, checkfirst=True)
        for table in metadata.sorted_tables:  # an index added since the table was made
            for index in table.indexes:
                index.create(connection, checkfirst=True)
        insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
        connection.execute(
            insert(monitor_meta)
            .values(key="schema_version", value=str(SCHEMA_VERSION))
            .on_conflict_do_update(index_elements=["key"], set_={"value": str(SCHEMA_VERSION)})
        )


def _upgrade(connection: Connection) -> None:
    """Version 1 (one daemon): no `owner`, one heartbeat row per job, one numbering row; the catalog's
    facets without their bag's status and end, its one-column index of the end; the owed runs' index
    before `published`."""
    inspector = inspect(connection)
    tables = set(inspector.get_table_names())

    def has_column(table: str, column: str) -> bool:
        return column in {c["name"] for c in inspector.get_columns(table)}

    if "monitor_runs" in tables and not has_column("monitor_runs", "owner"):
        connection.execute(text("ALTER TABLE monitor_runs ADD COLUMN owner TEXT"))
        connection.execute(text("DROP INDEX IF EXISTS ix_monitor_runs_reopened"))
    if "monitor_heartbeats" in tables and not has_column("monitor_heartbeats", "daemon_id"):
        connection.execute(text("DROP TABLE monitor_heartbeats"))  # a beat is worth nothing after a restart
    connection.execute(text("DROP INDEX IF EXISTS ix_monitor_archives_ended_at"))  # now (ended_at, run_id)
    connection.execute(text("DROP INDEX IF EXISTS ix_monitor_runs_active"))  # now `..._owed`, with `published`
    if "monitor_archive_facets" in tables and not has_column("monitor_archive_facets", "status"):
        connection.execute(text("DROP INDEX IF EXISTS ix_monitor_archive_facets_value"))  # now with status, end
        for column in ("status", "ended_at"):
            connection.execute(text(f"ALTER TABLE monitor_archive_facets ADD COLUMN {column} TEXT NOT NULL DEFAULT ''"))
            connection.execute(
                text(
                    f"UPDATE monitor_archive_facets SET {column} = (SELECT a.{column} FROM monitor_archives a "
                    "WHERE a.run_id = monitor_archive_facets.run_id)"
                )
            )
    if "monitor_event_seq" in tables:
        next_seq = connection.execute(text("SELECT next_seq FROM monitor_event_seq WHERE id = 1")).scalar()
        monitor_sequences.create(connection, checkfirst=True)
        if next_seq is not None:
            connection.execute(monitor_sequences.insert().values(daemon_id=LOCAL, next_seq=int(next_seq)))
        connection.execute(text("DROP TABLE monitor_event_seq"))
