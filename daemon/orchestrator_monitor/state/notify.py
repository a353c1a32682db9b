"""LISTEN for the change-notification triggers (`state/triggers.py`) on a connection of its own.

A thread holds one autocommit psycopg connection (named `orchestrator-monitor listener <pid>`
in `pg_stat_activity`) LISTENing on the schema's channel and hands every notification to the
probe, which wakes the detection loop. The connection can drop (a restarted server, a
terminated backend, a network cut that TCP keepalives find): the thread reconnects with a
doubling pause, logs one line when notifications are lost and one when they are back, and then
asks for a full reconciliation, since whatever was committed in between was never announced.
While it is down, the probe counts every poll as a change (the way `PollingProbe` does).

Notifications sent by the detector's own connection (its marks fire the triggers too) are
dropped by backend pid, as `PRAGMA data_version` ignores the monitor's own commits on SQLite.
The run ids a notification carries are gathered until the next check, and the cheap pass reads
only those runs (`NotifyProbe.touched`): a single run's commit no longer costs a look at every
open run. A notification without ids (`"*"`: too many for one payload, or a TRUNCATE), one that
cannot be read, too many ids gathered, or the listener being down, all mean "look at every run".
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, Engine

from .probe import Change

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger(__name__)

APPLICATION_NAME = "orchestrator-monitor listener"
FIRST_PAUSE_SECONDS = 0.1  # the first reconnection is tried at once, then after this, doubling
MAX_PAUSE_SECONDS = 10.0
WAIT_SECONDS = 0.5  # how long one wait for notifications lasts: a stop is seen within this
CONNECT_TIMEOUT_SECONDS = 5
TOUCHED_LIMIT = 10_000  # run ids gathered between two checks beyond this: every run is looked at instead
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}


def listener_connector(engine: Engine) -> Callable[[], psycopg.Connection[Any]]:
    """Connects the way the engine does (host, user, password, search path...), to a connection of our own."""
    _, params = engine.dialect.create_connect_args(engine.url)
    params.pop("context", None)  # SQLAlchemy's adapters: the listener reads only text payloads
    params.update(KEEPALIVE, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS)
    params["application_name"] = f"{APPLICATION_NAME} {os.getpid()}"  # which daemon, for a DBA

    def connect() -> psycopg.Connection[Any]:
        import psycopg

        return psycopg.connect(**params)

    return connect


class NotifyProbe:
    """Has the database changed? Yes when another connection's notification came since the last check.

    `note` is called on the listener's thread, `check` and `reset` on the detection loop's.
    """

    def __init__(self, connection: Callable[[], Connection], wake: Callable[[], None]) -> None:
        self._connection = connection
        self._wake = wake
        self._lock = threading.Lock()
        self._received = 0
        self._seen = 0
        self._own_pid: int | None = None
        self._gathered: set[str] | None = set()  # run ids named since the last check; None: every run
        self._touched: frozenset[str] | None = None  # what the last check saw
        self.listening = False  # False while the listener is disconnected: every poll is a change

    def note(self, pid: int, payload: str = "") -> None:
        """A notification arrived from backend `pid`, naming the runs in `payload` (a JSON array)."""
        if pid == self._own_pid:
            return
        run_ids = _run_ids(payload)
        with self._lock:
            self._received += 1
            if self._gathered is not None and run_ids is not None and len(self._gathered) < TOUCHED_LIMIT:
                self._gathered.update(run_ids)
            else:
                self._gathered = None
        self._wake()

    def touched(self) -> frozenset[str] | None:
        """The runs the notifications taken by the last `check` named; None: any run may have changed."""
        return self._touched

    def _remember_own_pid(self) -> None:
        dbapi = self._connection().connection.dbapi_connection
        self._own_pid = getattr(getattr(dbapi, "info", None), "backend_pid", None)

    def reset(self) -> None:
        self._remember_own_pid()
        with self._lock:
            self._seen = self._received
            self._gathered = set()

    def check(self) -> Change:
        self._remember_own_pid()  # a reconnected detector connection has a new backend
        with self._lock:
            fresh, self._seen = self._received != self._seen, self._received
            gathered, self._gathered = self._gathered, set()
        listening = self.listening
        self._touched = frozenset(gathered) if gathered is not None and listening else None
        return Change.CHANGED if fresh or not listening else Change.NONE


def _run_ids(payload: str) -> list[str] | None:
    """The run ids of a trigger's payload; None when it names none (`"*"`) or cannot be read."""
    try:
        run_ids = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(run_ids, list) or not all(isinstance(run_id, str) for run_id in run_ids):
        return None
    return run_ids


class ChangeListener:
    """The LISTEN thread; see the module docstring. `start` connects once before returning."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        channel: str,
        probe: NotifyProbe,
        on_reconnect: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self._channel = channel
        self._probe = probe
        self._on_reconnect = on_reconnect
        self._clock = clock
        self._stop = threading.Event()
        self._connection: psycopg.Connection[Any] | None = None
        self._lost_at: float | None = None
        self._thread = threading.Thread(target=self._run, name="listener", daemon=True)

    def start(self) -> None:
        """Connect and LISTEN now (so nothing committed after the start-up reconciliation is missed), then follow."""
        self._listen()
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._probe.listening = False
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._disconnect()

    def _listen(self) -> bool:
        import psycopg
        from psycopg import sql

        try:
            connection = self._connect()
            connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        except psycopg.Error as err:
            self._lost(err)
            return False
        self._connection = connection
        self._probe.listening = True
        if self._lost_at is not None:
            logger.warning(
                "change notifications are back after %.1f s; reconciling every run", self._clock() - self._lost_at
            )
            self._lost_at = None
            self._on_reconnect()
        return True

    def _lost(self, err: Exception) -> None:
        self._probe.listening = False
        self._disconnect()
        if self._lost_at is None:  # one line per outage, not per attempt
            self._lost_at = self._clock()
            detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            logger.warning("change notifications lost (%s): polling until the listener reconnects", detail)

    def _disconnect(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None

    def _run(self) -> None:
        import psycopg

        pause = 0.0
        while not self._stop.is_set():
            connection = self._connection
            if connection is None:
                if self._stop.wait(pause):
                    return
                pause = 0.0 if self._listen() else min(max(2 * pause, FIRST_PAUSE_SECONDS), MAX_PAUSE_SECONDS)
                continue
            try:
                for notice in connection.notifies(timeout=WAIT_SECONDS):
                    self._probe.note(notice.pid, notice.payload)
            except psycopg.Error as err:
                self._lost(err)
