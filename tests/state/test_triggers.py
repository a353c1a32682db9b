"""`orchestrator init --triggers`: the change-notification triggers on a real PostgreSQL schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from orchestrator_monitor.state.mapping import BUILT_IN, built_in
from orchestrator_monitor.state.triggers import MANY, channel_name, install_sql, installed
from sqlalchemy import create_engine, text
from support import REPO

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def schema_of(url: str) -> str:
    return url.rsplit("%3D", 1)[1]


def init(cli, workspace: Path, url: str, *flags: str, schema: str = "reference"):  # type: ignore[no-untyped-def]
    return cli(
        "init",
        "--workspace",
        str(workspace),
        "--set",
        f"database.url={url}",
        "--set",
        f"database.schema={schema}",
        *flags,
    )


@pytest.fixture
def listener(postgres_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(ADMIN, autocommit=True) as connection:
        connection.execute(f'LISTEN "{channel_name(schema_of(postgres_url))}"')
        yield connection


def received(connection: psycopg.Connection) -> list[str]:
    """The notifications delivered so far (each commit's arrive before the commit returns to its writer)."""
    return [notice.payload for notice in connection.notifies(timeout=0.3)]


def triggers_in(url: str) -> list[tuple[str, str]]:
    query = (
        "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND NOT t.tgisinternal ORDER BY 1, 2"
    )
    with psycopg.connect(ADMIN) as connection:
        return [(str(a), str(b)) for a, b in connection.execute(query, (schema_of(url),)).fetchall()]


@pytest.mark.postgres
def test_init_triggers_installs_them_once_and_a_commit_notifies_its_run_ids(
    tmp_path: Path, postgres_url: str, cli, listener: psycopg.Connection
) -> None:
    result = init(cli, tmp_path, postgres_url, "--triggers")
    assert result.code == 0, result.err
    assert "change-notification triggers installed" in result.out
    installed = triggers_in(postgres_url)
    assert len(installed) == 12  # runs, workstreams, tasks: insert, update, delete, truncate
    assert init(cli, tmp_path, postgres_url, "--triggers").code == 0  # idempotent: replaced, not doubled
    assert triggers_in(postgres_url) == installed
    engine = create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO runs (run_id, status) VALUES ('r1', 'RUNNING'), ('r2', 'RUNNING')"))
    assert [json.loads(p) for p in received(listener)] == [["r1", "r2"]]
    with engine.begin() as connection:  # a writer's transaction: several statements on one run's tasks
        connection.execute(text("INSERT INTO tasks (task_id, run_id, status) VALUES ('r1.a', 'r1', 'RUNNING')"))
        connection.execute(text("UPDATE tasks SET status = 'SUCCEEDED' WHERE task_id = 'r1.a'"))
        connection.execute(text("UPDATE runs SET status = 'COMPLETED' WHERE run_id = 'r1'"))
    assert received(listener) == ['["r1"]']  # identical notifications of one transaction are folded
    with engine.begin() as connection:
        connection.execute(text("UPDATE tasks SET status = 'FAILED' WHERE task_id = 'nothing'"))
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM tasks WHERE run_id = 'r1'"))
    assert received(listener) == ['["r1"]']  # a statement that touched nothing sends nothing
    engine.dispose()


@pytest.mark.postgres
def test_a_bulk_insert_of_10000_tasks_is_one_notification_and_too_many_runs_say_many(
    tmp_path: Path, postgres_url: str, cli, listener: psycopg.Connection
) -> None:
    assert init(cli, tmp_path, postgres_url, "--triggers").code == 0
    engine = create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO runs (run_id, status) VALUES ('bulk', 'RUNNING')"))
    received(listener)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO tasks (task_id, run_id, status) "
                "SELECT 'bulk.' || g, 'bulk', 'PENDING' FROM generate_series(1, 10000) g"
            )
        )
    assert received(listener) == ['["bulk"]']
    with engine.begin() as connection:  # 2,000 run ids do not fit in 8,000 bytes
        connection.execute(
            text("INSERT INTO runs (run_id, status) SELECT 'many-run-' || g, 'PENDING' FROM generate_series(1, 2000) g")
        )
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE tasks"))
    assert received(listener) == [MANY, MANY]
    engine.dispose()


@pytest.mark.postgres
def test_tasks_reached_through_their_workstream_notify_the_run(
    tmp_path: Path, postgres_url: str, cli, listener: psycopg.Connection
) -> None:
    engine = create_engine(postgres_url)
    with engine.begin() as connection:
        connection.exec_driver_sql((REPO / "tests" / "executor_ddl" / "pipeline.sql").read_text())
        connection.execute(
            text("INSERT INTO runs (run_id, state, created_at, updated_at) VALUES ('p', 'RUNNING', 'x', 'x')")
        )
        connection.execute(
            text(
                "INSERT INTO workstreams (workstream_id, run_id, created_at, updated_at) VALUES ('p.w', 'p', 'x', 'x')"
            )
        )
    result = init(cli, tmp_path, postgres_url, "--triggers", schema="pipeline")
    assert result.code == 0, result.err
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO tasks (task_id, workstream_id, created_at, updated_at) VALUES ('p.t', 'p.w', 'x', 'x')")
        )
    assert received(listener) == ['["p"]']
    engine.dispose()


@pytest.mark.postgres
def test_print_shows_the_ddl_without_running_it_and_drop_triggers_removes_them(
    tmp_path: Path, postgres_url: str, cli
) -> None:
    assert init(cli, tmp_path, postgres_url).code == 0
    printed = init(cli, tmp_path, postgres_url, "--triggers", "--print")
    assert printed.code == 0, printed.err
    assert printed.out == install_sql(built_in("reference"), schema_of(postgres_url))
    assert triggers_in(postgres_url) == []
    assert init(cli, tmp_path, postgres_url, "--triggers").code == 0
    assert len(triggers_in(postgres_url)) == 12
    dropped = init(cli, tmp_path, postgres_url, "--drop-triggers")
    assert dropped.code == 0, dropped.err
    assert "removed" in dropped.out
    assert triggers_in(postgres_url) == []
    assert init(cli, tmp_path, postgres_url, "--drop-triggers").code == 0  # again: nothing to remove, no error


@pytest.mark.parametrize("name", BUILT_IN)
def test_the_shipped_ddl_is_what_init_generates(name: str) -> None:
    shipped = REPO / "schema" / f"triggers.{name}.postgresql.sql"
    assert shipped.read_text() == install_sql(built_in(name), "public")


def test_init_triggers_on_sqlite_is_one_clear_line_and_exit_2(tmp_path: Path, cli) -> None:
    result = cli("init", "--workspace", str(tmp_path / "ws"), "--triggers")
    assert result.code == 2
    assert result.err.strip() == (
        "orchestrator: error: init --triggers is for a PostgreSQL state database; a SQLite one is watched through "
        "its file"
    )
    assert not (tmp_path / "ws").exists()  # refused before anything was created


@pytest.mark.postgres
def test_installed_means_every_trigger_there_and_enabled(tmp_path: Path, postgres_url: str, cli) -> None:
    engine = create_engine(postgres_url)

    def check() -> bool:
        with engine.connect() as connection:
            return installed(connection, built_in("reference"), schema_of(postgres_url))

    assert init(cli, tmp_path, postgres_url).code == 0
    assert not check()
    assert init(cli, tmp_path, postgres_url, "--triggers").code == 0
    assert check()
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE workstreams DISABLE TRIGGER orchestrator_monitor_notify_upd"))
    assert not check()  # the daemon then uses the watermark
    engine.dispose()
