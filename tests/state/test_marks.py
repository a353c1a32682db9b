"""The completion mark as a compare-and-set against an executor writing at the same moment (PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from orchestrator_monitor.state.marks import MarkResult, mark_runs
from orchestrator_monitor.state.records import RunSnapshot
from orchestrator_monitor.state.schema import metadata
from orchestrator_monitor.state.snapshots import fetch_snapshots
from sqlalchemy import Connection, Engine, create_engine, text
from support import reference_tables

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
WAIT_SECONDS = 30.0


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    engine = create_engine(postgres_url)
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO runs (run_id, status) VALUES ('r', 'RUNNING')"))
        connection.execute(text("INSERT INTO tasks (task_id, run_id, status) VALUES ('r.t', 'r', 'SUCCEEDED')"))
    yield engine
    engine.dispose()


def seen(engine: Engine) -> RunSnapshot:
    """What the detector read before deciding to mark: every task terminal."""
    with engine.begin() as connection:
        return fetch_snapshots(connection, reference_tables(), {"r": "RUNNING"})["r"]


def run_status(engine: Engine) -> str:
    with engine.connect() as connection:
        return str(connection.execute(text("SELECT status FROM runs WHERE run_id = 'r'")).scalar_one())


def reopen_uncommitted(executor: Connection) -> None:
    """An executor's retry moves the task back to RUNNING in a transaction it has not committed yet."""
    executor.begin()
    executor.execute(text("UPDATE tasks SET status = 'RUNNING', attempts = 2 WHERE task_id = 'r.t'"))


def mark_is_waiting(engine: Engine) -> bool:
    with engine.connect() as connection:
        query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%FOR SHARE%'"
        return bool(connection.execute(text(query)).scalar_one())


def test_a_task_reopened_by_a_transaction_in_flight_keeps_the_run_open(engine: Engine) -> None:
    snapshot = seen(engine)
    outcome: list[MarkResult] = []
    with engine.connect() as executor:
        reopen_uncommitted(executor)

        def mark() -> None:
            with engine.connect() as connection:
                outcome.append(
                    mark_runs(connection, reference_tables(), [(snapshot, "COMPLETED")], NOW)[snapshot.run_id]
                )

        marker = threading.Thread(target=mark)
        marker.start()
        pause = threading.Event()
        for _ in range(int(WAIT_SECONDS / 0.02)):  # the server is the only one that knows: ask it
            if not marker.is_alive() or mark_is_waiting(engine):
                break
            pause.wait(0.02)
        executor.commit()
        marker.join(WAIT_SECONDS)
    assert outcome == [MarkResult(marked=False)]  # it waited for the retry, saw it and left the run open
    assert run_status(engine) == "RUNNING"


def test_an_executor_holding_the_runs_rows_defers_the_mark_and_changes_nothing(engine: Engine) -> None:
    snapshot = seen(engine)
    with engine.connect() as executor:
        reopen_uncommitted(executor)
        with engine.connect() as connection:  # gives up after MARK_LOCK_STATEMENT_MS: retried later
            deferred = mark_runs(connection, reference_tables(), [(snapshot, "COMPLETED")], NOW)[snapshot.run_id]
        assert deferred == MarkResult(marked=False, deferred=True)
        executor.rollback()
    assert run_status(engine) == "RUNNING"
    with engine.connect() as connection:
        again = mark_runs(connection, reference_tables(), [(snapshot, "COMPLETED")], NOW)
        assert again[snapshot.run_id].marked  # unchanged after all: the retry marks it
    assert run_status(engine) == "COMPLETED"
