"""The executor schemas in tests/executor_ddl are faithful to EXECUTORS.md and the drivers write them as described."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from executor_support import (
    PipelineExecutor,
    UetExecutor,
    bulk_fill,
    create_database,
    executor_time,
    finish_open_run,
)

ENGINE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00Z$")


@pytest.fixture
def uet(tmp_path: Path) -> UetExecutor:
    path = tmp_path / ".state" / "orchestration.db"
    create_database(path, "uet")
    return UetExecutor(path)


@pytest.fixture
def pipeline(tmp_path: Path) -> PipelineExecutor:
    path = tmp_path / ".state" / "pipeline.db"
    create_database(path, "pipeline")
    return PipelineExecutor(path)


def test_executor_time_shapes() -> None:
    moment = datetime(2026, 11, 30, 23, 10, 24, 508258, tzinfo=UTC)
    assert executor_time(moment) == "2026-11-30T23:10:24.508258+00:00Z"
    assert executor_time(moment, naive=True) == "2026-11-30T23:10:24.508258"
    assert ENGINE_TIME.match(executor_time())


def test_unknown_family_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="family"):
        create_database(tmp_path / "x.db", "reference")


def test_uet_schema_is_faithful(uet: UetExecutor) -> None:
    tables = {row[0] for row in uet.sql("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runs", "step_attempts", "run_events"} <= tables
    assert uet.sql("PRAGMA journal_mode") == [("delete",)]
    indexes = {row[0] for row in uet.sql("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"idx_runs_state", "idx_step_attempts_run"} <= indexes
    uet.start_run("r1")
    for bad in ("PARTIAL", "RUNNING", "cancelled"):
        with pytest.raises(sqlite3.IntegrityError):
            uet.end_run("r1", bad)
    assert uet.state("r1") == "running"
    attempt = uet.start_step("r1", 0, "lint")
    with pytest.raises(sqlite3.IntegrityError):
        uet.end_step(attempt, "skipped")


def test_pipeline_schema_is_faithful(pipeline: PipelineExecutor) -> None:
    indexes = {row[0] for row in pipeline.sql("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"idx_runs_state", "idx_workstreams_run", "idx_tasks_workstream"} <= indexes
    assert "run_id" not in {row[1] for row in pipeline.sql("PRAGMA table_info(tasks)")}
    pipeline.start_run("r1")
    for bad in ("PARTIAL", "CANCELLED", "running"):
        with pytest.raises(sqlite3.IntegrityError):
            pipeline.end_run("r1", bad)
    assert pipeline.state("r1") == "RUNNING"


def test_uet_retry_is_a_new_row_with_the_same_sequence(uet: UetExecutor) -> None:
    uet.start_run("r1", metadata={"plan_steps": 2})
    uet.run_step("r1", 0, "lint", ["failed", "succeeded"])
    uet.run_step("r1", 1, "test", ["succeeded"])
    uet.end_run("r1", "succeeded")
    rows = uet.sql("SELECT sequence, state, exit_code FROM step_attempts WHERE run_id = 'r1' ORDER BY step_attempt_id")
    assert rows == [(0, "failed", 1), (0, "succeeded", 0), (1, "succeeded", 0)]
    times = uet.sql("SELECT started_at, ended_at FROM step_attempts UNION ALL SELECT started_at, ended_at FROM runs")
    assert all(ENGINE_TIME.match(value) for row in times for value in row)
    attempt = uet.start_step("r1", 2, "build")
    uet.end_step(attempt, "succeeded", naive=True)
    assert "+" not in uet.sql("SELECT ended_at FROM step_attempts WHERE step_attempt_id = ?", (attempt,))[0][0]


def test_pipeline_driver_sets_times(pipeline: PipelineExecutor) -> None:
    pipeline.start_run("r1")
    pipeline.add_workstream("r1", "r1.ws0")
    pipeline.add_task("r1.ws0", "r1.t0")
    pipeline.set_task("r1.t0", "RUNNING")
    pipeline.set_task("r1.t0", "COMPLETED", retry_count=1)
    pipeline.set_workstream("r1.ws0", "COMPLETED")
    task = pipeline.sql("SELECT state, started_at, completed_at, updated_at, retry_count FROM tasks")[0]
    assert task[0] == "COMPLETED" and task[4] == 1
    assert all(ENGINE_TIME.match(value) for value in task[1:4])
    assert ENGINE_TIME.match(pipeline.sql("SELECT completed_at FROM workstreams")[0][0])


@pytest.mark.parametrize("family", ["uet", "pipeline"])
def test_bulk_fill_and_finish_open_run(tmp_path: Path, family: str) -> None:
    path = tmp_path / f"{family}.db"
    create_database(path, family)
    open_ids = bulk_fill(path, family, runs=50, tasks_per_run=10, open_runs=5)
    assert len(open_ids) == 5 and open_ids == sorted(open_ids)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", run_id) for run_id in open_ids)
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        if family == "uet":
            task_of_run = "SELECT step_attempt_id, state FROM step_attempts WHERE run_id = ? ORDER BY step_attempt_id"
            running, open_state = "running", "running"
            assert connection.execute("SELECT count(*) FROM step_attempts").fetchone() == (500,)
            retried = "SELECT count(*) FROM (SELECT 1 FROM step_attempts GROUP BY run_id, sequence HAVING count(*) = 2)"
            assert connection.execute(retried).fetchone()[0] > 0
            assert connection.execute("SELECT DISTINCT count(*) FROM step_attempts GROUP BY run_id").fetchall() == [
                (10,)
            ]
        else:
            task_of_run = (
                "SELECT t.task_id, t.state FROM tasks t JOIN workstreams w USING (workstream_id) "
                "WHERE w.run_id = ? ORDER BY t.task_id"
            )
            running, open_state = "RUNNING", "RUNNING"
            assert connection.execute("SELECT count(*) FROM tasks").fetchone() == (500,)
            assert connection.execute("SELECT count(*) FROM workstreams").fetchone() == (200,)
        states = dict(connection.execute("SELECT state, count(*) FROM runs GROUP BY state").fetchall())
        assert states.pop(open_state) == 5 and sum(states.values()) == 45
        open_in_db = [
            row[0]
            for row in connection.execute("SELECT run_id FROM runs WHERE state = ? ORDER BY run_id", (open_state,))
        ]
        assert open_in_db == open_ids
        for run_id in open_ids:
            tasks = [row[1] for row in connection.execute(task_of_run, (run_id,))]
            assert tasks[-3:] == [running] * 3 and running not in tasks[:-3]
        closed = connection.execute(
            "SELECT run_id FROM runs WHERE state != ? ORDER BY run_id LIMIT 1", (open_state,)
        ).fetchone()[0]
        assert running not in [row[1] for row in connection.execute(task_of_run, (closed,))]

        connection.execute("BEGIN IMMEDIATE")
        finish_open_run(connection, family, open_ids[0])
        connection.execute("COMMIT")
        assert running not in [row[1] for row in connection.execute(task_of_run, (open_ids[0],))]
        assert connection.execute("SELECT state FROM runs WHERE run_id = ?", (open_ids[0],)).fetchone() == (open_state,)
        if family == "pipeline":
            ws = connection.execute("SELECT DISTINCT state FROM workstreams WHERE run_id = ?", (open_ids[0],))
            assert ws.fetchall() == [("COMPLETED",)]
        tasks = [row[1] for row in connection.execute(task_of_run, (open_ids[1],))]
        assert tasks[-3:] == [running] * 3
    finally:
        connection.close()
