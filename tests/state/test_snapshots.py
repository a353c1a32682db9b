"""The detector's reads on both databases: every run streamed, orphans by anti-join, the reopen watch's seeks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from orchestrator_monitor.inlists import CHUNK
from orchestrator_monitor.state.schema import metadata
from orchestrator_monitor.state.snapshots import (
    STREAM_ROWS,
    fetch_orphan_run_ids,
    fetch_runs_with_open_rows,
    fetch_statuses,
    iterate_all_runs,
)
from sqlalchemy import Engine, create_engine, event, insert, text
from sqlalchemy.pool import NullPool
from support import reference_tables

RUNS = 2 * STREAM_ROWS + 7  # more than two of the batches PostgreSQL's server-side cursor sends


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'state.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = create_engine(url, poolclass=NullPool)
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            insert(metadata.tables["runs"]),
            [{"run_id": f"run-{n:05d}", "status": "COMPLETED" if n % 3 else "RUNNING"} for n in range(RUNS)],
        )
        connection.execute(
            text(
                "INSERT INTO tasks (task_id, run_id, status) VALUES ('a', 'run-00001', 'SUCCEEDED'), "
                "('b', 'ghost', 'SUCCEEDED'), ('c', 'ghost', 'FAILED')"
            )
        )
        connection.execute(
            text("INSERT INTO workstreams (workstream_id, run_id, status) VALUES ('w', 'spectre', 'RUNNING')")
        )
    yield engine
    engine.dispose()


def test_every_run_is_streamed_once_with_shared_status_strings(engine: Engine) -> None:
    with engine.connect() as connection, connection.begin():
        rows = list(iterate_all_runs(connection, reference_tables()))
    assert sorted(run_id for run_id, _, _ in rows) == [f"run-{n:05d}" for n in range(RUNS)]
    assert {status for _, status, _ in rows} == {"COMPLETED", "RUNNING"}
    assert len({id(status) for _, status, _ in rows}) == 2  # one string per status, not one per run


def test_only_the_orphans_come_back(engine: Engine) -> None:
    with engine.connect() as connection, connection.begin():
        assert fetch_orphan_run_ids(connection, reference_tables()) == {"ghost", "spectre"}


def test_the_reopen_watch_finds_the_runs_with_an_open_task_or_workstream(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO tasks (task_id, run_id, status) VALUES ('t1', 'run-00002', 'RUNNING'), "
                "('t2', 'run-00004', 'QUEUED'), ('t3', 'run-00004', 'PENDING'), ('t4', 'run-00005', 'FAILED'), "
                "('t5', 'run-02000', 'RUNNING')"
            )
        )
        connection.execute(
            text("INSERT INTO workstreams (workstream_id, run_id, status) VALUES ('w2', 'run-00007', 'RUNNING')")
        )
    watched = [f"run-{n:05d}" for n in range(CHUNK * 2 + 5)]  # three chunks, the last run in the third
    with engine.connect() as connection, connection.begin():
        found = fetch_runs_with_open_rows(connection, reference_tables(), watched)
        assert fetch_runs_with_open_rows(connection, reference_tables(), []) == set()
    assert found == {"run-00002", "run-00004", "run-00007"}  # run-02000 was not asked about


def test_reads_of_any_number_of_runs_send_few_sql_texts(engine: Engine) -> None:
    """Each list length was a new SQL text, prepared and cached anew by the driver (SQLite's heap swung
    by 15 MB under the soak); padded lists leave one text per power of two."""
    sent: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_: sent.append(statement))
    ids = [f"run-{n:05d}" for n in range(100)]
    with engine.connect() as connection, connection.begin():
        for count in range(1, len(ids) + 1):
            assert set(fetch_statuses(connection, reference_tables(), ids[:count])) == set(ids[:count])
            fetch_runs_with_open_rows(connection, reference_tables(), ids[:count])
    assert len(sent) == 200
    assert len(set(sent)) == 2 * 8  # lengths 1, 2, 4 .. 128 for each of the two reads (100 texts each, unpadded)
