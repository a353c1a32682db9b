"""The monitor's own tables: the DDL in schema/ is the models', a version-1 file is upgraded in place,
and on a shared PostgreSQL each run is claimed by exactly one daemon."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from orchestrator_monitor.config import load_settings
from orchestrator_monitor.errors import Unavailable
from orchestrator_monitor.ledger.catalog import ArchiveFilter, Catalog
from orchestrator_monitor.ledger.members import Membership
from orchestrator_monitor.ledger.monitor_db import EventSeqBlocks
from orchestrator_monitor.ledger.runs import Completion, Ledger
from orchestrator_monitor.ledger.store import MonitorStore, metadata, open_store, sqlite_store
from sqlalchemy import create_engine, event, inspect, text
from support import REPO

VERSION_1 = """
CREATE TABLE monitor_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO monitor_meta VALUES ('schema_version', '1'), ('baseline_at', '2026-01-01T00:00:00Z');
CREATE TABLE monitor_event_seq (id INTEGER PRIMARY KEY CHECK (id = 1), next_seq INTEGER NOT NULL);
INSERT INTO monitor_event_seq VALUES (1, 4242);
CREATE TABLE monitor_heartbeats (job TEXT PRIMARY KEY, pid INTEGER NOT NULL, beat_at TEXT NOT NULL,
    errors TEXT NOT NULL, detail TEXT NOT NULL);
INSERT INTO monitor_heartbeats VALUES ('scheduler', 1, '2026-01-01T00:00:00Z', '[]', '{}');
CREATE TABLE monitor_runs (run_id TEXT NOT NULL PRIMARY KEY, phase TEXT NOT NULL, status TEXT, marked_by TEXT,
    tasks TEXT, fingerprint TEXT, reopened INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL);
CREATE INDEX ix_monitor_runs_reopened ON monitor_runs (run_id) WHERE phase = 'reopened';
INSERT INTO monitor_runs VALUES ('old', 'announced', 'COMPLETED', 'monitor', '{"SUCCEEDED": 1}', 'f', 0, 'x');
"""


def shape(engine) -> dict[str, object]:
    inspector = inspect(engine)
    return {
        table: (
            [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
            inspector.get_pk_constraint(table)["constrained_columns"],
            sorted((i["name"], tuple(i["column_names"])) for i in inspector.get_indexes(table)),
        )
        for table in sorted(metadata.tables)
    }


@pytest.mark.postgres
def test_the_postgresql_ddl_is_the_models(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    try:
        metadata.create_all(engine)
        from_models = shape(engine)
        metadata.drop_all(engine)
        with engine.begin() as connection:
            connection.exec_driver_sql((REPO / "schema" / "monitor.postgresql.sql").read_text())
            connection.exec_driver_sql((REPO / "schema" / "monitor.postgresql.sql").read_text())  # idempotent
        assert shape(engine) == from_models
    finally:
        engine.dispose()


def _opened_after(script: str, path: Path) -> MonitorStore:
    """The store opened on a database that `script` made as an earlier version did."""
    with sqlite3.connect(path) as connection:
        connection.executescript(script)
    return sqlite_store(path, busy_timeout_seconds=1)


def _names(path: Path, kind: str) -> set[str]:
    with sqlite3.connect(path) as connection:
        return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = ?", (kind,))}


def test_a_version_1_monitor_database_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "monitor.db"
    store = _opened_after(VERSION_1, path)
    try:
        assert EventSeqBlocks(store).reserve(10) == range(4242, 4252)  # numbering goes on: never a repeat
        ledger = Ledger(store)
        assert ledger.baseline_taken()
        assert ledger.runs_in_phase("announced") == ["old"]  # a single daemon's rows (no owner) are its own
        assert ledger.active_records()["old"].tasks == {"SUCCEEDED": 1}
    finally:
        store.dispose()
    assert "monitor_event_seq" not in _names(path, "table") and "ix_monitor_runs_reopened" not in _names(path, "index")


def test_the_owed_runs_index_of_before_published_is_replaced(tmp_path: Path) -> None:
    """Its predicate lacked `published`: a query of the owed runs would scan every run ever seen."""
    path = tmp_path / "monitor.db"
    sqlite_store(path, busy_timeout_seconds=1).dispose()
    store = _opened_after(
        "DROP INDEX ix_monitor_runs_owed; CREATE INDEX ix_monitor_runs_active ON monitor_runs (phase, owner) "
        "WHERE phase IN ('marking', 'completed', 'announced', 'reopened', 'archived');",
        path,
    )
    store.dispose()
    names = _names(path, "index")
    assert "ix_monitor_runs_owed" in names and "ix_monitor_runs_active" not in names


def shared(postgres_url: str, tmp_path: Path, daemon_id: str) -> MonitorStore:
    settings = load_settings(
        tmp_path, environ={}, overrides=[f"database.url={postgres_url}", f"cluster.daemon_id={daemon_id}"]
    )
    store = open_store(settings)
    assert store is not None and store.shared
    return store


def done(run_id: str, status: str = "COMPLETED") -> Completion:
    return Completion(run_id, status, "monitor", {"SUCCEEDED": 1}, "fingerprint")


def test_the_runs_still_owed_work_are_sought_on_their_index_not_among_all_ever_seen(tmp_path: Path) -> None:
    """Read before READY and on every full pass: a scan would grow with the history (a million runs: 0.1 s each)."""
    store = sqlite_store(tmp_path / "monitor.db", busy_timeout_seconds=5)
    ledger = Ledger(store)
    ledger.take_baseline({f"old-{n}": "COMPLETED" for n in range(100)})
    assert ledger.begin_marks({"a": "COMPLETED"}) == {"a"}
    assert ledger.complete_many([done("a")]) == {"a"}
    ledger.announce_many(["a"])
    plans: list[str] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def explain(connection, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if statement.startswith("SELECT"):  # not the store's own BEGIN
            rows = cursor.connection.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)
            plans.append(" ".join(row[3] for row in rows))

    assert set(ledger.active_records()) == {"a"}
    assert ledger.runs_in_phase("announced") == ["a"]
    assert ledger.reopened_runs() == []
    assert len(plans) == 3 and all("USING INDEX ix_monitor_runs_owed" in plan for plan in plans), plans
    store.dispose()


@pytest.mark.postgres
def test_on_a_shared_database_each_run_is_claimed_by_one_daemon(postgres_url: str, tmp_path: Path) -> None:
    a, b = shared(postgres_url, tmp_path, "a"), shared(postgres_url, tmp_path, "b")
    try:
        first, second = Ledger(a), Ledger(b)
        assert first.begin_marks({"r1": "COMPLETED", "r2": "FAILED"}) == {"r1", "r2"}
        assert second.begin_marks({"r1": "COMPLETED", "r3": "COMPLETED"}) == {"r3"}  # r1 is a's intent
        assert second.complete_many([done("r1")]) == set()  # nor can b record a's run as completed
        assert first.complete_many([done("r1"), done("r2", "FAILED")]) == {"r1", "r2"}
        assert second.complete_many([done("r4")]) == {"r4"}  # an executor-ended run nobody claimed yet
        assert first.complete_many([done("r4")]) == set()
        assert EventSeqBlocks(a).reserve(5) == range(1, 6)  # each daemon numbers its own events
        assert EventSeqBlocks(b).reserve(5) == range(1, 6)
        assert sorted(second.runs_in_phase("completed")) == ["r4"]
    finally:
        a.dispose()
        b.dispose()


@pytest.mark.postgres
def test_a_dead_daemons_runs_are_taken_over_once_by_the_survivors(postgres_url: str, tmp_path: Path) -> None:
    stores = [shared(postgres_url, tmp_path, name) for name in ("dead", "b", "c")]
    try:
        dead, b, c = (Ledger(store) for store in stores)
        runs = {f"r{n}": "COMPLETED" for n in range(300)}
        dead.begin_marks(runs)
        dead.complete_many([done(run_id) for run_id in runs])
        taken: dict[str, dict[str, str]] = {}
        go = threading.Barrier(2)

        def take(ledger: Ledger) -> None:
            go.wait()
            found: dict[str, str] = {}
            while batch := ledger.take_over(["b", "c"], limit=40):
                found.update(batch)
            taken[ledger.daemon_id] = found

        threads = [threading.Thread(target=take, args=(ledger,)) for ledger in (b, c)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not set(taken["b"]) & set(taken["c"])  # SKIP LOCKED: never both
        assert set(taken["b"]) | set(taken["c"]) == set(runs)
        assert set(taken["b"].values()) == {"completed"}
        assert b.take_over(["b", "c"]) == {} and c.take_over(["b", "c"]) == {}
    finally:
        for store in stores:
            store.dispose()


@pytest.mark.postgres
def test_one_process_per_daemon_id_and_a_silent_daemon_is_not_live(postgres_url: str, tmp_path: Path) -> None:
    a, again, b = (shared(postgres_url, tmp_path, name) for name in ("a", "a", "b"))
    first = Membership(a, version="t", lease_seconds=5)
    first.join()
    try:
        with pytest.raises(Unavailable, match="daemon id 'a' is in use"):
            Membership(again, version="t", lease_seconds=5).join()
        other = Membership(b, version="t", lease_seconds=5)
        other.join()
        assert first.live() == ["a", "b"]
        with b.write() as connection:  # b's last beat, long ago by the server's clock
            connection.execute(
                text("UPDATE monitor_daemons SET beat_at = '2026-01-01T00:00:00Z' WHERE daemon_id = 'b'")
            )
        assert first.live() == ["a"]
        other.beat()
        assert first.live() == ["a", "b"]
        other.leave()  # a clean stop: not live, at once
        assert first.live() == ["a"]
    finally:
        first.leave()
        for store in (a, again, b):
            store.dispose()


CATALOG_BEFORE_FACETS_HELD_STATUS = """
CREATE TABLE monitor_archives (run_id TEXT NOT NULL PRIMARY KEY, name TEXT, status TEXT NOT NULL, started_at TEXT,
    finished_at TEXT, archived_at TEXT NOT NULL, ended_at TEXT NOT NULL, files BIGINT NOT NULL, bytes BIGINT NOT NULL,
    manifest_sha256 TEXT NOT NULL, verified_at TEXT, verify_result TEXT, verify_detail TEXT);
CREATE INDEX ix_monitor_archives_status ON monitor_archives (status);
CREATE INDEX ix_monitor_archives_ended_at ON monitor_archives (ended_at);
CREATE TABLE monitor_archive_facets (run_id TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (run_id, kind, value));
CREATE INDEX ix_monitor_archive_facets_value ON monitor_archive_facets (kind, value);
INSERT INTO monitor_archives VALUES ('f', 'n', 'FAILED', NULL, NULL, '2026-11-01T00:00:00Z', '2026-11-01T00:00:00Z',
    1, 1, 'x', NULL, NULL, NULL);
INSERT INTO monitor_archive_facets VALUES ('f', 'tool', 'lint');
"""


def test_a_catalog_of_before_its_search_indexes_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "monitor.db"
    store = _opened_after(CATALOG_BEFORE_FACETS_HELD_STATUS, path)
    try:
        found = Catalog(store).search(ArchiveFilter(tool="lint", statuses=("FAILED",), since="2026-10-01T00:00:00Z"))
        assert [e.run_id for e in found.entries] == ["f"] and found.total == 1  # the facet took its bag's status
    finally:
        store.dispose()
    indexes = _names(path, "index")
    assert {"ix_monitor_archives_status_ended", "ix_monitor_archive_facets_search"} <= indexes
    assert not {"ix_monitor_archive_facets_value", "ix_monitor_archives_ended_at"} & indexes
