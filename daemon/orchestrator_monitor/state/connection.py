"""The detector's own connection to the state database.

One connection for the daemon's life: its `PRAGMA data_version` is what tells other
processes' commits from the monitor's own marks (made on this same connection), and it is
replaced as a whole when the database file is replaced under the daemon.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine


class StateConnection:
    """The detector's one connection (its `data_version` is what tells others' commits from ours)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection = engine.connect()

    def __call__(self) -> Connection:
        return self._connection

    def reopen(self) -> None:
        """After the database file was replaced: a new connection (and file descriptor) on the new file."""
        self._connection.invalidate()
        self._connection.close()
        self._engine.dispose()
        self._connection = self._engine.connect()

    def close(self) -> None:
        self._connection.close()
