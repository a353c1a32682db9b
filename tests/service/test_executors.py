"""Real executors' schemas end to end: the daemon reads, marks, archives and reports runs of the `uet` and
`pipeline` engines through their mappings, writing only what their CHECK constraints accept."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest
from archive_support import assert_bagit_valid, assert_reports_valid
from executor_support import DDL_DIR, PipelineExecutor, UetExecutor, create_database, executor_time
from sqlalchemy import create_engine, text
from support import EventLog

# The uet engine's own phase-7 table of the same name: the monitor must leave it alone.
UET_ARCHIVAL_LOG = (
    "CREATE TABLE archival_log (id INTEGER PRIMARY KEY, run_id TEXT, archive_path TEXT, archived_at TEXT, "
    "size_bytes INTEGER)"
)


def executor_workspace(root: Path, family: str, cli) -> Path:
    """A workspace whose state database is the executor's own, with `database.schema = family`."""
    create_database(root / ".state" / "orchestration.db", family)
    (root / "config").mkdir(parents=True)
    (root / "config" / "monitor.toml").write_text(f'[database]\nschema = "{family}"\n')
    result = cli("init", "--workspace", str(root))
    assert result.code == 0, result.err
    assert f"(schema {family})" in result.out
    return root


def sqlite_master(db: Path) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(db)) as connection:
        return connection.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()


def bag_info(bag: Path) -> dict[str, str]:
    lines = (bag / "bag-info.txt").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if ": " in line)


def finished_once(log: EventLog, run_ids: list[str]) -> dict[str, dict[str, object]]:
    """Each run completed, archived and reported exactly once; RUN_COMPLETED's data by run."""
    for kind in ("RUN_COMPLETED", "RUN_ARCHIVED", "REPORT_GENERATED"):
        counts = Counter(event["run_id"] for event in log.events(kind))
        assert counts == Counter(run_ids), (kind, counts)
    return {event["run_id"]: event["data"] for event in log.events("RUN_COMPLETED")}


def test_uet_runs_are_marked_in_its_vocabulary_archived_and_reported_once(tmp_path: Path, cli, start_daemon) -> None:
    workspace = executor_workspace(tmp_path / "ws", "uet", cli)
    db = workspace / ".state" / "orchestration.db"
    with closing(sqlite3.connect(db)) as connection:
        connection.execute(UET_ARCHIVAL_LOG)
        connection.commit()
    engine = UetExecutor(db)
    outcomes = {
        "all-ok": [["succeeded"], ["failed", "succeeded"]],  # a retried step: its latest attempt counts
        "partly": [["succeeded"], ["failed", "failed"]],
        "none-ok": [["failed"]],
        "naive": [["succeeded"]],
    }
    for run_id, steps in outcomes.items():
        engine.start_run(run_id)
        worktree = workspace / ".worktrees" / run_id
        worktree.mkdir(parents=True)
        (worktree / "result.txt").write_text(f"output of {run_id}\n")
        for sequence, attempts in enumerate(steps):
            engine.run_step(run_id, sequence, f"tool-{sequence}", attempts)
    engine.sql("UPDATE step_attempts SET ended_at = substr(ended_at, 1, 26) WHERE run_id = 'naive'")  # naive times
    engine.start_run("self-ended")  # a live engine that ends its run itself: taken as it is
    engine.run_step("self-ended", 0, "tool-0", ["running"])
    (workspace / ".worktrees" / "self-ended").mkdir()
    run_ids = [*outcomes, "self-ended"]
    daemon = start_daemon(workspace, "completion.settle_seconds=0", "dashboard.enabled=false")
    with closing(sqlite3.connect(db, isolation_level=None)) as connection:  # its last step and its end, at once
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("UPDATE step_attempts SET state = 'succeeded', ended_at = ? WHERE run_id = 'self-ended'",
                           (executor_time(),))  # fmt: skip
        connection.execute("UPDATE runs SET state = 'succeeded', ended_at = ? WHERE run_id = 'self-ended'",
                           (executor_time(),))  # fmt: skip
        connection.execute("COMMIT")
    daemon.log.wait_for(lambda log: len(log.events("REPORT_GENERATED")) == len(run_ids), timeout=60, what="reports")
    daemon.stop()
    completed = finished_once(daemon.log, run_ids)
    expected = {"all-ok": "COMPLETED", "partly": "PARTIAL", "none-ok": "FAILED", "naive": "COMPLETED"}
    for run_id, status in expected.items():
        assert completed[run_id]["status"] == status and completed[run_id]["marked_by"] == "monitor"
    assert completed["self-ended"] == {**completed["self-ended"], "status": "COMPLETED", "marked_by": "executor"}
    assert completed["all-ok"]["tasks"] == {"SUCCEEDED": 2}  # two steps, three attempt rows
    stored = dict(engine.sql("SELECT run_id, state FROM runs"))
    assert stored == {"all-ok": "succeeded", "partly": "failed", "none-ok": "failed", "naive": "succeeded",
                      "self-ended": "succeeded"}  # fmt: skip
    ended = dict(engine.sql("SELECT run_id, ended_at FROM runs"))
    assert all(ended[run_id] for run_id in expected)  # the latest attempt's end, read from its +00:00Z text
    for run_id in run_ids:
        bag = workspace / ".archive" / run_id
        assert_bagit_valid(bag)
        assert cli("verify", "--workspace", str(workspace), "--run", run_id).code == 0
        truth = expected.get(run_id, "COMPLETED")
        assert bag_info(bag)["Run-Status"] == truth
        assert assert_reports_valid(workspace, run_id)["summary"]["status"] == truth
        with closing(sqlite3.connect(bag / "data" / "state" / "run.sqlite3")) as snapshot:
            tables = {row[0] for row in snapshot.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            assert {"runs", "step_attempts", "monitor_archival_log"} <= tables
    assert (workspace / ".archive" / "partly" / "data" / "run" / "result.txt").read_text() == "output of partly\n"
    assert engine.sql("SELECT count(*) FROM archival_log") == [(0,)]  # the engine's own table: untouched
    advice = [e["data"]["detail"] for e in daemon.log.events("WARNING") if e["data"]["what"] == "missing index"]
    assert len(advice) == 1 and advice[0].endswith("ON step_attempts (run_id, state);")
    assert engine.sql("SELECT name FROM sqlite_master WHERE name LIKE 'monitor_ix%'") == []  # advice, never done
    archived = engine.sql("SELECT run_id FROM monitor_archival_log WHERE status = 'SUCCEEDED' ORDER BY run_id")
    assert [row[0] for row in archived] == sorted(run_ids)


def test_pipeline_runs_reach_their_tasks_through_workstreams(tmp_path: Path, cli, start_daemon) -> None:
    workspace = executor_workspace(tmp_path / "ws", "pipeline", cli)
    engine = PipelineExecutor(workspace / ".state" / "orchestration.db")
    plans = {"p-ok": ["COMPLETED", "COMPLETED"], "p-partial": ["COMPLETED", "FAILED"], "p-failed": ["FAILED"]}
    for run_id, states in plans.items():
        engine.start_run(run_id)
        engine.add_workstream(run_id, f"{run_id}.ws")
        for n, state in enumerate(states):
            engine.add_task(f"{run_id}.ws", f"{run_id}.t{n}")
            engine.set_task(f"{run_id}.t{n}", "RUNNING")
            engine.set_task(f"{run_id}.t{n}", state, retry_count=1 if state == "FAILED" else 0)
        engine.set_workstream(f"{run_id}.ws", "FAILED" if "FAILED" in states else "COMPLETED")
        (workspace / "runs" / run_id).mkdir(parents=True)
    engine.start_run("p-open")  # a workstream still RUNNING keeps the run open however its tasks stand
    engine.add_workstream("p-open", "p-open.ws")
    engine.add_task("p-open.ws", "p-open.t0", "COMPLETED")
    daemon = start_daemon(workspace, "dashboard.enabled=false")
    daemon.log.wait_for(lambda log: len(log.events("REPORT_GENERATED")) == len(plans), timeout=60, what="reports")
    completed = finished_once(daemon.log, list(plans))
    assert {run_id: data["status"] for run_id, data in completed.items()} == {
        "p-ok": "COMPLETED",
        "p-partial": "PARTIAL",
        "p-failed": "FAILED",
    }
    assert dict(engine.sql("SELECT run_id, state FROM runs")) == {
        "p-ok": "COMPLETED",
        "p-partial": "FAILED",  # no PARTIAL under its CHECK constraint
        "p-failed": "FAILED",
        "p-open": "RUNNING",
    }
    for run_id, truth in (("p-ok", "COMPLETED"), ("p-partial", "PARTIAL"), ("p-failed", "FAILED")):
        assert_bagit_valid(workspace / ".archive" / run_id)
        assert cli("verify", "--workspace", str(workspace), "--run", run_id).code == 0
        assert bag_info(workspace / ".archive" / run_id)["Run-Status"] == truth
        assert assert_reports_valid(workspace, run_id)["summary"]["status"] == truth
    reports = assert_reports_valid(workspace, "p-failed")
    assert reports["summary"]["tasks"] == {"total": 1, "by_status": {"FAILED": 1}}
    assert reports["metrics"]["attempts"]["total"] == 2  # retry_count 1: two attempts
    status = cli("status", "--workspace", str(workspace), "--json")
    assert status.code == 0, status.err
    assert {run["run_id"]: run["status"] for run in json.loads(status.out)["runs"]}["p-open"] == "RUNNING"
    daemon.stop()


@pytest.mark.parametrize("command", [["status"], ["monitor", "--run", "r1"], ["archive", "--run", "r1"],
                                     ["report", "--run", "r1"], ["daemon"], ["init"]])  # fmt: skip
def test_a_database_that_does_not_fit_is_refused_with_one_line(tmp_path: Path, cli, command: list[str]) -> None:
    workspace = tmp_path / "ws"
    db = workspace / ".state" / "orchestration.db"
    create_database(db, "uet")
    UetExecutor(db).start_run("r1")
    before = sqlite_master(db)
    result = cli(*command, "--workspace", str(workspace))
    assert result.code == 3
    assert result.err.count("\n") == 1, result.err
    assert "does not fit the schema mapping 'reference'" in result.err
    assert "table runs has no column status, name, run_dir" in result.err
    assert "set database.schema = 'uet'" in result.err
    assert sqlite_master(db) == before
    assert (
        not (workspace / "logs" / "monitor.jsonl").exists()
        or "MONITOR_STOPPED" not in (workspace / "logs" / "monitor.jsonl").read_text()
    )


def test_health_is_unhealthy_on_a_database_that_does_not_fit(tmp_path: Path, cli) -> None:
    workspace = tmp_path / "ws"
    create_database(workspace / ".state" / "orchestration.db", "pipeline")
    result = cli("health", "--workspace", str(workspace), "--json")
    assert result.code == 1
    check = json.loads(result.out)["checks"]["db_schema_check"]
    assert check["status"] != "ok" and "it fits the built-in mapping pipeline" in check["detail"]


def test_schema_names_the_mappings_that_fit_and_prints_the_configured_one(tmp_path: Path, cli) -> None:
    workspace = tmp_path / "ws"
    create_database(workspace / ".state" / "orchestration.db", "uet")
    result = cli("schema", "--workspace", str(workspace), "--json")
    assert result.code == 1  # the configured mapping (reference) does not fit
    document = json.loads(result.out)
    assert {name for name, verdict in document["mappings"].items() if verdict["fits"]} == {"uet"}
    assert "no table tasks" in document["mappings"]["reference"]["missing"]
    result = cli("schema", "--workspace", str(workspace), "--set", "database.schema=uet")
    assert result.code == 0, result.err
    assert "# uet        fits  (configured)" in result.out
    assert 'table = "step_attempts"' in result.out
    assert "CREATE INDEX monitor_ix_step_attempts_run_id_state ON step_attempts (run_id, state);" in result.out


JOBS_MAPPING = """
name = "jobs"
description = "a fourth executor: batches of jobs, statuses in its own words"

[runs]
table = "batches"
key = "batch_id"
status = "phase"
run_dir_template = "work/{run_id}"
columns = { name = "title", finished_at = "done_at" }

[runs.statuses]
PENDING = ["queued"]
RUNNING = ["active"]
COMPLETED = ["done"]
FAILED = ["broken"]
PARTIAL = ["mixed"]

[runs.write]
COMPLETED = "done"
FAILED = "broken"
PARTIAL = "mixed"

[tasks]
table = "jobs"
key = "job_id"
run = "batch_id"
status = "outcome"
columns = { tool = "command", retries = "retries", finished_at = "done_at" }
attempts = "retries"

[tasks.statuses]
RUNNING = ["working"]
SUCCEEDED = ["ok"]
FAILED = ["error"]
SKIPPED = ["skipped"]
"""


def test_a_mapping_file_of_the_workspace_own(tmp_path: Path, cli, start_daemon) -> None:
    workspace = tmp_path / "ws"
    db = workspace / ".state" / "orchestration.db"
    db.parent.mkdir(parents=True)
    with closing(sqlite3.connect(db)) as connection:
        connection.executescript(
            "CREATE TABLE batches (batch_id TEXT PRIMARY KEY, title TEXT, phase TEXT NOT NULL, done_at TEXT);"
            "CREATE TABLE jobs (job_id TEXT, batch_id TEXT, command TEXT, outcome TEXT, retries INT, done_at TEXT);"
            "INSERT INTO batches VALUES ('b1', 'nightly', 'active', NULL);"
            "INSERT INTO jobs VALUES ('j1', 'b1', 'make', 'ok', 0, '2026-11-30 23:00:00');"
            "INSERT INTO jobs VALUES ('j2', 'b1', 'test', 'working', 2, NULL);"
        )
    (workspace / "config").mkdir()
    (workspace / "config" / "jobs.toml").write_text(JOBS_MAPPING)
    (workspace / "config" / "monitor.toml").write_text('[database]\nschema_file = "config/jobs.toml"\n')
    (workspace / "work" / "b1").mkdir(parents=True)
    assert cli("init", "--workspace", str(workspace)).code == 0
    status = cli("status", "--workspace", str(workspace), "--json")
    run = json.loads(status.out)["runs"][0]
    assert (run["run_id"], run["name"], run["status"]) == ("b1", "nightly", "RUNNING")
    detail = json.loads(cli("monitor", "--workspace", str(workspace), "--run", "b1", "--json").out)
    tools = {tool["tool"]: (tool["succeeded"], tool["active"], tool["attempts"]) for tool in detail["tools"]}
    assert tools == {"make": (1, 0, 1), "test": (0, 1, 3)}  # retries 2: three attempts
    daemon = start_daemon(workspace, "dashboard.enabled=false")
    with closing(sqlite3.connect(db)) as connection:
        connection.execute("UPDATE jobs SET outcome = 'error', done_at = '2026-11-30 23:05:00' WHERE job_id = 'j2'")
        connection.commit()
    daemon.log.wait_for(lambda log: bool(log.events("REPORT_GENERATED")), timeout=30, what="the report")
    daemon.stop()
    assert finished_once(daemon.log, ["b1"])["b1"]["status"] == "PARTIAL"
    with closing(sqlite3.connect(db)) as connection:
        assert connection.execute("SELECT phase, done_at FROM batches").fetchall() == [
            ("mixed", "2026-11-30T23:05:00.000000Z")
        ]
    assert (workspace / ".archive" / "b1" / "data").is_dir()
    printed = cli("schema", "--workspace", str(workspace))
    assert printed.code == 0 and 'table = "batches"' in printed.out and "# jobs       fits  (configured)" in printed.out


@pytest.mark.postgres
def test_pipeline_on_postgresql_marks_archives_and_snapshots_the_run(tmp_path: Path, postgres_url: str, cli,
                                                                     start_daemon) -> None:  # fmt: skip
    engine = create_engine(postgres_url)
    ddl = (DDL_DIR / "pipeline.sql").read_text()
    with engine.begin() as connection:
        connection.exec_driver_sql(ddl)
        now = executor_time()
        connection.execute(text("INSERT INTO runs VALUES ('pg', 'RUNNING', :t, :t, NULL, NULL, 0)"), {"t": now})
        connection.execute(
            text("INSERT INTO workstreams VALUES ('pg.ws', 'pg', 'RUNNING', :t, :t, NULL, NULL, 0)"), {"t": now}
        )
        for task, state in (("pg.t0", "COMPLETED"), ("pg.t1", "RUNNING")):
            connection.execute(
                text(
                    "INSERT INTO tasks (task_id, workstream_id, state, created_at, updated_at, started_at) "
                    "VALUES (:id, 'pg.ws', :state, :t, :t, :t)"
                ),
                {"id": task, "state": state, "t": now},
            )
    workspace = tmp_path / "ws"
    settings = (f"database.url={postgres_url}", "database.schema=pipeline")
    assert cli("init", "--workspace", str(workspace), *(f"--set={item}" for item in settings)).code == 0
    (workspace / "runs" / "pg").mkdir(parents=True)
    daemon = start_daemon(workspace, *settings, "completion.poll_seconds=0.1", "dashboard.enabled=false")
    with engine.begin() as connection:  # the last task fails; its workstream ends
        connection.execute(text("UPDATE tasks SET state = 'FAILED', completed_at = :t WHERE task_id = 'pg.t1'"),
                           {"t": executor_time()})  # fmt: skip
        connection.execute(text("UPDATE workstreams SET state = 'FAILED' WHERE workstream_id = 'pg.ws'"))
    daemon.log.wait_for(lambda log: bool(log.events("REPORT_GENERATED")), timeout=30, what="the report")
    daemon.stop()
    assert finished_once(daemon.log, ["pg"])["pg"]["status"] == "PARTIAL"
    with engine.connect() as connection:
        assert connection.execute(text("SELECT state FROM runs")).scalar_one() == "FAILED"
    engine.dispose()
    bag = workspace / ".archive" / "pg"
    assert bag_info(bag)["Run-Status"] == "PARTIAL"
    assert_bagit_valid(bag)
    with closing(sqlite3.connect(bag / "data" / "state" / "run.sqlite3")) as snapshot:
        assert snapshot.execute("SELECT task_id, state FROM tasks ORDER BY task_id").fetchall() == [
            ("pg.t0", "COMPLETED"),
            ("pg.t1", "FAILED"),
        ]
        assert snapshot.execute("SELECT run_id, status FROM archival_log").fetchall() == [("pg", "STARTED")]
