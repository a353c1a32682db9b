"""The daemon as a real process, the executor as another: completion end to end, restarts, bad days."""

from __future__ import annotations

import gc
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest
from orchestrator_monitor.detect.rule import final_status
from sqlalchemy import create_engine, text
from support import DaemonProcess, EventLog, Writer, lock_held, run_process

SIMULATE = """
import random, sys
from pathlib import Path
from orchestrator_monitor.demo.simulator import SimulatedExecutor
ws = Path(sys.argv[1]); runs = sys.argv[2].split(",")
ex = SimulatedExecutor(ws / ".state" / "orchestration.db", ws, random.Random(int(sys.argv[3])))
for run_id in runs:
    ex.create_run(run_id, workstreams=2, tasks_per_workstream=3)
ex.step()
if len(sys.argv) > 4:
    ex.cancel_run(sys.argv[4])
while ex.active_runs:
    ex.step()
"""


def simulate(workspace: Path, runs: list[str], seed: int = 5, cancel: str | None = None) -> None:
    """The simulated executor as a separate process: only plain sqlite3 writes reach the database."""
    args = [sys.executable, "-c", SIMULATE, str(workspace), ",".join(runs), str(seed)] + ([cancel] if cancel else [])
    subprocess.run(args, check=True, timeout=60)


def completed_runs(log: EventLog) -> Counter[str]:
    return Counter(event["run_id"] for event in log.events("RUN_COMPLETED"))


def task_counts(writer: Writer, run_id: str) -> dict[str, int]:
    return dict(writer.sql("SELECT status, count(*) FROM tasks WHERE run_id = ? GROUP BY status", (run_id,)))


@pytest.fixture
def daemon(workspace: Path, start_daemon) -> DaemonProcess:
    return start_daemon(workspace)


def test_runs_driven_by_an_executor_process_are_marked_once_each(workspace: Path, daemon: DaemonProcess) -> None:
    runs = ["a", "b", "c", "d"]
    simulate(workspace, runs, cancel="d")
    daemon.log.wait_for(lambda log: set(completed_runs(log)) == set(runs), what="four RUN_COMPLETED")
    writer = Writer(workspace)
    by_run = {e["run_id"]: e for e in daemon.log.events("RUN_COMPLETED")}
    assert by_run["d"]["data"]["marked_by"] == "executor"
    assert by_run["d"]["id"] == "d:RUN_COMPLETED"
    for run_id in "abc":
        expected = final_status(task_counts(writer, run_id))
        assert writer.status(run_id) == expected
        assert by_run[run_id]["data"] == {
            "status": expected,
            "marked_by": "monitor",
            "tasks": task_counts(writer, run_id),
        }
    code, err = daemon.stop()
    assert code == 0, err
    assert completed_runs(daemon.log) == Counter(dict.fromkeys(runs, 1))
    assert daemon.log.read()[-1]["type"] == "MONITOR_STOPPED"


def test_each_branch_of_the_rule_through_the_daemon(workspace: Path, daemon: DaemonProcess) -> None:
    writer = Writer(workspace)
    writer.add_run("all-ok", ["SUCCEEDED", "SKIPPED"])
    writer.add_run("none-ok", ["FAILED", "CANCELLED"])
    writer.add_run("some-ok", ["SUCCEEDED", "FAILED"])
    writer.add_run("ws-open", ["SUCCEEDED"], workstreams=("COMPLETED", "RUNNING"))
    writer.add_run("no-tasks", [])
    writer.add_run("task-open", ["SUCCEEDED", "RUNNING"])
    daemon.log.wait_for(lambda log: len(completed_runs(log)) == 3, what="three runs marked")
    assert {r: writer.status(r) for r in ("all-ok", "none-ok", "some-ok")} == {
        "all-ok": "COMPLETED", "none-ok": "FAILED", "some-ok": "PARTIAL",
    }  # fmt: skip
    assert writer.sql("SELECT finished_at FROM runs WHERE run_id = 'some-ok'") == [("2026-11-24T10:00:01.000000Z",)]
    writer.sql("UPDATE workstreams SET status = 'COMPLETED' WHERE run_id = 'ws-open'")
    writer.sql("UPDATE tasks SET status = 'SUCCEEDED' WHERE run_id = 'task-open'")
    daemon.log.wait_for(lambda log: len(completed_runs(log)) == 5, what="the two later runs marked")
    assert writer.status("no-tasks") == "RUNNING"
    assert "no-tasks" not in completed_runs(daemon.log)


def test_a_restart_mid_way_gives_exactly_one_completion_per_run(workspace: Path, start_daemon) -> None:
    runs = [f"r{n}" for n in range(8)]
    first = start_daemon(workspace)
    simulate(workspace, runs[:4])
    first.log.wait_for(lambda log: len(completed_runs(log)) == 4, what="first four marked")
    assert first.stop()[0] == 0
    simulate(workspace, runs[4:6])  # finished while the daemon is down: left RUNNING, all done
    writer = Writer(workspace)
    writer.add_run("r6", ["FAILED"])
    writer.sql("UPDATE runs SET status = 'CANCELLED' WHERE run_id = 'r6'")  # the executor's own verdict
    second = start_daemon(workspace)
    simulate(workspace, runs[7:])
    second.log.wait_for(lambda log: len(completed_runs(log)) == 8, what="all eight marked")
    assert second.stop()[0] == 0
    assert completed_runs(second.log) == Counter(dict.fromkeys(runs, 1))
    by_run = {e["run_id"]: e["data"]["marked_by"] for e in second.log.events("RUN_COMPLETED")}
    assert (by_run["r5"], by_run["r6"]) == ("monitor", "executor")
    seqs = [line["seq"] for line in second.log.read()]
    assert seqs == sorted(set(seqs)), "seq strictly increasing across the restart"


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(5))
def test_kill_9_never_loses_or_repeats_a_mark(workspace: Path, trial: int, start_daemon) -> None:
    rng = random.Random(trial)
    runs = [f"k{n}" for n in range(12)]
    daemon = start_daemon(workspace)
    executor = subprocess.Popen([sys.executable, "-c", SIMULATE, str(workspace), ",".join(runs), str(trial)])
    daemon.log.wait_for(lambda log: len(completed_runs(log)) >= rng.randint(1, 6), what="some runs marked")
    daemon.kill()
    assert executor.wait(timeout=60) == 0
    again = start_daemon(workspace)
    again.log.wait_for(lambda log: set(completed_runs(log)) == set(runs), what="all runs announced")
    again.log.wait_for(
        lambda log: {e["run_id"] for e in log.events("REPORT_GENERATED")} == set(runs), what="all runs reported"
    )
    assert {e["run_id"] for e in again.log.events("RUN_ARCHIVED")} == set(runs)  # no event lost to the kill
    assert again.stop()[0] == 0
    ids = {e["run_id"]: e["id"] for e in again.log.events("RUN_COMPLETED")}
    assert all(ids[r] == f"{r}:RUN_COMPLETED" for r in runs)  # a repeat after a crash carries the same id
    writer = Writer(workspace)
    for run_id in runs:
        assert writer.status(run_id) == final_status(task_counts(writer, run_id))


def test_first_start_takes_a_baseline(workspace: Path, start_daemon) -> None:
    writer = Writer(workspace)
    for n in range(3):
        writer.add_run(f"old{n}", ["SUCCEEDED"])
        writer.sql("UPDATE runs SET status = 'COMPLETED' WHERE run_id = ?", (f"old{n}",))
    writer.add_run("pending-mark", ["SUCCEEDED"])
    daemon = start_daemon(workspace)
    daemon.log.wait_for(lambda log: "pending-mark" in completed_runs(log), what="the unmarked run marked")
    daemon.stop()
    assert set(completed_runs(daemon.log)) == {"pending-mark"}
    records = sqlite3.connect(workspace / ".monitor" / "monitor.db").execute(
        "SELECT run_id, phase FROM monitor_runs ORDER BY run_id"
    )
    *baseline, (marked, phase) = records.fetchall()
    assert baseline == [("old0", "baseline"), ("old1", "baseline"), ("old2", "baseline")]
    assert marked == "pending-mark" and phase in ("announced", "archived", "reported")  # archival may be done


def test_a_second_daemon_on_the_workspace_exits_3(workspace: Path, daemon: DaemonProcess) -> None:
    result = run_process("daemon", "--workspace", str(workspace))
    assert result.code == 3
    assert "is held by another process" in result.err
    assert str(daemon.process.pid) in result.err


def test_a_missing_database_exits_3(workspace: Path) -> None:
    (workspace / ".state" / "orchestration.db").unlink()  # a workspace whose database is gone
    result = run_process("daemon", "--workspace", str(workspace))
    assert result.code == 3
    assert "state database not found" in result.err


def test_the_database_replaced_under_the_watcher(workspace: Path, daemon: DaemonProcess) -> None:
    writer = Writer(workspace)
    writer.add_run("before", ["SUCCEEDED"])
    daemon.log.wait_for(lambda log: "before" in completed_runs(log))
    db = writer.db
    replacement = db.with_name("replacement.db")
    with closing(sqlite3.connect(db)) as source, closing(sqlite3.connect(replacement)) as target:
        source.backup(target)
        target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file to move into place
        target.execute("INSERT INTO runs (run_id, status) VALUES ('after', 'RUNNING')")
        target.execute("INSERT INTO tasks (task_id, run_id, status) VALUES ('after.t', 'after', 'SUCCEEDED')")
        target.commit()
    for suffix in ("-wal", "-shm"):  # a restore removes the old file's WAL, or SQLite would replay it
        db.with_name(db.name + suffix).unlink()
    os.replace(replacement, db)
    daemon.log.wait_for(lambda log: "after" in completed_runs(log), what="the run of the new file marked")
    assert any(e["data"]["what"] == "database replaced" for e in daemon.log.events("WARNING"))
    assert writer.status("after") == "COMPLETED"


def test_the_database_deleted_and_restored(workspace: Path, daemon: DaemonProcess) -> None:
    db = workspace / ".state" / "orchestration.db"
    saved = workspace / "saved.db"
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copy(db, saved)
    for path in db.parent.iterdir():
        path.unlink()
    daemon.log.wait_for(lambda log: any(e["data"]["what"] == "database missing" for e in log.events("WARNING")))
    assert daemon.process.poll() is None
    shutil.copy(saved, db)
    Writer(workspace).add_run("back", ["FAILED"])
    daemon.log.wait_for(lambda log: "back" in completed_runs(log), what="marking resumed")


def test_a_writer_holding_the_lock_delays_but_does_not_lose_a_mark(workspace: Path, start_daemon) -> None:
    writer = Writer(workspace)
    writer.add_run("held", ["SUCCEEDED"])
    with lock_held(writer.db):  # the executor holds its write lock longer than the busy timeout
        daemon = start_daemon(workspace, "database.busy_timeout_seconds=0.3")
        daemon.log.wait_for(lambda log: any(e["data"]["what"] == "mark deferred" for e in log.events("WARNING")))
        assert writer.status("held") == "RUNNING"
    daemon.log.wait_for(lambda log: "held" in completed_runs(log), what="the deferred mark")
    assert writer.status("held") == "COMPLETED"


def test_run_directory_activity_counts_as_life(workspace: Path, start_daemon) -> None:
    daemon = start_daemon(workspace, "completion.stall_after_seconds=1.0", "completion.poll_seconds=0.05")
    writer = Writer(workspace)
    (workspace / "runs" / "busy").mkdir(parents=True)
    writer.add_run("busy", ["RUNNING"])
    writer.add_run("quiet", ["RUNNING"])
    done = threading.Event()

    def keep_busy() -> None:  # the executor writing a log more often than the stall time
        n = 0
        while not done.wait(0.2):
            (workspace / "runs" / "busy" / "log.txt").write_text(f"line {n}\n")
            n += 1

    thread = threading.Thread(target=keep_busy)
    thread.start()
    try:
        daemon.log.wait_for(lambda log: log.events("RUN_STALLED", "quiet"), what="the quiet run stalls")
        quiet_stalled = time.monotonic()
        daemon.log.wait_for(lambda log: time.monotonic() > quiet_stalled + 1.5, what="another stall period")
        assert not daemon.log.events("RUN_STALLED", "busy")
    finally:
        done.set()
        thread.join()
    daemon.log.wait_for(lambda log: log.events("RUN_STALLED", "busy"), what="busy stalls once it goes quiet")
    assert len(daemon.log.events("RUN_STALLED", "quiet")) == 1
    assert daemon.log.events("RUN_STALLED", "busy")[0]["data"]["idle_s"] >= 1.0


@pytest.mark.postgres
def test_the_daemon_polls_a_postgresql_database(tmp_path: Path, postgres_url: str, start_daemon) -> None:
    assert run_process("init", "--workspace", str(tmp_path), "--set", f"database.url={postgres_url}").code == 0
    daemon = start_daemon(tmp_path, f"database.url={postgres_url}", "completion.poll_seconds=0.1")
    engine = create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO runs (run_id, status) VALUES ('pg', 'RUNNING')"))
        connection.execute(text("INSERT INTO tasks (task_id, run_id, status) VALUES ('pg.t', 'pg', 'SKIPPED')"))
    daemon.log.wait_for(lambda log: "pg" in completed_runs(log), what="the PostgreSQL run marked")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT status FROM runs WHERE run_id = 'pg'")).scalar() == "COMPLETED"
    engine.dispose()
    assert daemon.stop()[0] == 0


def test_sigterm_stops_cleanly_with_monitor_stopped_last(workspace: Path, daemon: DaemonProcess) -> None:
    code, err = daemon.stop(signal.SIGTERM)
    assert code == 0, err
    assert "Traceback" not in err
    assert daemon.log.read()[-1]["type"] == "MONITOR_STOPPED"


def test_an_idle_daemon_writes_nothing(workspace: Path, start_daemon) -> None:
    writer = Writer(workspace)
    writer.add_run("done", ["SUCCEEDED"])
    writer.add_run("open", ["RUNNING"])
    daemon = start_daemon(
        workspace, "completion.poll_seconds=0.02", "completion.reconcile_seconds=0.1", "archive.quiet_seconds=0"
    )
    daemon.log.wait_for(lambda log: log.events("REPORT_GENERATED", "done"), what="the start-up work: mark, archive")
    ledger = sqlite3.connect(workspace / ".monitor" / "monitor.db")
    reported = "SELECT 1 FROM monitor_runs WHERE run_id = 'done' AND phase = 'reported'"
    # The ledger records the report just after its event: the start-up work ends there.
    daemon.log.wait_for(lambda _: ledger.execute(reported).fetchone(), what="the report recorded in the ledger")
    state = sorted(workspace.joinpath(".state").iterdir())
    before = {path: path.stat().st_mtime_ns for path in state}
    runs_before = ledger.execute("SELECT * FROM monitor_runs ORDER BY run_id").fetchall()
    lines_before = len(daemon.log.read())
    started = time.monotonic()
    # Two seconds: a hundred polls and twenty reconciliation periods with nothing to find.
    daemon.log.wait_for(lambda log: time.monotonic() - started > 2.0, what="two idle seconds")
    assert {path: path.stat().st_mtime_ns for path in state} == before
    assert ledger.execute("SELECT * FROM monitor_runs ORDER BY run_id").fetchall() == runs_before
    ledger.close()
    assert all(line["type"] == "HEARTBEAT" for line in daemon.log.read()[lines_before:])


def test_a_write_into_an_archived_run_is_reported(workspace: Path, start_daemon) -> None:
    daemon = start_daemon(workspace, "archive.quiet_seconds=0", "archive.reserve_bytes=0")
    writer = Writer(workspace)
    (workspace / "runs" / "sealed").mkdir(parents=True)
    (workspace / "runs" / "sealed" / "result.txt").write_text("final")
    writer.add_run("sealed", ["SUCCEEDED"])
    daemon.log.wait_for(lambda log: log.events("REPORT_GENERATED", "sealed"), what="archived and reported")
    (workspace / "runs" / "sealed" / "late.txt").write_text("too late")
    daemon.log.wait_for(
        lambda log: any(e["data"]["what"] == "write after archival" for e in log.events("WARNING", "sealed")),
        what="the late write reported",
    )


@pytest.mark.slow
def test_a_retry_that_came_and_went_while_the_daemon_was_stopped_is_reopened_when_it_resumes(
    workspace: Path, start_daemon
) -> None:
    # No periodic full pass in the test's time: only SIGCONT's full comparison can find the retry.
    # Nor archival's own comparison: the run's directory stays "busy" for the quiet window.
    daemon = start_daemon(workspace, "completion.reconcile_seconds=3600", "archive.quiet_seconds=120")
    writer = Writer(workspace)
    (workspace / "runs" / "frozen").mkdir(parents=True)
    (workspace / "runs" / "frozen" / "out.txt").write_text("artifact")
    writer.add_run("frozen", ["SUCCEEDED", "SUCCEEDED"])
    daemon.log.wait_for(lambda log: log.events("RUN_COMPLETED", "frozen"), what="the run marked")
    daemon.process.send_signal(signal.SIGSTOP)
    writer.sql("UPDATE tasks SET status = 'RUNNING', attempts = 2 WHERE task_id = 'frozen.t1'")
    writer.sql("UPDATE tasks SET status = 'SUCCEEDED' WHERE task_id = 'frozen.t1'")  # came and went
    daemon.process.send_signal(signal.SIGCONT)
    daemon.log.wait_for(lambda log: log.events("RUN_REOPENED", "frozen"), what="RUN_REOPENED after the freeze")
    assert daemon.stop()[0] == 0


def test_a_retry_after_the_mark_is_reopened_at_once_and_archived_once_it_ends_again(
    workspace: Path, start_daemon
) -> None:
    # No full reconciliation after the one at start: what reopens the run is the pass its commit wakes.
    # The quiet window keeps archival off the run while the retry lands.
    daemon = start_daemon(workspace, "completion.reconcile_seconds=3600", "archive.quiet_seconds=3")
    writer = Writer(workspace)
    (workspace / "runs" / "retried").mkdir(parents=True)
    (workspace / "runs" / "retried" / "out.txt").write_text("artifact")
    writer.add_run("retried", ["SUCCEEDED", "SUCCEEDED"])
    daemon.log.wait_for(lambda log: log.events("RUN_COMPLETED", "retried"), what="the run marked")
    writer.sql("UPDATE tasks SET status = 'RUNNING', attempts = 2 WHERE task_id = 'retried.t1'")
    daemon.log.wait_for(lambda log: log.events("RUN_REOPENED", "retried"), what="RUN_REOPENED from the cheap pass")
    assert writer.status("retried") == "COMPLETED"  # the mark stays until the run ends again
    writer.sql("UPDATE tasks SET status = 'FAILED' WHERE task_id = 'retried.t1'")  # the retry failed
    daemon.log.wait_for(lambda log: log.events("REPORT_GENERATED", "retried"), what="archived and reported once")
    assert writer.status("retried") == "PARTIAL"
    bag = workspace / ".archive" / "retried"
    assert "Run-Status: PARTIAL\n" in (bag / "bag-info.txt").read_text()
    with closing(sqlite3.connect(bag / "data" / "state" / "run.sqlite3")) as snapshot:
        assert sorted(row[0] for row in snapshot.execute("SELECT status FROM tasks")) == ["FAILED", "SUCCEEDED"]
        assert snapshot.execute("SELECT status FROM runs").fetchall() == [("PARTIAL",)]
    assert daemon.stop()[0] == 0
    counts = Counter(e["type"] for e in daemon.log.read() if e.get("run_id") == "retried")
    assert [counts[t] for t in ("RUN_COMPLETED", "RUN_REOPENED", "RUN_ARCHIVED", "REPORT_GENERATED")] == [1, 1, 1, 1]
    changes = [e["data"] for e in daemon.log.events("RUN_STATUS_CHANGED", "retried")]
    assert changes[-1] == {"from": "COMPLETED", "to": "PARTIAL"}


@pytest.mark.parametrize("run_dir", ["/etc", "../../etc"])
def test_a_run_dir_outside_the_workspace_is_said_once_and_shown_in_status(
    workspace: Path, start_daemon, cli, run_dir: str
) -> None:
    daemon = start_daemon(workspace, "archive.quiet_seconds=0", "dashboard.enabled=false")
    writer = Writer(workspace)
    writer.sql("INSERT INTO runs (run_id, status, run_dir) VALUES ('escape', 'RUNNING', ?)", (run_dir,))
    writer.sql("INSERT INTO tasks (task_id, run_id, status) VALUES ('escape.t', 'escape', 'SUCCEEDED')")  # marked
    daemon.log.wait_for(lambda log: log.events("ARCHIVE_FAILED", "escape"), what="ARCHIVE_FAILED")
    daemon.stop()
    daemon = start_daemon(workspace, "archive.quiet_seconds=0", "dashboard.enabled=false")  # resumes the run
    writer.add_run("after", ["SUCCEEDED"])  # archival went on past it
    daemon.log.wait_for(lambda log: log.events("REPORT_GENERATED", "after"), what="the next run archived")
    daemon.stop()
    failed = daemon.log.events("ARCHIVE_FAILED", "escape")
    assert [e["data"]["reason"] for e in failed] == ["unsafe_run_dir"]  # once, across the restart
    assert run_dir in failed[0]["data"]["detail"]
    assert not (workspace / ".archive" / "escape").exists()
    rows = writer.sql("SELECT status, error FROM archival_log WHERE run_id = 'escape'")
    assert [status for status, _ in rows] == ["FAILED"] and "unsafe_run_dir" in rows[0][1]
    status = cli("status", "--workspace", str(workspace))
    assert f"run escape: run_dir '{run_dir}' leaves the workspace: the run is never archived" in status.err


def test_what_start_up_built_is_left_out_of_later_collections(workspace: Path) -> None:
    from orchestrator_monitor.config import load_settings
    from orchestrator_monitor.service.daemon import run_daemon

    settings = load_settings(workspace, environ={}, overrides=["events.sinks="])
    stop = threading.Event()
    frozen: list[int] = []

    def ready() -> None:
        frozen.append(gc.get_freeze_count())
        stop.set()

    switch = sys.getswitchinterval()
    gc.unfreeze()
    try:
        run_daemon(settings, stop, on_ready=ready)
    finally:
        gc.unfreeze()  # this test process is no daemon
        sys.setswitchinterval(switch)
    assert frozen and frozen[0] > 10_000
