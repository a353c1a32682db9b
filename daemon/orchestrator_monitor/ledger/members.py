"""The daemons sharing one PostgreSQL: who is here, who is alive, and one process per daemon id.

Each daemon holds a session advisory lock on its id for its whole life (a second process with
the same id is refused; the lock goes with the connection, so a killed daemon frees it at once)
and rewrites its row's `beat_at` with the server's clock at every heartbeat. A daemon whose beat
is older than `cluster.lease_seconds` has lost its runs: the others take them over (`Ledger.take_over`).
The lock goes with its session when the server restarts, too: every beat checks that session and
takes the lock again on a new one, or, if another process took the id meanwhile, the daemon steps
down (`IdTaken`) rather than go on as a twin.
The server's clock, not the hosts', decides, so hosts whose clocks disagree still agree on who is alive.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, exc, select, text, update

from ..errors import Unavailable
from ..timefmt import format_timestamp, utc_now
from .store import MonitorStore, monitor_daemons

logger = logging.getLogger(__name__)
_LOCK_SPACE = 0x6F6D  # advisory locks are (int, int): ours are (this, a hash of the schema and daemon id)


class IdTaken(Unavailable):
    """Another process holds this daemon's id: this one must step down, not go on as a twin."""


@dataclass(frozen=True, slots=True)
class Member:
    daemon_id: str
    host: str
    pid: int
    beat_age_s: float
    live: bool


class Membership:
    """This daemon's place among the others on a shared database."""

    def __init__(self, store: MonitorStore, *, version: str, lease_seconds: float) -> None:
        self._store = store
        self._lease = lease_seconds
        self._version = version
        self._lock_connection: Connection | None = None

    def join(self) -> None:
        """Take the daemon id (refused while another live process holds it) and say this daemon is here."""
        me = self._store.daemon_id
        if not self._take_lock():
            raise Unavailable(f"daemon id {me!r} is in use by another running daemon (set cluster.daemon_id)")
        now = format_timestamp(utc_now())
        row = {
            "daemon_id": me,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "version": self._version,
            "lease_seconds": self._lease,
        }
        insert = self._store.insert(monitor_daemons)
        with self._store.write() as write:
            write.execute(
                insert.values(**row, started_at=now, beat_at=_server_now(), stopped=0).on_conflict_do_update(
                    index_elements=["daemon_id"],
                    set_={**row, "started_at": now, "beat_at": insert.excluded.beat_at, "stopped": 0},
                )
            )

    def _take_lock(self) -> bool:
        """The id's session lock, on a connection kept for it; False when another process holds it."""
        connection = self._store.engine.connect()
        try:
            held = connection.execute(  # per schema: deployments in two schemas of one database never collide
                text("SELECT pg_try_advisory_lock(:space, hashtext(current_schema() || '/' || :id))"),
                {"space": _LOCK_SPACE, "id": self._store.daemon_id},
            ).scalar()
            connection.commit()
        except BaseException:
            connection.close()
            raise
        if not held:
            connection.close()
            return False
        self._lock_connection = connection
        return True

    def _keep_lock(self) -> None:
        """The lock went with its connection if the server restarted or ended that session: take it again.
        Raises `IdTaken` when another process took the id meanwhile; a database still away raises as it is."""
        connection = self._lock_connection
        if connection is not None:
            try:
                connection.execute(text("SELECT 1"))
                connection.commit()
                return
            except exc.DBAPIError:
                connection.close()
                self._lock_connection = None
        if not self._take_lock():
            raise IdTaken(
                f"daemon id {self._store.daemon_id!r} was taken by another process while this one was cut off"
            )
        logger.warning("daemon id %r held again after its database session was lost", self._store.daemon_id)

    def beat(self) -> None:
        """This daemon is alive: its lease runs `lease_seconds` from now (the server's clock), while it still
        holds its id (see `_keep_lock`)."""
        self._keep_lock()
        with self._store.write() as connection:
            connection.execute(
                update(monitor_daemons)
                .where(monitor_daemons.c.daemon_id == self._store.daemon_id)
                .values(beat_at=_server_now(), stopped=0)
            )

    def live(self) -> list[str]:
        """The daemons whose lease runs, this one included."""
        return [m.daemon_id for m in self.members() if m.live]

    def members(self) -> list[Member]:
        """Every daemon that ever joined, with how long ago it beat (by the server's clock)."""
        return read_members(self._store)

    def leave(self) -> None:
        """A clean stop: the others need not wait for the lease to take this daemon's runs (unless the id
        is no longer this daemon's to say so)."""
        if self._lock_connection is None:
            return
        try:
            with self._store.write() as connection:
                connection.execute(
                    update(monitor_daemons)
                    .where(monitor_daemons.c.daemon_id == self._store.daemon_id)
                    .values(stopped=1)
                )
        finally:
            if self._lock_connection is not None:
                self._lock_connection.close()
                self._lock_connection = None


def read_members(store: MonitorStore) -> list[Member]:
    """The daemons of a shared database and whether each is alive (its beat younger than its own lease);
    empty on SQLite (one daemon, no table rows)."""
    if not store.shared:
        return []
    t = monitor_daemons
    # a timestamp without time zone ignores the text's Z: both sides are UTC
    age = text("EXTRACT(EPOCH FROM (now() AT TIME ZONE 'UTC') - CAST(monitor_daemons.beat_at AS timestamp))")
    with store.engine.connect() as connection:
        query = select(t.c.daemon_id, t.c.host, t.c.pid, t.c.stopped, t.c.lease_seconds, age).order_by(t.c.daemon_id)
        return [
            Member(daemon_id, host, int(pid), round(max(0.0, float(seconds)), 3), not stopped and seconds < lease)
            for daemon_id, host, pid, stopped, lease, seconds in connection.execute(query)
        ]


def _server_now() -> Any:
    return text("to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
