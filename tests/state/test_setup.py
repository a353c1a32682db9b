from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from executor_support import create_database
from orchestrator_monitor.config import load_settings
from orchestrator_monitor.errors import Unavailable
from orchestrator_monitor.state.engine import create_archival_table, open_engine
from orchestrator_monitor.state.schema import archival_log_table
from orchestrator_monitor.state.setup import init_workspace
from sqlalchemy import create_engine, inspect
from support import REPO

FOLDERS = (".state", ".monitor", "runs", "logs", "reports", ".archive")


def journal_mode(db: Path) -> str:
    with sqlite3.connect(db) as connection:
        return connection.execute("PRAGMA journal_mode").fetchone()[0]


def test_init_creates_folders_schema_wal_and_the_monitor_database(tmp_path: Path, cli) -> None:
    result = cli("init", "--workspace", str(tmp_path / "ws"))
    assert result.code == 0, result.err
    assert "created" in result.out
    for folder in FOLDERS:
        assert (tmp_path / "ws" / folder).is_dir(), folder
    db = tmp_path / "ws" / ".state" / "orchestration.db"
    assert journal_mode(db) == "wal"
    with sqlite3.connect(db) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runs", "workstreams", "tasks", "archival_log"} <= tables
    assert (tmp_path / "ws" / ".monitor" / "monitor.db").is_file()


def test_init_twice_keeps_the_data_and_changes_nothing(simulated: tuple[Path, list[str]], cli) -> None:
    workspace, run_ids = simulated
    db = workspace / ".state" / "orchestration.db"
    with sqlite3.connect(db) as connection:
        before = connection.execute("SELECT * FROM tasks ORDER BY task_id").fetchall()
    result = cli("init", "--workspace", str(workspace))
    assert result.code == 0, result.err
    assert "ready" in result.out
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT * FROM tasks ORDER BY task_id").fetchall() == before
    assert sorted(p.name for p in (workspace / "runs").iterdir()) == run_ids


def test_init_on_an_executor_database_keeps_its_journal_mode_and_adds_only_the_archival_table(tmp_path: Path) -> None:
    db = tmp_path / ".state" / "orchestration.db"
    db.parent.mkdir(parents=True)
    reference = (REPO / "schema" / "state.sqlite.sql").read_text()
    with sqlite3.connect(db) as connection:  # an executor that made the reference tables itself, journal mode DELETE
        connection.executescript(reference.replace("PRAGMA journal_mode = WAL;", ""))
        connection.execute("DROP TABLE archival_log")
        connection.execute("ALTER TABLE runs ADD COLUMN extra TEXT")
        connection.execute("INSERT INTO runs (run_id, status, extra) VALUES ('r1', 'RUNNING', 'kept')")
    assert journal_mode(db) == "delete"
    init_workspace(load_settings(tmp_path, environ={}))
    assert journal_mode(db) == "delete"
    engine = create_engine(f"sqlite:///{db}")
    inspector = inspect(engine)
    assert [c["name"] for c in inspector.get_columns("runs")][-1] == "extra"
    assert set(inspector.get_table_names()) == {"runs", "workstreams", "tasks", "archival_log"}
    engine.dispose()


def test_init_refuses_executor_tables_that_do_not_match_and_adds_nothing(tmp_path: Path, cli) -> None:
    db = tmp_path / ".state" / "orchestration.db"
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, status TEXT NOT NULL, extra TEXT)")
    before = sqlite_master(db)
    result = cli("init", "--workspace", str(tmp_path))
    assert result.code == 3
    assert result.err.strip().count("\n") == 0, result.err
    assert "does not fit the schema mapping 'reference'" in result.err
    assert "table runs has no column name, run_dir" in result.err and "no table tasks" in result.err
    assert sqlite_master(db) == before


@pytest.mark.postgres
def test_init_on_postgresql_creates_the_schema_and_is_idempotent(tmp_path: Path, postgres_url: str, cli) -> None:
    for _ in range(2):
        result = cli("init", "--workspace", str(tmp_path), "--set", f"database.url={postgres_url}")
        assert result.code == 0, result.err
    engine = create_engine(postgres_url)
    assert {"runs", "workstreams", "tasks", "archival_log"} <= set(inspect(engine).get_table_names())
    engine.dispose()
    assert not (tmp_path / ".state" / "orchestration.db").exists()


def sqlite_master(db: Path) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(db)) as connection:
        return connection.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()


def test_the_archival_table_cannot_be_added_to_a_read_only_database_and_says_so(tmp_path: Path) -> None:
    db = tmp_path / "executor.db"
    create_database(db, "uet")  # fits the uet mapping, has no table of the monitor's yet
    engine = open_engine(f"sqlite:///{db}", busy_timeout_seconds=0.2, readonly=True)
    try:
        with pytest.raises(Unavailable, match=r"state database .*executor.db cannot be used: attempt to write"):
            create_archival_table(engine, archival_log_table("monitor_archival_log"), str(db))
    finally:
        engine.dispose()
    with closing(sqlite3.connect(db)) as connection:
        names = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "monitor_archival_log" not in names  # the daemon logs it and keeps the rows in its outbox
