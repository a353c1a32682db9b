"""`archival_log` rows while the state database refuses them: kept, across a kill, and written once."""

from __future__ import annotations

import dataclasses
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from orchestrator_monitor.state.archival_log import ArchivalLog, ArchivalRow
from orchestrator_monitor.state.engine import open_engine
from orchestrator_monitor.state.schema import archival_log, metadata
from sqlalchemy import Engine, create_engine, insert, select
from support import lock_held

BUSY_SECONDS = 0.2
ROWS = [
    ArchivalRow("run-1", "STARTED", "/a/run-1", "2026-11-24T10:00:00.000001Z"),
    ArchivalRow("run-1", "SUCCEEDED", "/a/run-1", "2026-11-24T10:00:00.000001Z", "2026-11-24T10:00:02.5Z", 3, 42, "ab"),
]
# A process that records the rows while another holds the database's write lock, then waits to be killed.
RECORDER = """
import sys
from pathlib import Path
from orchestrator_monitor.state.archival_log import ArchivalLog, ArchivalRow
from orchestrator_monitor.state.engine import open_engine
workspace = Path(sys.argv[1])
engine = open_engine(f"sqlite:///{workspace / '.state' / 'orchestration.db'}", busy_timeout_seconds=0.2, readonly=False)
from orchestrator_monitor.state.schema import archival_log
log = ArchivalLog(engine, archival_log, outbox=workspace / ".monitor" / "monitor.db", busy_timeout_seconds=0.2)
assert not log.record(ArchivalRow("run-1", "STARTED", "/a/run-1", "2026-11-24T10:00:00.000001Z"))
assert not log.record(
    ArchivalRow("run-1", "SUCCEEDED", "/a/run-1", "2026-11-24T10:00:00.000001Z", "2026-11-24T10:00:02.5Z", 3, 42, "ab")
)
print("refused", flush=True)
sys.stdin.readline()
"""


def engine_for(workspace: Path) -> Engine:
    return open_engine(
        f"sqlite:///{workspace / '.state' / 'orchestration.db'}", busy_timeout_seconds=BUSY_SECONDS, readonly=False
    )


def log_for(workspace: Path, engine: Engine) -> ArchivalLog:
    return ArchivalLog(
        engine, archival_log, outbox=workspace / ".monitor" / "monitor.db", busy_timeout_seconds=BUSY_SECONDS
    )


def written(engine: Engine) -> list[ArchivalRow]:
    columns = [archival_log.c[name] for name in ArchivalRow.__slots__]  # type: ignore[attr-defined]
    with engine.connect() as connection:
        return [ArchivalRow(*row) for row in connection.execute(select(*columns).order_by(archival_log.c.id))]


def test_rows_refused_by_a_locked_database_survive_a_killed_process_and_go_in_once(workspace: Path) -> None:
    with (
        lock_held(workspace / ".state" / "orchestration.db"),
        subprocess.Popen(
            [sys.executable, "-c", RECORDER, str(workspace)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        ) as recorder,
    ):
        assert recorder.stdout is not None and recorder.stdout.readline().strip() == "refused"
        recorder.send_signal(signal.SIGKILL)  # before the lock goes: nothing it held in memory was written
        assert recorder.wait(10) == -signal.SIGKILL
    engine = engine_for(workspace)
    assert written(engine) == []
    restarted = log_for(workspace, engine)  # the next daemon, or an `archive` command
    assert restarted.pending == 2 and restarted.has_succeeded("run-1")
    assert restarted.flush()
    assert written(engine) == ROWS
    assert log_for(workspace, engine).pending == 0  # the outbox is empty again
    engine.dispose()


def test_a_row_written_just_before_a_crash_emptied_the_outbox_is_not_written_again(workspace: Path) -> None:
    engine = engine_for(workspace)
    with lock_held(workspace / ".state" / "orchestration.db"):
        assert not log_for(workspace, engine).record(ROWS[0])
    with engine.begin() as connection:  # what a crash between the write and the outbox's cleanup leaves
        connection.execute(
            insert(archival_log).values(
                run_id="run-1",
                action="archive",
                status="STARTED",
                archive_path="/a/run-1",
                started_at=ROWS[0].started_at,
            )
        )
    restarted = log_for(workspace, engine)
    assert restarted.pending == 1
    assert restarted.record(ROWS[1])
    assert written(engine) == ROWS
    engine.dispose()


def test_a_row_refused_for_good_is_set_aside_and_never_holds_up_the_others(workspace: Path) -> None:
    engine = engine_for(workspace)
    log = log_for(workspace, engine)
    refused = ArchivalRow("run-0", None, "/a/run-0", "2026-11-24T09:00:00Z")  # type: ignore[arg-type]  # NOT NULL
    assert log.record(refused)  # not waiting: set aside
    assert log.record(ROWS[0]) and log.record(ROWS[1])
    assert written(engine) == ROWS and log.pending == 0
    assert log_for(workspace, engine).pending == 0  # a restart does not bring it back to block the queue
    with sqlite3.connect(workspace / ".monitor" / "monitor.db") as monitor:
        kept = monitor.execute("SELECT row, refused FROM monitor_archival_outbox").fetchall()
    assert [(orjson.loads(row)["run_id"], "NOT NULL" in reason) for row, reason in kept] == [("run-0", True)]
    engine.dispose()


@pytest.mark.postgres
def test_an_archive_over_two_gib_is_logged_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    engine = create_engine(postgres_url)
    metadata.create_all(engine)
    log = ArchivalLog(engine, archival_log, outbox=tmp_path / "monitor.db", busy_timeout_seconds=BUSY_SECONDS)
    big = dataclasses.replace(ROWS[1], total_bytes=3 << 30)
    assert log.record(big)
    assert written(engine) == [big]
    engine.dispose()
