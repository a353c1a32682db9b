"""Change detection on PostgreSQL, end to end: a daemon process, the real server, an executor's commits.

`completion.poll_seconds=30` in the NOTIFY tests: only a notification (or a reconciliation it
asks for) can make the daemon look within the 20 s a test waits.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text
from support import EventLog, run_process

pytestmark = pytest.mark.postgres
ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
LISTENER = "orchestrator-monitor listener"


def init(workspace: Path, url: str, *flags: str) -> None:
    result = run_process("init", "--workspace", str(workspace), "--set", f"database.url={url}", *flags)
    assert result.code == 0, result.err


def execute(url: str, *statements: str) -> None:
    """One transaction of the executor's."""
    engine = create_engine(url)
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
    engine.dispose()


def start_monitoring(workspace: Path, url: str, start_daemon, *settings: str):  # type: ignore[no-untyped-def]
    """A daemon whose start-up reconciliation is over: it marked the run `seed` left done before it started."""
    execute(
        url,
        "INSERT INTO runs (run_id, status) VALUES ('seed', 'RUNNING')",
        "INSERT INTO tasks (task_id, run_id, status) VALUES ('seed.a', 'seed', 'SUCCEEDED')",
    )
    daemon = start_daemon(workspace, f"database.url={url}", "completion.reconcile_seconds=600", *settings)
    daemon.log.wait_for(lambda log: log.events("RUN_COMPLETED", "seed"), what="the start-up reconciliation")
    return daemon


def started_mode(log: EventLog) -> str:
    return str(log.events("MONITOR_STARTED")[-1]["data"]["change_detection"])


def log_lines(log: EventLog, words: str) -> list[str]:
    return [str(e["message"]) for e in log.read() if e["type"] == "log" and words in str(e["message"])]


def listener_backends(pid: int) -> list[int]:
    with psycopg.connect(ADMIN) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (f"{LISTENER} {pid}",)
        ).fetchall()
    return [int(row[0]) for row in rows]


def test_with_triggers_a_finished_run_is_marked_on_its_notification(
    tmp_path: Path, postgres_url: str, start_daemon
) -> None:
    init(tmp_path, postgres_url, "--triggers")
    daemon = start_monitoring(tmp_path, postgres_url, start_daemon, "completion.poll_seconds=30")
    assert started_mode(daemon.log) == "notify"
    execute(
        postgres_url,
        "INSERT INTO runs (run_id, status) VALUES ('n1', 'RUNNING')",
        "INSERT INTO tasks (task_id, run_id, status) VALUES ('n1.a', 'n1', 'RUNNING')",
    )
    daemon.log.wait_for(lambda log: log.events("RUN_STATUS_CHANGED", "n1"), what="the new run seen")
    execute(postgres_url, "UPDATE tasks SET status = 'SUCCEEDED' WHERE task_id = 'n1.a'")
    daemon.log.wait_for(lambda log: log.events("RUN_COMPLETED", "n1"), what="n1 marked on the notification")
    assert daemon.stop()[0] == 0


def test_without_triggers_the_watermark_poll_finds_a_finished_run(
    tmp_path: Path, postgres_url: str, start_daemon
) -> None:
    init(tmp_path, postgres_url)
    daemon = start_monitoring(tmp_path, postgres_url, start_daemon, "completion.poll_seconds=0.1")
    assert started_mode(daemon.log) == "watermark"
    assert log_lines(daemon.log, "a watermark poll")
    execute(
        postgres_url,
        "INSERT INTO runs (run_id, status, updated_at) VALUES ('w1', 'RUNNING', '2026-12-01T00:00:00Z')",
        "INSERT INTO tasks (task_id, run_id, status) VALUES ('w1.a', 'w1', 'RUNNING')",
    )
    daemon.log.wait_for(lambda log: log.events("RUN_STATUS_CHANGED", "w1"), what="the new run seen")
    # No updated_at written: the table's write counters move the watermark.
    execute(postgres_url, "UPDATE tasks SET status = 'SUCCEEDED' WHERE task_id = 'w1.a'")
    daemon.log.wait_for(lambda log: log.events("RUN_COMPLETED", "w1"), what="w1 marked by the watermark poll")
    assert daemon.stop()[0] == 0


@pytest.mark.slow
def test_the_listener_reconnects_and_a_run_finished_during_the_outage_is_marked(
    tmp_path: Path, postgres_url: str, start_daemon
) -> None:
    init(tmp_path, postgres_url, "--triggers")
    daemon = start_monitoring(tmp_path, postgres_url, start_daemon, "completion.poll_seconds=30")
    execute(
        postgres_url,
        "INSERT INTO runs (run_id, status) VALUES ('o1', 'RUNNING')",
        "INSERT INTO tasks (task_id, run_id, status) VALUES ('o1.a', 'o1', 'RUNNING')",
    )
    daemon.log.wait_for(lambda log: log.events("RUN_STATUS_CHANGED", "o1"), what="the new run seen")
    [backend] = listener_backends(daemon.process.pid)
    # Frozen, the daemon cannot reconnect before the commit: its notification goes to nobody.
    os.kill(daemon.process.pid, signal.SIGSTOP)
    try:
        with psycopg.connect(ADMIN, autocommit=True) as connection:
            assert connection.execute("SELECT pg_terminate_backend(%s)", (backend,)).fetchone() == (True,)
        daemon.log.wait_for(lambda _: not listener_backends(daemon.process.pid), what="the listener's backend gone")
        execute(postgres_url, "UPDATE tasks SET status = 'SUCCEEDED' WHERE task_id = 'o1.a'")
    finally:
        os.kill(daemon.process.pid, signal.SIGCONT)
    daemon.log.wait_for(lambda log: log.events("RUN_COMPLETED", "o1"), what="o1 marked by the reconciliation")
    assert len(log_lines(daemon.log, "change notifications lost")) == 1
    assert len(log_lines(daemon.log, "change notifications are back")) == 1
    [again] = listener_backends(daemon.process.pid)
    assert again != backend
    execute(
        postgres_url,
        "INSERT INTO runs (run_id, status) VALUES ('o2', 'RUNNING')",
        "INSERT INTO tasks (task_id, run_id, status) VALUES ('o2.a', 'o2', 'SUCCEEDED')",
    )
    daemon.log.wait_for(lambda log: log.events("RUN_COMPLETED", "o2"), what="o2 marked: notifications flow again")
    assert daemon.stop()[0] == 0


@pytest.mark.parametrize("choice", ["watermark", "poll"])
def test_the_configured_change_detection_is_used_even_with_triggers(
    tmp_path: Path, postgres_url: str, start_daemon, choice: str
) -> None:
    init(tmp_path, postgres_url, "--triggers")
    daemon = start_monitoring(
        tmp_path, postgres_url, start_daemon, "completion.poll_seconds=0.1", f"database.change_detection={choice}"
    )
    assert started_mode(daemon.log) == choice
    execute(
        postgres_url,
        "INSERT INTO runs (run_id, status, updated_at) VALUES ('c1', 'RUNNING', '2026-12-01T00:00:00Z')",
        "INSERT INTO tasks (task_id, run_id, status) VALUES ('c1.a', 'c1', 'SUCCEEDED')",
    )
    daemon.log.wait_for(lambda log: log.events("RUN_COMPLETED", "c1"), what="c1 marked")
    assert daemon.stop()[0] == 0
