"""The read views and every exit code, on real SQLite files, in-process and as real processes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from orchestrator_monitor.state.records import TASK_TERMINAL
from sqlalchemy import create_engine, text
from support import lock_held, run_process

RUN_KEYS = {
    "run_id", "name", "status", "terminal", "tasks_total", "tasks_terminal", "progress", "tasks",
    "created_at", "started_at", "finished_at", "age_seconds", "outcomes", "duration_seconds",
}  # fmt: skip


def test_status_json_lists_every_run_with_progress(simulated: tuple[Path, list[str]], cli) -> None:
    workspace, run_ids = simulated
    result = cli("status", "--workspace", str(workspace), "--json")
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert set(document) == {"runs", "warnings", "hidden"} and document["hidden"] == 0
    assert [run["run_id"] for run in document["runs"]] == run_ids
    for run in document["runs"]:
        assert set(run) == RUN_KEYS
        assert run["tasks_total"] == 15
        assert run["tasks_terminal"] == sum(n for s, n in run["tasks"].items() if s in TASK_TERMINAL) == 15
        assert run["progress"] == 1.0
        assert run["age_seconds"] >= 0
    statuses = {run["run_id"]: run["status"] for run in document["runs"]}
    assert statuses["sim-3"] == "CANCELLED"  # set by the executor itself
    assert {statuses[r] for r in run_ids[:3]} == {"RUNNING"}  # all done, waiting for the monitor's mark


def test_monitor_json_shows_workstreams_tools_errors_and_attempts(simulated: tuple[Path, list[str]], cli) -> None:
    workspace, _ = simulated
    result = cli("monitor", "--workspace", str(workspace), "--run", "sim-0", "--json")
    assert result.code == 0, result.err
    detail = json.loads(result.out)
    assert set(detail) == {
        "run",
        "failed_tasks",
        "failed_total",
        "workstreams",
        "tools",
        "errors",
        "attempts",
        "warnings",
    }
    assert detail["run"]["run_id"] == "sim-0"
    assert [ws["workstream_id"] for ws in detail["workstreams"]] == ["sim-0.ws0", "sim-0.ws1", "sim-0.ws2"]
    assert sum(ws["tasks_total"] for ws in detail["workstreams"]) == 15
    with sqlite3.connect(workspace / ".state" / "orchestration.db") as connection:
        rows = connection.execute(
            "SELECT tool, status, attempts, error_type FROM tasks WHERE run_id = 'sim-0'"
        ).fetchall()
    for tool in detail["tools"]:
        mine = [row for row in rows if row[0] == tool["tool"]]
        assert tool["tasks"] == len(mine)
        assert tool["failed"] == sum(row[1] == "FAILED" for row in mine)
        assert tool["attempts"] == sum(row[2] for row in mine)
        finished = tool["succeeded"] + tool["failed"]
        assert tool["success_rate"] == (tool["succeeded"] / finished if finished else None)
    assert detail["attempts"] == {
        "total": sum(row[2] for row in rows),
        "retried_tasks": sum(row[2] > 1 for row in rows),
        "max": max(row[2] for row in rows),
    }
    errors: dict[str, int] = {}
    for row in rows:
        if row[3] is not None:
            errors[row[3]] = errors.get(row[3], 0) + 1
    assert detail["errors"] == errors
    failed = {row[0] for row in rows if row[1] == "FAILED"}
    assert detail["failed_total"] == len(failed) == len(detail["failed_tasks"])


def add_failed_run(workspace: Path, run_id: str, message: str) -> None:
    with sqlite3.connect(workspace / ".state" / "orchestration.db") as db:
        db.execute(
            "INSERT INTO runs (run_id, status, created_at) VALUES (?, 'FAILED', '2030-01-01T10:00:00Z')", (run_id,)
        )
        db.execute(
            "INSERT INTO tasks (task_id, run_id, tool, status, attempts, error_type, error_message, finished_at) "
            "VALUES (?, ?, 'pytest', 'FAILED', 3, 'exit_code', ?, '2026-11-30T10:05:00Z')",
            (f"{run_id}.t0", run_id, message),
        )
    (workspace / "runs" / run_id / "logs").mkdir(parents=True)
    (workspace / "runs" / run_id / "logs" / f"{run_id}.t0.log").write_text("boom\n")


def test_monitor_names_the_failed_tasks_with_their_messages_and_logs(workspace: Path, cli) -> None:
    add_failed_run(workspace, "bad-1", "tests/test_api.py::test_login FAILED\nTraceback ...")
    document = json.loads(cli("monitor", "--workspace", str(workspace), "--run", "bad-1", "--json").out)
    assert document["failed_tasks"] == [
        {
            "task_id": "bad-1.t0", "workstream_id": None, "name": None, "tool": "pytest", "attempts": 3,
            "error_type": "exit_code", "error_message": "tests/test_api.py::test_login FAILED\nTraceback ...",
            "finished_at": "2026-11-30T10:05:00Z", "log": "runs/bad-1/logs/bad-1.t0.log",
        }
    ]  # fmt: skip
    plain = cli("monitor", "--workspace", str(workspace), "--run", "bad-1").out.splitlines()
    assert "failed\tbad-1.t0\tpytest\tattempts 3\texit_code\ttests/test_api.py::test_login FAILED Traceback ..." \
        "\truns/bad-1/logs/bad-1.t0.log" in plain  # fmt: skip
    table = run_process("monitor", "--workspace", str(workspace), "--run", "bad-1", env={"TTY_COMPATIBLE": "1",
                        "COLUMNS": "200"})  # fmt: skip
    assert "1 failed task" in table.out and "test_login FAILED" in table.out and "exit_code" in table.out


def test_status_filters_sorts_and_limits(simulated: tuple[Path, list[str]], cli) -> None:
    workspace, run_ids = simulated
    add_failed_run(workspace, "bad-1", "boom")

    def listed(*args: str) -> list[str]:
        result = cli("status", "--workspace", str(workspace), *args)
        assert result.code == 0, result.err
        return [line.split("\t")[0] for line in result.out.splitlines()]

    assert listed("--status", "failed,cancelled") == ["sim-3", "bad-1"]
    assert listed("--status", "FAILED", "--status", "RUNNING") == ["sim-0", "sim-1", "sim-2", "bad-1"]
    assert listed("--sort", "newest", "--limit", "2") == ["bad-1", "sim-3"]
    assert listed("--sort", "attention")[:1] == ["bad-1"] and listed("--sort", "attention")[-1] == "sim-3"
    assert listed("--sort", "attention")[1:4] == list(reversed(run_ids[:3]))  # running, newest first
    document = json.loads(cli("status", "--workspace", str(workspace), "--json", "--limit", "1").out)
    assert len(document["runs"]) == 1 and document["hidden"] == len(run_ids)
    refused = run_process("status", "--workspace", str(workspace), "--status", "DONE")
    assert refused.code == 2 and "expected run statuses" in refused.err


def test_plain_output_when_piped_is_one_tab_separated_line_per_run(simulated: tuple[Path, list[str]]) -> None:
    workspace, run_ids = simulated
    result = run_process("status", "--workspace", str(workspace))
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert [line.split("\t")[0] for line in lines] == run_ids
    assert all(line.split("\t")[1] in {"RUNNING", "CANCELLED"} for line in lines)
    assert "15/15 100%" in lines[0]


def test_a_pipe_closed_early_is_not_an_error(simulated: tuple[Path, list[str]]) -> None:
    workspace, _ = simulated
    command = f"{sys.executable} -m orchestrator_monitor.cli status --workspace {workspace} | head -c 1"
    completed = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr


def test_the_workspace_can_come_from_the_environment(simulated: tuple[Path, list[str]]) -> None:
    workspace, run_ids = simulated
    result = run_process("status", env={"ORCHESTRATOR_HOME": str(workspace)})
    assert result.code == 0, result.err
    assert len(result.out.splitlines()) == len(run_ids)


@pytest.mark.parametrize("run_id", ["../x", "/etc/passwd", "a/b", "", ".hidden", "x" * 129, "rün"])
def test_a_malformed_run_id_exits_2_before_any_path_is_built(workspace: Path, cli, run_id: str) -> None:
    result = cli("monitor", "--workspace", str(workspace), "--run", run_id)
    assert result.code == 2
    assert result.err.startswith("orchestrator: error: invalid run id")
    assert result.out == ""


def test_an_unknown_run_exits_2_naming_it(workspace: Path, cli) -> None:
    result = cli("monitor", "--workspace", str(workspace), "--run", "nope-1")
    assert result.code == 2
    assert "unknown run: nope-1" in result.err


def test_bad_configuration_exits_2_naming_the_key(workspace: Path) -> None:
    result = run_process("status", "--workspace", str(workspace), env={"ORCHESTRATOR_DASHBOARD_PORT": "http"})
    assert result.code == 2
    assert "ORCHESTRATOR_DASHBOARD_PORT" in result.err
    assert "Traceback" not in result.err


def test_bad_flags_exit_2(workspace: Path, cli) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli("status", "--workspace", str(workspace), "--no-such-flag")
    assert exit_info.value.code == 2


def test_a_missing_database_exits_3_naming_its_path_and_creates_nothing(tmp_path: Path) -> None:
    result = run_process("status", "--workspace", str(tmp_path))
    assert result.code == 3
    assert f"state database not found: {tmp_path}/.state/orchestration.db" in result.err
    assert "Traceback" not in result.err
    assert list(tmp_path.iterdir()) == []


def test_a_daemon_on_a_mistyped_workspace_exits_3_naming_it_and_creates_nothing(tmp_path: Path) -> None:
    typo = tmp_path / "wrokspace"
    result = run_process("daemon", "--workspace", str(typo), "--set", "dashboard.enabled=false")
    assert (result.code, result.out) == (3, "") and result.err.count("\n") == 1
    assert result.err.startswith(f"orchestrator: error: workspace {typo} does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_process("daemon", "--workspace", str(empty), "--set", "dashboard.enabled=false")
    assert result.code == 3 and result.err.count("\n") == 1 and f"{empty} is not a workspace" in result.err
    assert list(tmp_path.iterdir()) == [empty] and list(empty.iterdir()) == []


def test_a_corrupt_database_exits_3_naming_it(workspace: Path) -> None:
    db = workspace / ".state" / "orchestration.db"
    for leftover in db.parent.iterdir():
        leftover.unlink()
    db.write_bytes(b"this is not a database, just some text that fills a page " * 100)
    result = run_process("status", "--workspace", str(workspace))
    assert result.code == 3
    assert f"state database {db} is corrupt" in result.err
    assert "Traceback" not in result.err


def test_a_database_without_the_schema_exits_3_naming_the_table(tmp_path: Path) -> None:
    db = tmp_path / ".state" / "orchestration.db"
    db.parent.mkdir()
    sqlite3.connect(db).close()
    db.write_bytes(b"")
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE unrelated (x)")
    result = run_process("monitor", "--workspace", str(tmp_path), "--run", "r1")
    assert result.code == 3
    assert "has no table 'runs'" in result.err


def test_a_database_locked_by_a_writer_exits_3_after_the_busy_timeout(simulated: tuple[Path, list[str]]) -> None:
    workspace, _ = simulated
    db = workspace / ".state" / "orchestration.db"
    with lock_held(db, "EXCLUSIVE"):  # even WAL readers are shut out
        result = run_process("status", "--workspace", str(workspace), "--set", "database.busy_timeout_seconds=0.2")
    assert result.code == 3
    assert f"state database {db} is locked" in result.err
    assert "Traceback" not in result.err


def test_reads_work_on_a_read_only_database_and_never_write(simulated: tuple[Path, list[str]]) -> None:
    workspace, run_ids = simulated
    state = workspace / ".state"
    with sqlite3.connect(state / "orchestration.db") as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = {path.name: path.stat().st_mtime_ns for path in state.iterdir()}
    (state / "orchestration.db").chmod(0o444)
    try:
        result = run_process("status", "--workspace", str(workspace), "--json")
    finally:
        (state / "orchestration.db").chmod(0o644)
    assert result.code == 0, result.err
    assert len(json.loads(result.out)["runs"]) == len(run_ids)
    assert (state / "orchestration.db").stat().st_mtime_ns == before["orchestration.db"]


def test_unknown_statuses_and_bad_times_are_warnings_not_failures(workspace: Path, cli) -> None:
    with sqlite3.connect(workspace / ".state" / "orchestration.db") as connection:
        connection.execute("INSERT INTO runs (run_id, status, created_at) VALUES ('odd', 'WEIRD', 'last tuesday')")
        connection.execute("INSERT INTO tasks (task_id, run_id, status) VALUES ('t1', 'odd', 'EXPLODED')")
        connection.execute("INSERT INTO tasks (task_id, run_id, status) VALUES ('t2', 'ghost', 'SUCCEEDED')")
    result = cli("status", "--workspace", str(workspace), "--json")
    assert result.code == 0
    run = json.loads(result.out)["runs"][0]
    assert (run["status"], run["terminal"], run["tasks_terminal"], run["age_seconds"]) == ("WEIRD", False, 0, None)
    assert "status 'WEIRD' is not a known status" in result.err
    assert "task status 'EXPLODED' is not a known status" in result.err
    assert "unreadable created_at 'last tuesday'" in result.err
    assert "tasks reference run 'ghost', which does not exist" in result.err


def test_no_traceback_reaches_the_user_on_an_internal_error(workspace: Path) -> None:
    # A run_dir column is not read by status; a broken table is: drop a column the query needs.
    with sqlite3.connect(workspace / ".state" / "orchestration.db") as connection:
        connection.execute("ALTER TABLE runs DROP COLUMN name")
    result = run_process("status", "--workspace", str(workspace))
    assert result.code == 3
    assert "table runs has no column name" in result.err  # refused before any query, one line
    assert "Traceback" not in result.err


@pytest.mark.postgres
def test_status_and_monitor_read_a_postgresql_database(tmp_path: Path, postgres_url: str, cli) -> None:
    assert cli("init", "--workspace", str(tmp_path), "--set", f"database.url={postgres_url}").code == 0
    engine = create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO runs (run_id, status, created_at) VALUES ('pg-1', 'RUNNING', :t)"),
                           {"t": "2026-11-24 06:00:00"})  # fmt: skip
        for n, status in enumerate(["SUCCEEDED", "FAILED", "RUNNING"]):
            connection.execute(
                text("INSERT INTO tasks (task_id, run_id, tool, status, attempts) VALUES (:id, 'pg-1', 'lint', :s, 1)"),
                {"id": f"t{n}", "s": status},
            )
    engine.dispose()
    url_file = tmp_path / "db.url"
    url_file.write_text(postgres_url + "\n")
    status = cli("status", "--workspace", str(tmp_path), "--json", "--set", f"database.url_file={url_file}")
    assert status.code == 0, status.err
    assert json.loads(status.out)["runs"][0]["tasks_terminal"] == 2
    detail = cli(
        "monitor", "--workspace", str(tmp_path), "--run", "pg-1", "--json", "--set", f"database.url={postgres_url}"
    )
    assert detail.code == 0, detail.err
    assert json.loads(detail.out)["tools"][0]["success_rate"] == 0.5


def test_an_unreachable_postgresql_server_exits_3_without_the_password(tmp_path: Path) -> None:
    url = "postgresql+psycopg://monitor:s3cret@127.0.0.1:1/none?connect_timeout=2"
    result = run_process("status", "--workspace", str(tmp_path), "--set", f"database.url={url}")
    assert result.code == 3
    assert "s3cret" not in result.err
    assert "127.0.0.1:1" in result.err
