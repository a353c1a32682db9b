"""Engines for the state database, and the translation of driver errors into user errors.

SQLite is opened the way a guest should: readers get `mode=ro` and `query_only`, so a
read path can never take the write lock; every connection waits `busy_timeout` for an
executor's lock instead of failing at once; the journal mode is set only on a database
the monitor creates itself. Transactions are begun explicitly (`BEGIN`, or `BEGIN
IMMEDIATE` for the completion mark) because the sqlite3 module's implicit transactions
would make a group of reads see different snapshots. A pooled connection keeps the file it
opened, so a database restored by replacing its file would be read (and written!) in the old,
deleted file forever: each checkout compares the connection's file with what the path names
now and opens a new connection when they differ.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, Table, create_engine, event, exc
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.pool import QueuePool

from ..config import hide_passwords
from ..errors import BadInput, Unavailable
from .schema import metadata


def parse_url(url: str) -> URL:
    """The configured URL parsed; a malformed one is bad input (exit 2) shown without its password.

    An `@` left unquoted in a password would make the rest of it the host name, which every
    message and health event then shows: refused here, with how to write it."""
    try:
        parsed = make_url(url)
    except (exc.ArgumentError, ValueError):
        raise BadInput(f"database.url is not a valid SQLAlchemy URL: {hide_passwords(url)!r}") from None
    if parsed.host is not None and "@" in parsed.host:
        raise BadInput("database.url: write an '@' in the password as %40 (it is taken for the host otherwise)")
    return parsed


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, None for other backends and in-memory databases."""
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def describe_database(url: str) -> str:
    """A name for messages: the file path, or the URL with its password hidden."""
    path = sqlite_path(url)
    return str(path) if path is not None else parse_url(url).render_as_string(hide_password=True)


def open_engine(url: str, *, busy_timeout_seconds: float, readonly: bool) -> Engine:
    """An engine on `url`; a SQLite file must already exist (a reader never creates one)."""
    parsed = parse_url(url)
    path = sqlite_path(url)
    if path is None:
        try:
            return create_engine(parsed, pool_pre_ping=True)
        except (exc.ArgumentError, exc.NoSuchModuleError, ImportError) as err:
            raise BadInput(f"database.url {describe_database(url)}: {err}") from None
    if not path.is_file():
        raise Unavailable(f"state database not found: {path} (run 'orchestrator init' to create a workspace)")
    # A URI (percent-quoted, so any file name works) is the only way to ask for mode=ro/rw;
    # mode=rw also means a file deleted since the check is not silently recreated empty.
    uri = f"file:{quote(str(path.absolute()))}?mode={'ro' if readonly else 'rw'}"
    engine = create_engine(
        "sqlite://",
        creator=lambda: _connect_file(path, uri, busy_timeout_seconds),
        poolclass=QueuePool,
    )
    _manage_sqlite_transactions(engine, busy_timeout_seconds=busy_timeout_seconds, readonly=readonly)
    _follow_file_replacement(engine, path)
    return engine


class _FileConnection(sqlite3.Connection):
    """A connection that knows which file it opened (device, inode); None if it cannot be sure."""

    file: tuple[int, int] | None = None


def file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file `path` names now; None when there is none."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _connect_file(path: Path, uri: str, busy_timeout_seconds: float) -> sqlite3.Connection:
    before = file_identity(path)
    connection = sqlite3.connect(
        uri, uri=True, timeout=busy_timeout_seconds, check_same_thread=False, factory=_FileConnection
    )
    if file_identity(path) == before:  # else replaced while connecting: the next checkout reconnects
        connection.file = before
    return connection


def _follow_file_replacement(engine: Engine, path: Path) -> None:
    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: _FileConnection, _record: Any, _proxy: Any) -> None:
        if dbapi_connection.file is None or dbapi_connection.file != file_identity(path):
            raise exc.DisconnectionError(f"{path} is not the file this connection opened")  # the pool reconnects


def create_sqlite_database(path: Path, *, busy_timeout_seconds: float) -> bool:
    """Create the state tables in `path`, the file too if missing; True when the file is new.

    WAL is set only on a file created here: changing the journal mode of an executor's
    database would change how the executor itself behaves.
    """
    is_new = not path.exists() or path.stat().st_size == 0
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=busy_timeout_seconds)
    try:
        if is_new:
            connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()
    engine = open_engine(f"sqlite:///{path}", busy_timeout_seconds=busy_timeout_seconds, readonly=False)
    try:
        create_tables(engine, describe_database(f"sqlite:///{path}"))
    finally:
        engine.dispose()
    return is_new


def create_tables(engine: Engine, name: str) -> None:
    """Create whichever state tables are missing; existing tables are never altered."""
    with translate_errors(name):
        metadata.create_all(engine, checkfirst=True)


def create_archival_table(engine: Engine, table: Table, name: str) -> None:
    """The monitor's archival table, if missing: its one table in the executor's database."""
    with translate_errors(name):
        table.create(engine, checkfirst=True)


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """One short read transaction: every read inside sees the same snapshot."""
    with engine.connect() as connection, connection.begin():
        yield connection


def _manage_sqlite_transactions(engine: Engine, *, busy_timeout_seconds: float, readonly: bool) -> None:
    busy_ms = int(busy_timeout_seconds * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        dbapi_connection.execute(f"PRAGMA busy_timeout={busy_ms}")
        if readonly:
            dbapi_connection.execute("PRAGMA query_only=1")

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "")
        connection.exec_driver_sql(f"BEGIN {mode}".strip())

    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        # SQLite opens a file it may not write read-only, and the connection stays so after the file is
        # writable again: treated as a lost connection, it is replaced (found by chaos: marks and
        # archival_log rows deferred forever after a read-only spell, bench/chaos.py).
        if "readonly database" in str(context.original_exception):
            context.is_disconnect = True


_LOCKED = re.compile(r"database is locked|database table is locked|busy", re.IGNORECASE)
_CORRUPT = re.compile(r"not a database|malformed|corrupt", re.IGNORECASE)
_NO_TABLE = re.compile(r"no such table: (\w+)|relation \"(\w+)\" does not exist", re.IGNORECASE)


@contextmanager
def translate_errors(name: str) -> Iterator[None]:
    """Turn a driver error into one clear line naming the database (exit 3)."""
    try:
        yield
    except exc.DBAPIError as err:
        detail = str(err.orig) if err.orig is not None else str(err)
        if _LOCKED.search(detail):
            raise Unavailable(f"state database {name} is locked by another writer (waited the busy timeout)") from None
        if _CORRUPT.search(detail):
            raise Unavailable(f"state database {name} is corrupt or not a SQLite database: {detail}") from None
        missing = _NO_TABLE.search(detail)
        if missing:
            table = missing.group(1) or missing.group(2)
            raise Unavailable(
                f"state database {name} has no table '{table}' (run 'orchestrator init' to create the schema)"
            ) from None
        raise Unavailable(f"state database {name} cannot be used: {detail.splitlines()[0]}") from None
