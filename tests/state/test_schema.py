"""The DDL in schema/ and the SQLAlchemy tables are the same schema, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from orchestrator_monitor.state.schema import metadata
from sqlalchemy import create_engine, inspect, text
from support import REPO

TABLES = ("runs", "workstreams", "tasks", "archival_log")


def describe(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        inspector = inspect(engine)
        shape = {}
        for table in TABLES:
            shape[table] = {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"], str(c.get("default")).strip("()'"))
                    for c in inspector.get_columns(table)
                ],
                "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
                "indexes": sorted((i["name"], tuple(i["column_names"])) for i in inspector.get_indexes(table)),
            }
        return shape
    finally:
        engine.dispose()


def test_sqlite_ddl_matches_the_models(tmp_path: Path) -> None:
    from_ddl, from_models = tmp_path / "ddl.db", tmp_path / "models.db"
    with sqlite3.connect(from_ddl) as connection:
        connection.executescript((REPO / "schema" / "state.sqlite.sql").read_text())
    engine = create_engine(f"sqlite:///{from_models}")
    metadata.create_all(engine)
    engine.dispose()
    assert describe(f"sqlite:///{from_ddl}") == describe(f"sqlite:///{from_models}")


def test_sqlite_ddl_is_idempotent_and_the_archival_log_id_is_assigned(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with sqlite3.connect(db) as connection:
        connection.executescript((REPO / "schema" / "state.sqlite.sql").read_text())
        connection.executescript((REPO / "schema" / "state.sqlite.sql").read_text())
        connection.execute("INSERT INTO archival_log (run_id, action, status) VALUES ('r', 'archive', 'STARTED')")
        assert connection.execute("SELECT id FROM archival_log").fetchall() == [(1,)]


@pytest.mark.postgres
def test_postgresql_ddl_matches_the_models(postgres_url: str, postgres_server: str) -> None:
    import psycopg

    engine = create_engine(postgres_url)
    metadata.create_all(engine)
    from_models = describe(postgres_url)
    with engine.begin() as connection:
        for table in TABLES:
            connection.execute(text(f"DROP TABLE {table}"))
    engine.dispose()
    schema = postgres_url.rsplit("%3D", 1)[1]
    with psycopg.connect(postgres_server, autocommit=True) as connection:
        connection.execute(f"SET search_path TO {schema}")
        connection.execute((REPO / "schema" / "state.postgresql.sql").read_text())
        connection.execute("INSERT INTO archival_log (run_id, action, status) VALUES ('r', 'archive', 'STARTED')")
        assert connection.execute("SELECT id FROM archival_log").fetchall() == [(1,)]
    from_ddl = describe(postgres_url)
    # The identity column reflects its default differently; everything else must be equal.
    for shape in (from_ddl, from_models):
        shape["archival_log"]["columns"][0] = shape["archival_log"]["columns"][0][:3]
    assert from_ddl == from_models
