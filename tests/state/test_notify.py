"""The LISTEN thread and the probes of a PostgreSQL state database, on the real server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
import pytest
from orchestrator_monitor.state.mapping import built_in
from orchestrator_monitor.state.notify import ChangeListener, NotifyProbe, listener_connector
from orchestrator_monitor.state.probe import Change
from orchestrator_monitor.state.schema import metadata
from orchestrator_monitor.state.triggers import channel_name, install_sql
from orchestrator_monitor.state.watermark import WatermarkProbe, leading_columns, watermark_query
from sqlalchemy import Connection, Engine, create_engine, text

pytestmark = pytest.mark.postgres
ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def schema_of(url: str) -> str:
    return url.rsplit("%3D", 1)[1]


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    engine = create_engine(postgres_url)
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def write(connection: Connection, statement: str) -> None:
    with connection.begin():
        connection.execute(text(statement))


def executor(url: str, statement: str) -> None:
    """A writer's transaction on a connection of its own: its backend publishes its counters as it exits."""
    with psycopg.connect(ADMIN, autocommit=True) as connection:
        connection.execute(f"SET search_path = {schema_of(url)}")
        connection.execute(statement)


def inserted(connection: Connection, table: str) -> int:
    with connection.begin():
        return int(connection.execute(text(f"SELECT pg_stat_get_tuples_inserted('{table}'::regclass)")).scalar_one())


def wait_until(condition, what: str, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.02)  # a server-side effect we cannot be told about: awaited with a deadline


@dataclass
class Listening:
    probe: NotifyProbe
    listener: ChangeListener
    ours: Connection  # the detector's connection: its notifications are its own marks'
    executor: Connection
    wakes: list[float]


@contextmanager
def listening(engine: Engine, url: str) -> Iterator[Listening]:
    """The triggers installed, a probe and its LISTEN thread, and two connections: ours and an executor's."""
    with engine.connect() as setup:
        setup.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            install_sql(built_in("reference"), schema_of(url))
        )
    ours, executor = engine.connect(), engine.connect()
    wakes: list[float] = []
    probe = NotifyProbe(lambda: ours, lambda: wakes.append(time.monotonic()))
    listener = ChangeListener(
        listener_connector(engine), channel_name(schema_of(url)), probe, on_reconnect=lambda: None
    )
    listener.start()
    try:
        probe.reset()
        yield Listening(probe, listener, ours, executor, wakes)
    finally:
        listener.close()
        ours.close()
        executor.close()


def test_a_notification_from_another_connection_wakes_and_confirms_and_our_own_marks_do_not(
    engine: Engine, postgres_url: str
) -> None:
    with listening(engine, postgres_url) as on:
        assert on.probe.check() is Change.NONE  # a quiet database: nothing to look at, and no query made for it
        write(on.ours, "INSERT INTO runs (run_id, status) VALUES ('mine', 'COMPLETED')")  # the monitor's own mark
        write(on.executor, "INSERT INTO runs (run_id, status) VALUES ('theirs', 'RUNNING')")
        wait_until(lambda: on.wakes, "the executor's notification")
        assert len(on.wakes) == 1
        assert on.probe.check() is Change.CHANGED
        assert on.probe.check() is Change.NONE
        on.listener.close()
        assert on.probe.check() is Change.CHANGED  # no listener: every poll counts as a change


def test_the_runs_the_notifications_name_are_gathered_until_the_next_check(engine: Engine, postgres_url: str) -> None:
    with listening(engine, postgres_url) as on:
        probe = on.probe
        write(on.executor, "INSERT INTO runs (run_id, status) VALUES ('r1', 'RUNNING'), ('r2', 'RUNNING')")
        write(on.executor, "INSERT INTO tasks (task_id, run_id, status) VALUES ('r3.a', 'r3', 'RUNNING')")
        wait_until(lambda: len(on.wakes) == 2, "both notifications")
        assert probe.check() is Change.CHANGED and probe.touched() == {"r1", "r2", "r3"}
        write(on.ours, "UPDATE runs SET status = 'COMPLETED' WHERE run_id = 'r1'")  # our own mark: not named
        write(on.executor, "UPDATE tasks SET status = 'SUCCEEDED' WHERE task_id = 'r3.a'")
        wait_until(lambda: len(on.wakes) == 3, "the task's notification")
        assert probe.check() is Change.CHANGED and probe.touched() == {"r3"}
        write(on.executor, "TRUNCATE tasks")  # names no run: any may have changed
        wait_until(lambda: len(on.wakes) == 4, "the truncate's notification")
        assert probe.check() is Change.CHANGED and probe.touched() is None
        probe.note(0, "not json")
        assert probe.check() is Change.CHANGED and probe.touched() is None
        on.listener.close()
        assert probe.check() is Change.CHANGED and probe.touched() is None  # polling: every run


def test_the_watermark_stays_still_on_a_quiet_database_and_moves_with_any_write(
    engine: Engine, postgres_url: str
) -> None:
    with engine.connect() as reader:
        indexed = leading_columns(reader, built_in("reference"))
        reader.rollback()
    assert ("runs", "updated_at") in indexed and ("tasks", "updated_at") in indexed
    query = watermark_query(built_in("reference"), indexed)
    ours = engine.connect()
    probe = WatermarkProbe(lambda: ours, query)
    probe.reset()
    for _ in range(50):
        assert probe.check() is Change.NONE
    executor(postgres_url, "INSERT INTO runs (run_id, status, updated_at) VALUES ('r', 'RUNNING', '2026-12-01T00:00Z')")
    assert probe.check() is Change.CHANGED  # a stamped row: seen at its commit
    wait_until(lambda: inserted(ours, "runs") == 1, "the runs counters published")
    probe.check()
    assert probe.check() is Change.NONE
    executor(postgres_url, "INSERT INTO tasks (task_id, run_id, status) VALUES ('r.a', 'r', 'RUNNING')")  # unstamped
    wait_until(lambda: probe.check() is Change.CHANGED, "an unstamped write seen by the write counters")
    assert probe.reads > 50
    ours.close()
