"""Has the state database changed? Cheap enough to ask twice a second for months.

On SQLite, `PRAGMA data_version` on the detector's own connection changes exactly when
another connection committed, so the monitor's own marks (made on that same connection)
never wake a scan of their own. The file's identity (device, inode) tells a database that
was replaced or deleted under the watcher. Other backends cannot say: every poll counts
as a change and the detector's passes, which read little, run at the poll interval.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from pathlib import Path

from sqlalchemy import Connection

from .engine import file_identity


class Change(Enum):
    NONE = "none"
    CHANGED = "changed"
    REPLACED = "replaced"  # a different file now has the database's name: reopen
    MISSING = "missing"


class SqliteProbe:
    def __init__(self, path: Path, connection: Callable[[], Connection]) -> None:
        self._path = path
        self._connection = connection
        self._identity: tuple[int, int] | None = None
        self._version: int | None = None
        self.reset()

    def reset(self) -> None:
        """Take the current file and version as the baseline (after opening or reopening)."""
        self._identity = file_identity(self._path)
        self._version = self._data_version()

    def _data_version(self) -> int:
        dbapi = self._connection().connection.dbapi_connection
        assert dbapi is not None
        return int(dbapi.execute("PRAGMA data_version").fetchone()[0])

    def touched(self) -> frozenset[str] | None:
        """Which runs changed is not known here: any of them may have."""
        return None

    def check(self) -> Change:
        identity = file_identity(self._path)
        if identity is None:
            return Change.MISSING
        if identity != self._identity:
            return Change.REPLACED
        version = self._data_version()
        if version == self._version:
            return Change.NONE
        self._version = version
        return Change.CHANGED


class PollingProbe:
    """For databases that are not a local file: every poll is worth a (cheap) look."""

    def reset(self) -> None:
        return None

    def touched(self) -> frozenset[str] | None:
        return None

    def check(self) -> Change:
        return Change.CHANGED
