"""The health checks, as plain functions: each takes what it looks at (and `now`) and makes one pass.

Only `daemon.py` schedules them (APScheduler) and `orchestrator health` runs them once;
`safemode.observe` decides what a result means. "Live" means the daemon's loops make
progress (fresh heartbeats); "healthy" means live and every check passing.
"""

from __future__ import annotations

import os
import re
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine, exc, text

from ..ledger.monitor_db import Heartbeat
from ..units import format_bytes
from .safemode import Condition, Observation

HEARTBEAT = "monitor_heartbeat"
DATABASE = "db_connection_check"
STORAGE = "archival_storage_check"
PROGRESS_HANDLER_OPS = 10_000  # SQLite VM steps between looks at the quick_check deadline

_CORRUPT = re.compile(r"not a database|malformed|corrupt", re.IGNORECASE)
_BUSY = re.compile(r"locked|busy", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class FileStamp:
    """What a database file looked like when `quick_check` last passed on it."""

    device: int
    inode: int
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class DatabaseCheck:
    observation: Observation
    verified: FileStamp | None  # pass it to the next check: an unchanged file is not scanned again


def check_sqlite_database(
    path: Path, *, timeout_seconds: float, quick_check_seconds: float, verified: FileStamp | None
) -> DatabaseCheck:
    """Connect read-only, read the schema, and `PRAGMA quick_check` (bounded in time) if the file changed.

    Writability is what the file system says (`os.access`, which also sees a read-only mount):
    SQLite itself opens a write-protected file read-only without a word.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        return DatabaseCheck(Observation(DATABASE, Condition.UNREACHABLE, f"{path} does not exist"), None)
    stamp = FileStamp(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    uri = f"file:{quote(str(path.absolute()))}?mode=ro"
    try:
        with closing(sqlite3.connect(uri, uri=True, timeout=timeout_seconds, isolation_level=None)) as connection:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
            if stamp != verified:
                problem = _quick_check(connection, quick_check_seconds)
                if problem is not None:
                    return DatabaseCheck(Observation(DATABASE, Condition.CORRUPT, f"{path}: {problem}"), None)
                verified = stamp
    except sqlite3.DatabaseError as err:
        message = str(err)
        if _CORRUPT.search(message):
            return DatabaseCheck(Observation(DATABASE, Condition.CORRUPT, f"{path}: {message}"), None)
        if _BUSY.search(message):  # a long executor transaction is not a fault of the database
            return DatabaseCheck(Observation(DATABASE, Condition.OK, f"{path}: busy ({message})"), verified)
        return DatabaseCheck(Observation(DATABASE, Condition.UNREACHABLE, f"{path}: {message}"), None)
    if not os.access(path, os.W_OK):
        if not path.exists():  # removed while we looked (a restore): missing, not read-only
            return DatabaseCheck(Observation(DATABASE, Condition.UNREACHABLE, f"{path} does not exist"), None)
        return DatabaseCheck(Observation(DATABASE, Condition.READ_ONLY, f"{path} is not writable"), verified)
    for companion in (path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")):
        # SQLite creates them with the database's mode: one made during a read-only spell stays read-only
        # after it, and every connection then opens the database read-only (found by tests/test_chaos.py)
        if companion.exists() and not os.access(companion, os.W_OK):
            detail = f"{companion} is not writable (SQLite opens the database read-only while it is not)"
            return DatabaseCheck(Observation(DATABASE, Condition.READ_ONLY, detail), verified)
    return DatabaseCheck(Observation(DATABASE, Condition.OK, f"{path}: ok"), verified)


def _quick_check(connection: sqlite3.Connection, seconds: float) -> str | None:
    """The first problem `quick_check` reports; None when it passes or runs out of time (no verdict)."""
    deadline = time.monotonic() + seconds
    connection.set_progress_handler(lambda: int(time.monotonic() > deadline), PROGRESS_HANDLER_OPS)
    try:
        rows = connection.execute("PRAGMA quick_check").fetchall()
    except sqlite3.OperationalError as err:
        if "interrupt" in str(err):
            return None
        raise
    finally:
        connection.set_progress_handler(None, 0)
    return None if rows == [("ok",)] else "; ".join(str(row[0]) for row in rows[:3])


def check_server_database(engine: Engine, name: str) -> Observation:
    """A database server (PostgreSQL): `SELECT 1`, and a standby in recovery counts as read-only."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            read_only = (
                engine.dialect.name == "postgresql"
                and connection.execute(text("SHOW transaction_read_only")).scalar() == "on"
            )
    except exc.DBAPIError as err:
        detail = str(err.orig if err.orig is not None else err).splitlines()[0]
        return Observation(DATABASE, Condition.UNREACHABLE, f"{name}: {detail}")
    if read_only:
        return Observation(DATABASE, Condition.READ_ONLY, f"{name} accepts no writes (transaction_read_only)")
    return Observation(DATABASE, Condition.OK, f"{name}: ok")


def check_archival_storage(root: Path, *, reserve_bytes: int, min_free_percent: float) -> Observation:
    """The archive root exists, takes a file, and has more free space than both thresholds."""
    if not root.is_dir():
        return Observation(STORAGE, Condition.UNAVAILABLE, f"archive root {root} does not exist")
    try:
        fd, probe = tempfile.mkstemp(dir=root, prefix=".health-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        condition = Condition.FULL if err.errno == 28 else Condition.UNAVAILABLE  # ENOSPC
        return Observation(STORAGE, condition, f"archive root {root} is not writable: {err.strerror}")
    fs = os.statvfs(root)
    free = fs.f_bavail * fs.f_frsize
    percent = 100.0 * fs.f_bavail / fs.f_blocks if fs.f_blocks else 0.0
    detail = f"{format_bytes(free)} free ({percent:.1f}%) in {root}"
    if free < reserve_bytes or percent < min_free_percent:
        return Observation(
            STORAGE,
            Condition.FULL,
            f"{detail}; needs {format_bytes(reserve_bytes)} (archive.reserve_bytes) and {min_free_percent}%",
        )
    return Observation(STORAGE, Condition.OK, detail)


def check_heartbeats(
    beats: Iterable[Heartbeat], *, now: datetime, stale_after_seconds: float, alive: Callable[[int], bool]
) -> Observation:
    """The daemon is live when every job's heartbeat is fresh and its process exists."""
    beats = list(beats)
    if not beats:
        return Observation(HEARTBEAT, Condition.STALE, "no daemon heartbeat in this workspace (is the daemon running?)")
    pid = beats[0].pid
    if not alive(pid):
        return Observation(HEARTBEAT, Condition.STALE, f"the daemon (pid {pid}) is not running")
    stale = [f"{b.job} {b.age_seconds(now):.0f} s ago" for b in beats if b.age_seconds(now) > stale_after_seconds]
    if stale:
        return Observation(HEARTBEAT, Condition.STALE, f"pid {pid}: stale heartbeat: {', '.join(stale)}")
    return Observation(HEARTBEAT, Condition.OK, f"pid {pid}: live")


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


class DatabaseChecker:
    """The database check for the configured URL, remembering which file `quick_check` last passed."""

    def __init__(self, sqlite_file: Path | None, server: Engine | None, name: str, *, timeout_seconds: float) -> None:
        self._file = sqlite_file
        self._server = server
        self._name = name
        self._timeout = timeout_seconds
        self._verified: FileStamp | None = None

    def __call__(self, quick_check_seconds: float) -> Observation:
        if self._file is None:
            assert self._server is not None
            return check_server_database(self._server, self._name)
        result = check_sqlite_database(
            self._file, timeout_seconds=self._timeout, quick_check_seconds=quick_check_seconds, verified=self._verified
        )
        self._verified = result.verified
        return result.observation
