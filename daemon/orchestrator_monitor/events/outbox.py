"""What the monitor tells other systems (alerts, OpenLineage), kept in a table until delivered: it survives kill -9.

A row is written before anyone is told, marked delivered only after its destination took it,
and retried meanwhile on a thread of its own (never the bus's or the detector's) with
exponential backoff: `retry_seconds`, doubled per attempt up to `max_retry_seconds`. After
`max_attempts` it is given up (`gave_up`: counted, logged, shown by `health`) until the next
start, which tries every undelivered row again. Delivery is therefore at least once: a kill
between a destination's answer and the mark sends that one row again.

`(key, destination)` is unique: adding a row again is ignored, which is the de-duplication;
a delivered row is forgotten once its `keep_until` passed. Not `power_safe`, a commit costs no
fsync and survives kill -9, not a power loss. With `in_order_of` (a payload
column, e.g. the run id) a row is not sent while an earlier row with the same value waits,
given up or not: a run's START goes out before its COMPLETE, also across retries and restarts.

Each user (alerts, lineage) has its table in `.monitor/monitor.db` (plain `sqlite3`, self-contained
on purpose: the ledger's tables may move) with its own payload columns, and its own `send`.
"""

from __future__ import annotations

import enum
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

logger = logging.getLogger(__name__)

DUE_BATCH = 100  # rows taken per look at the outbox
FORGET_EVERY_SECONDS = 3600.0  # delivered rows past their `keep_until` are removed this often
NO_COUNTS = {"pending": 0, "undeliverable": 0}


class RetryPolicy(Protocol):
    """The settings' retry keys (`AlertsSettings`, `OpenLineageSettings`)."""

    @property
    def max_attempts(self) -> int: ...

    @property
    def retry_seconds(self) -> float: ...

    @property
    def max_retry_seconds(self) -> float: ...


def retry_delay(policy: RetryPolicy, attempts: int) -> float | None:
    """Seconds until the next attempt after `attempts` failed ones; None: give up (until the next start)."""
    if attempts >= policy.max_attempts:
        return None
    return float(min(policy.retry_seconds * 2 ** (attempts - 1), policy.max_retry_seconds))


@dataclass(frozen=True)
class Pending:
    """A row to send: its payload columns by name."""

    id: int
    key: str
    destination: str
    attempts: int
    payload: Mapping[str, str]


class Outbox:
    """One table, behind one lock (a sink's thread adds, the delivery thread takes and marks)."""

    def __init__(
        self,
        path: Path,
        *,
        table: str,
        payload: tuple[str, ...],
        in_order_of: str | None = None,
        power_safe: bool = True,
        busy_timeout_seconds: float,
    ) -> None:
        assert in_order_of is None or in_order_of in payload
        self.table = table
        self._payload = payload
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(
            path, timeout=busy_timeout_seconds, isolation_level=None, check_same_thread=False
        )
        self._connection.execute("PRAGMA journal_mode=WAL")
        # FULL: a row recorded survives power loss (an fsync per commit); NORMAL: it survives kill -9, and a
        # power loss may take the last commits back (the WAL is synced at checkpoints only)
        self._connection.execute(f"PRAGMA synchronous={'FULL' if power_safe else 'NORMAL'}")
        columns = "".join(f"{name} TEXT NOT NULL, " for name in payload)
        self._connection.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, key TEXT NOT NULL, {columns}"
            "destination TEXT NOT NULL, created_at REAL NOT NULL, due_at REAL NOT NULL, keep_until REAL NOT NULL, "
            "attempts INTEGER NOT NULL DEFAULT 0, delivered_at REAL, gave_up INTEGER NOT NULL DEFAULT 0, "
            "UNIQUE (key, destination))"
        )
        self._connection.execute(
            f"CREATE INDEX IF NOT EXISTS {table}_due ON {table} (due_at) WHERE delivered_at IS NULL"
        )
        ready = "delivered_at IS NULL AND gave_up = 0 AND due_at <= ?"
        if in_order_of is not None:
            self._connection.execute(
                f"CREATE INDEX IF NOT EXISTS {table}_order ON {table} ({in_order_of}, id) WHERE delivered_at IS NULL"
            )
            ready += (
                f" AND NOT EXISTS (SELECT 1 FROM {table} AS earlier WHERE earlier.{in_order_of} = {table}.{in_order_of}"
                f" AND earlier.id < {table}.id AND earlier.delivered_at IS NULL)"
            )
        self._due = (
            f"SELECT id, key, destination, attempts, {', '.join(payload)} FROM {table} WHERE {ready} "
            "ORDER BY due_at, id LIMIT ?"
        )
        self._next_due = f"SELECT min(due_at) FROM {table} WHERE {ready.replace('due_at <= ?', '1')}"
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def retry_given_up(self) -> int:
        """At start: rows given up by an earlier process are tried again; returns how many."""
        with self._lock:
            cursor = self._connection.execute(
                f"UPDATE {self.table} SET gave_up = 0, attempts = 0 WHERE gave_up = 1 AND delivered_at IS NULL"
            )
            return cursor.rowcount

    def known(self, key: str) -> bool:
        """Was a row with this key recorded (and not yet forgotten)?"""
        with self._lock:
            return (
                self._connection.execute(f"SELECT 1 FROM {self.table} WHERE key = ? LIMIT 1", (key,)).fetchone()
                is not None
            )

    def add(
        self,
        key: str,
        destinations: Iterable[str],
        payload: Mapping[str, str],
        *,
        due: float,
        keep_seconds: float,
        replace: bool = False,
    ) -> int:
        """A row per destination, due at `due`; one already there is left alone, or (`replace`) given this
        payload while it waits. Returns how many rows were added or replaced."""
        names = ", ".join(self._payload)
        values = [payload[name] for name in self._payload]
        on_conflict = (
            f"ON CONFLICT (key, destination) DO UPDATE SET {', '.join(f'{n} = excluded.{n}' for n in self._payload)} "
            "WHERE delivered_at IS NULL"
            if replace
            else "ON CONFLICT DO NOTHING"
        )
        rows = [(key, *values, d, due, due, due + keep_seconds) for d in destinations]
        with self._lock:
            before = self._connection.total_changes
            self._connection.executemany(
                f"INSERT INTO {self.table} (key, {names}, destination, created_at, due_at, keep_until) "
                f"VALUES (?, {'?, ' * len(values)}?, ?, ?, ?) {on_conflict}",
                rows,
            )
            return self._connection.total_changes - before

    def due(self, now: float, limit: int) -> list[Pending]:
        with self._lock:
            rows = self._connection.execute(self._due, (now, limit)).fetchall()
        payload = self._payload
        return [
            Pending(id, key, dest, tries, dict(zip(payload, rest, strict=True))) for id, key, dest, tries, *rest in rows
        ]

    def next_due(self) -> float | None:
        with self._lock:
            row = self._connection.execute(self._next_due).fetchone()
        return None if row[0] is None else float(row[0])

    def delivered(self, row_id: int, now: float) -> None:
        with self._lock:
            self._connection.execute(f"UPDATE {self.table} SET delivered_at = ? WHERE id = ?", (now, row_id))

    def failed(self, row_id: int, *, retry_at: float | None) -> None:
        """One more failed attempt; `retry_at` None gives the row up until the next start."""
        with self._lock:
            self._connection.execute(
                f"UPDATE {self.table} SET attempts = attempts + 1, due_at = coalesce(?, due_at), gave_up = ? "
                "WHERE id = ?",
                (retry_at, 1 if retry_at is None else 0, row_id),
            )

    def drop(self, row_id: int) -> None:
        """A row that can no longer be sent (its destination is no longer configured)."""
        with self._lock:
            self._connection.execute(f"DELETE FROM {self.table} WHERE id = ?", (row_id,))

    def forget_delivered(self, now: float) -> None:
        with self._lock:
            self._connection.execute(
                f"DELETE FROM {self.table} WHERE delivered_at IS NOT NULL AND keep_until < ?", (now,)
            )

    def counts(self) -> dict[str, int]:
        """`pending` (to deliver, given up included) and `undeliverable` (given up until the next start)."""
        with self._lock:
            pending, given_up = self._connection.execute(_counts(self.table)).fetchone()
        return {"pending": int(pending), "undeliverable": int(given_up)}


def _counts(table: str) -> str:
    return f"SELECT count(*), coalesce(sum(gave_up), 0) FROM {table} WHERE delivered_at IS NULL"


def read_counts(path: Path, table: str, *, busy_timeout_seconds: float) -> dict[str, int]:
    """An outbox's counts for `orchestrator health`, read-only; zeros when there is none."""
    if not path.exists():
        return dict(NO_COUNTS)
    connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=busy_timeout_seconds)
    try:
        pending, given_up = connection.execute(_counts(table)).fetchone()
    except sqlite3.OperationalError:  # no such table: never configured here
        return dict(NO_COUNTS)
    finally:
        connection.close()
    return {"pending": int(pending), "undeliverable": int(given_up)}


class Attempt(enum.Enum):
    """What one attempt to send a row came to."""

    SENT = "sent"
    FAILED = "failed"  # retried with backoff
    HOPELESS = "hopeless"  # given up now (an unusable destination), tried again at the next start
    DROPPED = "dropped"  # the row is removed: it can no longer be sent


class OutboxDelivery:
    """Takes due rows from the outbox and `send`s them until stopped, on a thread of its own; `wake` when a
    row was added. A subclass says how a row is sent (`send`) and named in the log (`describe`)."""

    def __init__(
        self, outbox: Outbox, policy: RetryPolicy, *, name: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._outbox = outbox
        self._clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._forgotten_at = 0.0
        self._name = name
        self.policy = policy
        self.sent = 0
        self.failures = 0  # failed attempts
        self.undeliverable = 0  # rows given up by this process
        self.last_error: str | None = None  # why the last attempt failed; None when it succeeded
        self._thread = threading.Thread(target=self._run, name=f"{name}-delivery", daemon=True)

    def send(self, row: Pending) -> Attempt:
        raise NotImplementedError

    def describe(self, row: Pending) -> str:
        """The row in a log line: never a URL that may hold credentials."""
        raise NotImplementedError

    def start(self) -> None:
        retried = self._outbox.retry_given_up()
        if retried:
            logger.info("%d %s rows not delivered before are tried again", retried, self._name)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def close(self, timeout: float) -> None:
        """Stop after the attempt under way; what is pending stays in the outbox for the next start."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error("%s delivery did not stop within %.0f s", self._name, timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_delivery_iteration(self._clock())
                next_due = self._outbox.next_due()
            except Exception:
                logger.exception("%s delivery pass failed; trying again", self._name)
                next_due = None
            # Nothing due: sleep until a row is added (one due later, like a summary, has its time).
            wait = None if next_due is None else next_due - self._clock()
            if wait is None or wait > 0:
                self._wake.wait(wait)
            self._wake.clear()

    def run_delivery_iteration(self, now: float) -> None:
        """Send every row due at `now` (a batch at a time), marking each as it goes."""
        if now - self._forgotten_at >= FORGET_EVERY_SECONDS:
            self._outbox.forget_delivered(now)
            self._forgotten_at = now
        while not self._stop.is_set():
            rows = self._outbox.due(now, DUE_BATCH)
            for row in rows:
                if self._stop.is_set():
                    return
                self._deliver(row)
            if len(rows) < DUE_BATCH:
                return

    def _deliver(self, row: Pending) -> None:
        try:
            attempt, reason = self.send(row), "not taken"
        except Exception as err:  # an endpoint down, or a plug-in's bug; its message may quote a URL: not shown
            attempt, reason = Attempt.FAILED, type(err).__name__
        if attempt is Attempt.DROPPED:
            self._outbox.drop(row.id)
            return
        if attempt is Attempt.SENT:
            self._outbox.delivered(row.id, self._clock())
            self.sent += 1
            self.last_error = None
            return
        self.failures += 1
        self.last_error = reason
        attempts = row.attempts + 1
        delay = None if attempt is Attempt.HOPELESS else retry_delay(self.policy, attempts)
        if delay is None:
            self._outbox.failed(row.id, retry_at=None)
            self.undeliverable += 1
            logger.error(
                "%s is undeliverable after %d attempts (%s); it is tried again at the next start",
                self.describe(row),
                attempts,
                reason,
            )
            return
        self._outbox.failed(row.id, retry_at=self._clock() + delay)
        logger.warning(
            "%s failed (%s, attempt %d of %d); retrying in %g s",
            self.describe(row),
            reason,
            attempts,
            self.policy.max_attempts,
            delay,
        )
