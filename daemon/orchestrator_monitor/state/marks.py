"""The monitor's only write to the executor's runs: the completion mark, as a compare-and-set.

One short `BEGIN IMMEDIATE` transaction re-reads the run and its tasks and applies the mark
only if they are still exactly as the decision saw them, so a retry that moves a task
back to RUNNING just before the mark simply keeps the run open.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, update

from ..completion import RunSnapshot
from ..timefmt import format_timestamp, parse_timestamp
from .schema import runs
from .snapshots import fetch_snapshots, fetch_statuses, fetch_task_finish_times


@dataclass(frozen=True, slots=True)
class MarkResult:
    marked: bool
    finished_at: str | None = None
    unreadable_times: int = 0


@contextmanager
def write_transaction(connection: Connection) -> Iterator[None]:
    """`BEGIN IMMEDIATE` on SQLite (take the write lock first, so the re-read is what we update)."""
    connection.execution_options(sqlite_begin="IMMEDIATE")
    try:
        with connection.begin():
            yield
    finally:
        connection.execution_options(sqlite_begin="")


def mark_run(connection: Connection, seen: RunSnapshot, status: str, now: datetime) -> MarkResult:
    """Set the run terminal if it is unchanged since `seen`; `finished_at` = latest task finish."""
    with write_transaction(connection):
        current = fetch_statuses(connection, [seen.run_id]).get(seen.run_id)
        if current != seen.status:
            return MarkResult(marked=False)
        if fetch_snapshots(connection, {seen.run_id: current})[seen.run_id].fingerprint != seen.fingerprint:
            return MarkResult(marked=False)
        finished, unreadable = latest_time(fetch_task_finish_times(connection, seen.run_id))
        finished_at = format_timestamp(finished or now)
        connection.execute(
            update(runs)
            .where(runs.c.run_id == seen.run_id, runs.c.status == seen.status)
            .values(status=status, finished_at=finished_at, updated_at=format_timestamp(now))
        )
    return MarkResult(marked=True, finished_at=finished_at, unreadable_times=unreadable)


def latest_time(values: list[object]) -> tuple[datetime | None, int]:
    """The latest readable time and how many non-NULL values could not be read."""
    latest: datetime | None = None
    unreadable = 0
    for value in values:
        if value is None:
            continue
        moment = parse_timestamp(value)
        if moment is None:
            unreadable += 1
        elif latest is None or moment > latest:
            latest = moment
    return latest, unreadable
