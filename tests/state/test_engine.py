"""Engines on a SQLite state database that is restored by replacing its file under them."""

from __future__ import annotations

import os
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from orchestrator_monitor.state.engine import open_engine
from sqlalchemy import Engine, exc, text


def count_runs(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM runs")).scalar_one())


def replace_with_a_copy_holding_one_run(db: Path) -> None:
    """What a restore does: a different file (with its own contents) renamed over the path."""
    copy = db.with_name("restored.db")
    shutil.copy(db, copy)
    with closing(sqlite3.connect(copy)) as connection:
        connection.execute("INSERT INTO runs (run_id, status) VALUES ('restored', 'RUNNING')")
        connection.commit()
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    os.replace(copy, db)


def test_pooled_connections_follow_a_replaced_database_file(workspace: Path) -> None:
    db = workspace / ".state" / "orchestration.db"
    reader = open_engine(f"sqlite:///{db}", busy_timeout_seconds=1, readonly=True)
    writer = open_engine(f"sqlite:///{db}", busy_timeout_seconds=1, readonly=False)
    assert count_runs(reader) == 0 and count_runs(writer) == 0  # each pool now holds a connection on the old file
    replace_with_a_copy_holding_one_run(db)
    assert count_runs(reader) == 1  # the dashboard's reads show the restored file, not the deleted one
    with writer.begin() as connection:
        connection.execute(
            text("INSERT INTO archival_log (run_id, action, status) VALUES ('restored', 'archive', 'STARTED')")
        )
    with closing(sqlite3.connect(db)) as connection:  # the monitor's write went into the file that is there now
        assert connection.execute("SELECT run_id FROM archival_log").fetchall() == [("restored",)]
    db.unlink()
    with pytest.raises(exc.OperationalError, match="unable to open"):  # gone: an error, not the old file's rows
        count_runs(reader)
    reader.dispose()
    writer.dispose()
