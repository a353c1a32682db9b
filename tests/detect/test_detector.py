"""Detection passes against a real SQLite file written by another connection, as the executor would."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from orchestrator_monitor.demo.simulator import SimulatedExecutor
from orchestrator_monitor.detect import completions
from orchestrator_monitor.detect.completions import CHEAP_WATCH_SECONDS, REOPEN_WATCH_SECONDS
from orchestrator_monitor.detect.detector import LATE_WRITE_WATCH_SECONDS, Detector
from orchestrator_monitor.detect.rule import final_status
from orchestrator_monitor.events.types import EventType
from orchestrator_monitor.ledger.runs import Ledger
from orchestrator_monitor.ledger.store import sqlite_store
from orchestrator_monitor.state.engine import open_engine
from sqlalchemy import Connection, event
from support import lock_held, reference_tables

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[EventType, str | None, dict[str, Any]]] = []

    def __call__(self, type: EventType, data: dict[str, Any], *, run_id: str | None = None) -> None:
        self.events.append((type, run_id, data))

    def of(self, type: EventType) -> list[tuple[str | None, dict[str, Any]]]:
        return [(run_id, data) for t, run_id, data in self.events if t is type]


class Handoff:
    def __init__(self) -> None:
        self.runs: list[str] = []

    def completed(self, run_id: str) -> None:
        self.runs.append(run_id)


class Harness:
    """A detector on a workspace, restartable: `restart()` builds a new one on the same files."""

    def __init__(self, workspace: Path, settle: float = 0.0) -> None:
        self.workspace = workspace
        self.db = workspace / ".state" / "orchestration.db"
        self.settle = settle
        self.recorder = Recorder()
        self.handoff = Handoff()
        self.now = NOW  # the wall clock of the detector's passes and of the ledger: NOW + the pass's mono
        self._start()

    def _start(self) -> None:
        self.engine = open_engine(f"sqlite:///{self.db}", busy_timeout_seconds=0.2, readonly=False)
        self.connection: Connection = self.engine.connect()
        self.store = sqlite_store(self.workspace / ".monitor" / "monitor.db", busy_timeout_seconds=1)
        self.ledger = Ledger(self.store, clock=lambda: self.now)
        self.detector = Detector(
            ledger=self.ledger,
            publish=self.recorder,
            flush=lambda: None,
            handoff=self.handoff,
            settle_seconds=self.settle,
            stall_after_seconds=100,
            connection=lambda: self.connection,
            tables=reference_tables(),
        )
        self.detector.start()

    def stop(self) -> None:
        self.connection.close()
        self.engine.dispose()
        self.store.dispose()

    def restart(self) -> None:
        self.stop()
        self._start()

    def reconcile(self, mono: float = 0.0) -> None:
        self.now = NOW + timedelta(seconds=mono)
        self.detector.run_reconcile_iteration(now=self.now, mono=mono)

    def detect(self, mono: float = 0.0, touched: frozenset[str] | None = None) -> float | None:
        self.now = NOW + timedelta(seconds=mono)
        return self.detector.run_detect_iteration(now=self.now, mono=mono, touched=touched)

    def sql(self, statement: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db, isolation_level=None) as connection:
            return connection.execute(statement, params).fetchall()

    def status(self, run_id: str) -> str:
        return self.sql("SELECT status FROM runs WHERE run_id = ?", (run_id,))[0][0]


@pytest.fixture
def harness(workspace: Path) -> Iterator[Harness]:
    h = Harness(workspace)
    yield h
    h.stop()


def executor(workspace: Path, seed: int = 1) -> SimulatedExecutor:
    return SimulatedExecutor(workspace / ".state" / "orchestration.db", workspace, random.Random(seed))


def add_run(h: Harness, run_id: str, tasks: list[str], workstreams: list[str] | None = None) -> None:
    h.sql("INSERT INTO runs (run_id, status) VALUES (?, 'RUNNING')", (run_id,))
    for n, status in enumerate(tasks):
        h.sql(
            "INSERT INTO tasks (task_id, run_id, workstream_id, status, finished_at) VALUES (?, ?, ?, ?, ?)",
            (f"{run_id}.t{n}", run_id, f"{run_id}.w", status, f"2026-11-24 10:00:{n:02d}"),
        )
    for n, status in enumerate(workstreams or ["COMPLETED"]):
        h.sql(
            "INSERT INTO workstreams (workstream_id, run_id, status) VALUES (?, ?, ?)",
            (f"{run_id}.w{n}", run_id, status),
        )


def test_simulated_runs_are_marked_by_the_rule_exactly_once(harness: Harness) -> None:
    harness.reconcile()
    sim = executor(harness.workspace)
    for run_id in ("a", "b", "c", "d"):
        sim.create_run(run_id)
    sim.step()
    harness.detect()
    sim.cancel_run("d")
    while sim.active_runs:
        sim.step()
        harness.detect()
    harness.detect()
    harness.reconcile()
    completed = dict(harness.recorder.of(EventType.RUN_COMPLETED))
    assert sorted(completed) == ["a", "b", "c", "d"]
    assert completed["d"] == {"status": "CANCELLED", "marked_by": "executor", "tasks": {"CANCELLED": 12}}
    for run_id in "abc":
        counts = dict(harness.sql("SELECT status, count(*) FROM tasks WHERE run_id = ? GROUP BY status", (run_id,)))
        assert completed[run_id] == {"status": final_status(counts), "marked_by": "monitor", "tasks": counts}
        assert harness.status(run_id) == final_status(counts)
        latest = harness.sql("SELECT max(finished_at) FROM tasks WHERE run_id = ?", (run_id,))[0][0]
        assert harness.sql("SELECT finished_at FROM runs WHERE run_id = ?", (run_id,))[0][0] == latest.replace(
            "Z", "000Z"
        )
    assert harness.handoff.runs == sorted(harness.handoff.runs, key=list(completed).index)
    assert sorted(harness.handoff.runs) == ["a", "b", "c", "d"]
    changes = harness.recorder.of(EventType.RUN_STATUS_CHANGED)
    assert ("a", {"from": "RUNNING", "to": completed["a"]["status"]}) in changes
    assert ("d", {"from": "RUNNING", "to": "CANCELLED"}) in changes


def test_a_workstream_still_running_keeps_the_run_open(harness: Harness) -> None:
    harness.reconcile()
    add_run(harness, "w", ["SUCCEEDED", "SUCCEEDED"], ["COMPLETED", "RUNNING"])
    harness.detect()
    assert harness.status("w") == "RUNNING"
    harness.sql("UPDATE workstreams SET status = 'COMPLETED' WHERE run_id = 'w'")
    harness.detect()
    assert harness.status("w") == "COMPLETED"


def test_a_run_with_no_tasks_is_never_marked(harness: Harness) -> None:
    harness.reconcile()
    harness.sql("INSERT INTO runs (run_id, status) VALUES ('empty', 'RUNNING')")
    harness.detect()
    harness.reconcile()
    assert harness.status("empty") == "RUNNING"
    assert harness.recorder.of(EventType.RUN_COMPLETED) == []


def test_a_failed_task_retried_within_the_settle_window_keeps_the_run_open(workspace: Path) -> None:
    h = Harness(workspace, settle=5.0)
    try:
        h.reconcile(mono=0)
        add_run(h, "r", ["SUCCEEDED", "FAILED"])
        assert h.detect(mono=1.0) == 6.0  # settling: look again at 1 + 5
        h.sql("UPDATE tasks SET status = 'RUNNING', attempts = 2 WHERE task_id = 'r.t1'")  # the retry
        assert h.detect(mono=3.0) is None
        h.sql("UPDATE tasks SET status = 'SUCCEEDED' WHERE task_id = 'r.t1'")
        assert h.detect(mono=4.0) == 9.0
        assert h.status("r") == "RUNNING"
        h.detect(mono=9.0)
        assert h.status("r") == "COMPLETED"
        assert h.recorder.of(EventType.RUN_COMPLETED) == [
            ("r", {"status": "COMPLETED", "marked_by": "monitor", "tasks": {"SUCCEEDED": 2}})
        ]
    finally:
        h.stop()


def test_a_retry_that_came_and_went_across_a_restart_is_still_reopened(harness: Harness) -> None:
    harness.reconcile()
    add_run(harness, "r", ["SUCCEEDED", "SUCCEEDED"])
    harness.detect()
    harness.ledger.archived("r", "COMPLETED")  # archival took it, then the daemon was killed
    harness.restart()  # found by bench/chaos.py: the watch for late changes lived in memory only
    harness.sql("UPDATE tasks SET status = 'SUCCEEDED', attempts = 2 WHERE task_id = 'r.t1'")  # retried, done again
    harness.reconcile()
    assert [run_id for run_id, _ in harness.recorder.of(EventType.RUN_REOPENED)] == ["r"]
    harness.restart()
    harness.reconcile()
    assert len(harness.recorder.of(EventType.RUN_REOPENED)) == 1  # once, also after another restart


def test_the_full_comparison_reads_the_hour_in_batches_and_misses_no_run(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger's hour and its snapshots are read a batch at a time (a flat memory peak, however many runs
    ended in the hour): a retry in any batch is still found."""
    monkeypatch.setattr(completions, "COMPARE_BATCH", 2)
    harness.reconcile()
    for n in range(5):
        add_run(harness, f"r{n}", ["SUCCEEDED", "SUCCEEDED"])
    harness.detect()
    for n in range(5):
        harness.ledger.archived(f"r{n}", "COMPLETED")
    harness.restart()  # the cheap watch is gone: only the full comparison can see it
    held: list[int] = []
    read = harness.ledger.recent_fingerprints

    def counted(since: str, batch: int) -> Iterator[dict[str, tuple[str, str]]]:
        for decided in read(since, batch):
            held.append(len(decided))
            yield decided

    monkeypatch.setattr(harness.ledger, "recent_fingerprints", counted)
    harness.sql("UPDATE tasks SET attempts = 2 WHERE run_id IN ('r0', 'r4') AND task_id LIKE '%.t1'")
    harness.reconcile()
    assert sorted(run_id for run_id, _ in harness.recorder.of(EventType.RUN_REOPENED)) == ["r0", "r4"]
    assert held == [2, 2, 1]  # read whole, the hour's 10,000 runs (at three a second) made each pass's peak


def test_a_change_after_the_mark_gives_one_run_reopened(harness: Harness) -> None:
    harness.reconcile()
    add_run(harness, "r", ["SUCCEEDED"])
    add_run(harness, "s", ["FAILED"])
    harness.detect()
    harness.sql("UPDATE tasks SET status = 'RUNNING' WHERE run_id = 'r'")  # a late retry after the mark
    harness.sql("UPDATE runs SET status = 'RUNNING' WHERE run_id = 's'")  # the executor reopens it
    for _ in range(3):
        harness.detect()
        harness.reconcile()
    reopened = harness.recorder.of(EventType.RUN_REOPENED)
    assert sorted(run_id for run_id, _ in reopened) == ["r", "s"]
    assert len(harness.recorder.of(EventType.RUN_COMPLETED)) == 2
    assert harness.handoff.runs == ["r", "s"]  # not handed to archival again
    assert harness.status("s") == "RUNNING"  # nor marked again: the executor reopened it, it owns it now


def test_first_start_takes_a_baseline_and_leaves_finished_runs_alone(workspace: Path) -> None:
    h = Harness(workspace)
    h.stop()
    for path in (workspace / ".monitor").glob("monitor.db*"):
        path.unlink()  # as if the monitor had never started here
    add_run(h, "old", ["SUCCEEDED"])
    h.sql("UPDATE runs SET status = 'COMPLETED' WHERE run_id = 'old'")
    add_run(h, "done-not-marked", ["SUCCEEDED"])
    h._start()
    try:
        h.reconcile()
        h.detect()
        assert [run_id for run_id, _ in h.recorder.of(EventType.RUN_COMPLETED)] == ["done-not-marked"]
        assert h.handoff.runs == ["done-not-marked"]
        h.restart()
        h.reconcile()
        h.detect()
        assert len(h.recorder.of(EventType.RUN_COMPLETED)) == 1
    finally:
        h.stop()


def test_runs_finished_while_down_are_completed_at_start_and_nothing_repeats(harness: Harness) -> None:
    harness.reconcile()
    add_run(harness, "before", ["SUCCEEDED"])
    harness.detect()
    harness.stop()
    add_run(harness, "marked-by-nobody", ["SUCCEEDED", "FAILED"])
    add_run(harness, "executor-set", ["FAILED"])
    harness.sql("UPDATE runs SET status = 'FAILED' WHERE run_id = 'executor-set'")
    harness._start()
    harness.reconcile()
    harness.detect()
    completed = harness.recorder.of(EventType.RUN_COMPLETED)
    assert [run_id for run_id, _ in completed] == ["before", "executor-set", "marked-by-nobody"]
    assert dict(completed)["executor-set"]["marked_by"] == "executor"
    assert dict(completed)["marked-by-nobody"]["status"] == "PARTIAL"


def test_a_crash_after_the_mark_before_the_record_is_recognised_as_our_mark(harness: Harness) -> None:
    harness.reconcile()
    add_run(harness, "r", ["SUCCEEDED"])
    harness.ledger.begin_marks({"r": "COMPLETED"})  # the intent was recorded...
    harness.sql("UPDATE runs SET status = 'COMPLETED' WHERE run_id = 'r'")  # ...the mark landed, then a crash
    add_run(harness, "q", ["FAILED"])
    harness.ledger.begin_marks({"q": "FAILED"})  # an intent whose mark never landed
    harness.restart()
    harness.reconcile()
    harness.detect()
    completed = dict(harness.recorder.of(EventType.RUN_COMPLETED))
    assert completed["r"]["marked_by"] == "monitor"
    assert completed["q"] == {"status": "FAILED", "marked_by": "monitor", "tasks": {"FAILED": 1}}
    assert len(harness.recorder.of(EventType.RUN_COMPLETED)) == 2


def test_unknown_statuses_and_orphans_are_warned_once_and_count_as_open(harness: Harness) -> None:
    harness.reconcile()
    add_run(harness, "odd", ["SUCCEEDED", "EXPLODED"])
    harness.sql("INSERT INTO tasks (task_id, run_id, status) VALUES ('orphan', 'ghost', 'SUCCEEDED')")
    harness.sql("INSERT INTO runs (run_id, status) VALUES ('weird', 'ON_HOLD')")
    for _ in range(3):
        harness.detect()
        harness.reconcile()
    warnings = [data["detail"] for _, data in harness.recorder.of(EventType.WARNING)]
    assert len(warnings) == 3, warnings
    assert any("'EXPLODED'" in w for w in warnings)
    assert any("'ghost'" in w for w in warnings)
    assert any("'ON_HOLD'" in w for w in warnings)
    assert harness.status("odd") == "RUNNING"


def test_a_writer_holding_the_lock_defers_the_mark_which_lands_afterwards(harness: Harness) -> None:
    harness.reconcile()
    add_run(harness, "r", ["SUCCEEDED"])
    with lock_held(harness.db):
        assert harness.detect(mono=0) == 1.0  # deferred, recheck soon
        assert harness.status("r") == "RUNNING"
    harness.detect(mono=1.0)
    assert harness.status("r") == "COMPLETED"
    assert [data["what"] for _, data in harness.recorder.of(EventType.WARNING)] == ["mark deferred"]
    assert len(harness.recorder.of(EventType.RUN_COMPLETED)) == 1


def test_stalls_are_reported_once_until_the_run_moves(workspace: Path) -> None:
    h = Harness(workspace)
    try:
        h.reconcile(mono=0)
        add_run(h, "slow", ["RUNNING"])
        h.detect(mono=1)
        h.detector.check_stalls(mono=50)
        h.detector.check_stalls(mono=101)
        h.detector.check_stalls(mono=150)
        assert h.recorder.of(EventType.RUN_STALLED) == [("slow", {"idle_s": 100.0})]
        h.detector.note_activity(["slow"], mono=160)
        h.detector.check_stalls(mono=200)
        assert len(h.recorder.of(EventType.RUN_STALLED)) == 1
        h.detector.check_stalls(mono=261)
        assert len(h.recorder.of(EventType.RUN_STALLED)) == 2
    finally:
        h.stop()


def test_hostile_run_ids_in_the_database_are_ignored_with_one_warning(harness: Harness) -> None:
    harness.reconcile()
    add_run(harness, "../escape", ["SUCCEEDED"])
    add_run(harness, "fine", ["SUCCEEDED"])
    for _ in range(2):
        harness.detect()
        harness.reconcile()
    assert [run_id for run_id, _ in harness.recorder.of(EventType.RUN_COMPLETED)] == ["fine"]
    assert harness.status("../escape") == "RUNNING"
    warnings = harness.recorder.of(EventType.WARNING)
    assert [(run_id, data["what"]) for run_id, data in warnings] == [(None, "invalid run id")]


def test_rows_of_runs_completed_long_ago_are_not_re_read(harness: Harness) -> None:
    harness.reconcile(mono=0)
    add_run(harness, "old", ["SUCCEEDED"])
    harness.detect(mono=0)
    harness.sql("UPDATE tasks SET attempts = 2 WHERE run_id = 'old'")  # a late rewrite, an hour on
    harness.reconcile(mono=REOPEN_WATCH_SECONDS + 1)
    assert harness.recorder.of(EventType.RUN_REOPENED) == []  # past the window: archival has sealed it
    harness.sql("UPDATE runs SET status = 'RUNNING' WHERE run_id = 'old'")
    harness.reconcile(mono=REOPEN_WATCH_SECONDS + 2)
    assert [run_id for run_id, _ in harness.recorder.of(EventType.RUN_REOPENED)] == ["old"]  # status: always seen


def test_a_change_within_the_hour_is_found_from_the_ledger_once_the_record_left_memory(harness: Harness) -> None:
    """Past the cheap window a finished run's record leaves memory (at three runs a second an hour of them
    was most of the daemon's growth); the full comparison reads it back from the ledger by time."""
    harness.reconcile(mono=0)
    add_run(harness, "r", ["SUCCEEDED"])
    harness.detect(mono=0)
    harness.reconcile(mono=CHEAP_WATCH_SECONDS + 1)
    assert not harness.detector._completions.known("r")  # type: ignore[attr-defined]
    harness.sql("UPDATE tasks SET attempts = 2 WHERE run_id = 'r'")  # a rewrite half an hour on
    harness.reconcile(mono=REOPEN_WATCH_SECONDS / 2)
    reopened = harness.recorder.of(EventType.RUN_REOPENED)
    assert [(run_id, data["what"]) for run_id, data in reopened] == [
        ("r", "tasks or workstreams changed after the run was marked")
    ]
    assert harness.ledger.phase("r") == "reopened"


def test_a_run_ended_again_waits_once_more_for_its_end_when_it_changes_before_its_bag(harness: Harness) -> None:
    harness.reconcile(mono=0)
    add_run(harness, "r", ["SUCCEEDED"])
    harness.detect(mono=0)
    harness.sql("UPDATE tasks SET status = 'RUNNING' WHERE run_id = 'r'")  # a retry
    harness.detect(mono=1)
    harness.sql("UPDATE tasks SET status = 'SUCCEEDED' WHERE run_id = 'r'")
    harness.detect(mono=2)
    assert harness.ledger.phase("r") == "announced"  # ended again, handed to archival
    harness.sql("UPDATE tasks SET attempts = 3 WHERE run_id = 'r'")  # and rewritten before its bag
    harness.reconcile(mono=CHEAP_WATCH_SECONDS + 10)
    assert harness.ledger.phase("r") == "reopened"  # its bag waits for the new end: it would contradict the rows
    assert len(harness.recorder.of(EventType.RUN_REOPENED)) == 1  # said once per run


def test_a_run_directory_is_watched_until_a_while_after_its_bag(harness: Harness) -> None:
    harness.reconcile(mono=0)
    add_run(harness, "archived", ["SUCCEEDED"])
    add_run(harness, "waiting", ["SUCCEEDED"])
    harness.detect(mono=1)
    assert harness.ledger.archived("archived", "COMPLETED")
    harness.detector.seal_archived(mono=2, now=True)
    assert harness.detector.watched_run_dirs() == {"archived": None, "waiting": None}
    harness.detector.seal_archived(mono=2 + LATE_WRITE_WATCH_SECONDS + 1, now=True)
    assert harness.detector.watched_run_dirs() == {"waiting": None}  # no bag yet: a write is not late
    harness.detector.note_activity(["archived"], mono=2 + LATE_WRITE_WATCH_SECONDS + 2)
    assert harness.recorder.of(EventType.WARNING) == []
    harness.detector.seal_archived(mono=1 + REOPEN_WATCH_SECONDS + 1, now=True)
    assert harness.detector.watched_run_dirs() == {}


def test_a_write_into_an_archived_run_directory_is_reported_once(harness: Harness) -> None:
    harness.reconcile(mono=0)
    add_run(harness, "r", ["SUCCEEDED"])
    harness.detect(mono=1)
    # Watched from its completion on: a write after its bag is late even before this loop hears of the bag.
    assert harness.detector.watched_run_dirs() == {"r": None}
    harness.detector.note_activity(["r"], mono=2)  # no bag yet (the executor still flushing): not a warning
    assert harness.ledger.archived("r", "COMPLETED")  # what the archive worker records
    harness.detector.seal_archived(mono=3)
    assert harness.detector.watched_run_dirs() == {"r": None}
    harness.detector.note_activity(["r"], mono=4)
    harness.detector.note_activity(["r"], mono=5)
    warnings = harness.recorder.of(EventType.WARNING)
    assert [(run_id, data["what"]) for run_id, data in warnings] == [("r", "write after archival")]
    assert harness.detector.watched_run_dirs() == {}


def test_a_run_is_recorded_announced_only_after_its_event_was_written(workspace: Path) -> None:
    h = Harness(workspace)
    phases_at_flush: list[str | None] = []
    h.detector._completions._flush = lambda: phases_at_flush.append(h.ledger.phase("r"))  # type: ignore[attr-defined]
    try:
        h.reconcile()
        add_run(h, "r", ["SUCCEEDED"])
        h.detect()
        assert phases_at_flush == ["completed"]  # the log was flushed while the ledger still said "completed"
        assert h.ledger.phase("r") == "announced"
        assert h.handoff.runs == ["r"]
    finally:
        h.stop()


def test_statuses_and_times_stored_as_blobs_are_warnings_not_crashes(harness: Harness, cli) -> None:
    harness.reconcile()
    add_run(harness, "blob", ["SUCCEEDED", "SUCCEEDED"])
    harness.sql("UPDATE tasks SET status = X'00ff' WHERE task_id = 'blob.t1'")
    harness.sql("UPDATE runs SET created_at = X'00ff', name = X'01' WHERE run_id = 'blob'")
    harness.detect()
    harness.reconcile()
    assert harness.status("blob") == "RUNNING"  # a task in an unknown status: not terminal
    assert any("x00" in data["detail"] for _, data in harness.recorder.of(EventType.WARNING))
    result = cli("status", "--workspace", str(harness.workspace), "--json")
    assert result.code == 0, result.err
    detail = cli("monitor", "--workspace", str(harness.workspace), "--run", "blob", "--json")
    assert detail.code == 0, detail.err


def test_a_followed_run_deleted_is_warned_once_and_one_finished_is_not(harness: Harness) -> None:
    add_run(harness, "gone", ["RUNNING"])
    add_run(harness, "done", ["RUNNING"])
    harness.reconcile()  # both followed as open
    for table in ("tasks", "workstreams", "runs"):
        harness.sql(f"DELETE FROM {table} WHERE run_id = 'gone'")
    harness.sql("UPDATE tasks SET status = 'SUCCEEDED' WHERE run_id = 'done'")
    harness.sql("UPDATE runs SET status = 'COMPLETED' WHERE run_id = 'done'")
    for mono in (1.0, 2.0):
        harness.reconcile(mono=mono)
    warnings = [data for _, data in harness.recorder.of(EventType.WARNING)]
    assert [(w["what"], "'gone'" in w["detail"] or " gone " in w["detail"]) for w in warnings] == [
        ("run deleted", True)
    ]
    assert [run_id for run_id, _ in harness.recorder.of(EventType.RUN_COMPLETED)] == ["done"]


def test_a_retry_after_the_mark_is_reopened_by_the_first_cheap_pass_after_its_commit(harness: Harness) -> None:
    harness.reconcile()
    add_run(harness, "task", ["SUCCEEDED", "FAILED"])
    add_run(harness, "stream", ["SUCCEEDED"])
    harness.detect(mono=1)
    assert harness.status("task") == "PARTIAL" and harness.status("stream") == "COMPLETED"
    harness.sql("UPDATE tasks SET status = 'RUNNING', attempts = 2 WHERE task_id = 'task.t1'")  # the retry
    harness.sql("UPDATE workstreams SET status = 'RUNNING' WHERE run_id = 'stream'")
    harness.detect(mono=2)  # the wake-up of that commit: no reconciliation in between
    reopened = harness.recorder.of(EventType.RUN_REOPENED)
    assert sorted(run_id for run_id, _ in reopened) == ["stream", "task"]
    assert all("open again" in data["what"] for _, data in reopened)
    assert {harness.ledger.phase("task"), harness.ledger.phase("stream")} == {"reopened"}
    for mono in (3, 4):
        harness.detect(mono=mono)
        harness.reconcile(mono=mono)
    assert len(harness.recorder.of(EventType.RUN_REOPENED)) == 2  # once per run
    assert harness.handoff.runs == ["task", "stream"]  # not handed over again while it runs


def test_a_reopened_run_is_decided_again_and_handed_over_again_when_it_ends(harness: Harness) -> None:
    harness.reconcile()
    add_run(harness, "r", ["SUCCEEDED", "SUCCEEDED"])
    harness.detect(mono=1)
    harness.sql("UPDATE tasks SET status = 'RUNNING', attempts = 2 WHERE task_id = 'r.t1'")
    harness.detect(mono=2)
    harness.sql("UPDATE tasks SET status = 'FAILED' WHERE task_id = 'r.t1'")  # the retry failed
    harness.detect(mono=3)
    assert harness.status("r") == "PARTIAL"  # our mark said COMPLETED: written anew, compare-and-set
    assert harness.recorder.of(EventType.RUN_STATUS_CHANGED)[-1] == ("r", {"from": "COMPLETED", "to": "PARTIAL"})
    assert (
        len(harness.recorder.of(EventType.RUN_COMPLETED)) == 1 and len(harness.recorder.of(EventType.RUN_REOPENED)) == 1
    )
    assert harness.handoff.runs == ["r", "r"]
    record = harness.ledger.record("r")
    assert record is not None and (record.phase, record.status, record.marked_by) == ("announced", "PARTIAL", "monitor")
    assert record.tasks == {"FAILED": 1, "SUCCEEDED": 1} and record.reopened
    harness.restart()  # a restart knows it is done
    harness.reconcile(mono=4)
    harness.detect(mono=4)
    assert harness.handoff.runs == ["r", "r"] and len(harness.recorder.of(EventType.RUN_REOPENED)) == 1


def test_a_run_the_executor_ended_is_taken_as_it_is_when_it_ends_again(harness: Harness) -> None:
    harness.reconcile()
    add_run(harness, "x", ["CANCELLED", "SUCCEEDED"])
    harness.sql("UPDATE runs SET status = 'CANCELLED' WHERE run_id = 'x'")
    harness.detect(mono=1)
    harness.sql("UPDATE tasks SET status = 'RUNNING' WHERE task_id = 'x.t0'")
    harness.detect(mono=2)
    harness.sql("UPDATE tasks SET status = 'FAILED' WHERE task_id = 'x.t0'")
    harness.detect(mono=3)
    assert harness.status("x") == "CANCELLED"  # never the monitor's to rewrite
    record = harness.ledger.record("x")
    assert record is not None and (record.phase, record.status, record.marked_by) == (
        "announced",
        "CANCELLED",
        "executor",
    )
    assert harness.handoff.runs == ["x", "x"]


def test_a_reopened_run_waits_for_the_settle_window_before_it_is_decided_again(workspace: Path) -> None:
    h = Harness(workspace, settle=5.0)
    try:
        h.reconcile(mono=0)
        add_run(h, "r", ["SUCCEEDED"])
        assert h.detect(mono=1) == 6.0
        h.detect(mono=6)
        h.sql("UPDATE tasks SET status = 'RUNNING' WHERE run_id = 'r'")
        h.detect(mono=7)
        h.sql("UPDATE tasks SET status = 'FAILED' WHERE run_id = 'r'")
        assert h.detect(mono=8) == 13.0  # ended again at 8: settled at 8 + 5
        assert h.status("r") == "COMPLETED" and h.handoff.runs == ["r"]
        h.detect(mono=13)
        assert h.status("r") == "FAILED" and h.handoff.runs == ["r", "r"]
    finally:
        h.stop()


def test_a_retry_that_came_and_went_between_two_passes_is_found_by_the_reconciliation(harness: Harness) -> None:
    harness.reconcile()
    add_run(harness, "r", ["FAILED"])
    harness.detect(mono=1)
    harness.sql("UPDATE tasks SET status = 'SUCCEEDED', attempts = 2 WHERE run_id = 'r'")  # RUNNING never seen
    harness.detect(mono=2)
    assert harness.recorder.of(EventType.RUN_REOPENED) == []  # the cheap pass seeks open rows only
    harness.reconcile(mono=3)
    harness.detect(mono=3)  # the job runs a cheap pass right after each reconciliation
    assert [run_id for run_id, _ in harness.recorder.of(EventType.RUN_REOPENED)] == ["r"]
    assert harness.status("r") == "COMPLETED" and harness.handoff.runs == ["r", "r"]


def test_a_reopening_archival_saw_first_is_not_announced_again(harness: Harness) -> None:
    harness.reconcile()
    add_run(harness, "r", ["SUCCEEDED"])
    harness.detect(mono=1)
    record = harness.ledger.record("r")
    assert record is not None and record.fingerprint is not None
    harness.sql("UPDATE tasks SET status = 'RUNNING', attempts = 2 WHERE run_id = 'r'")
    assert harness.ledger.reopen("r", decided_on=record.fingerprint) == (True, "reopened")  # archival: it publishes
    harness.detector.seal_archived(mono=2)  # the detector asks the ledger about runs waiting for their bag
    harness.detect(mono=2)
    harness.reconcile(mono=3)
    assert harness.recorder.of(EventType.RUN_REOPENED) == []  # archival's event was the one
    harness.sql("UPDATE tasks SET status = 'SUCCEEDED' WHERE run_id = 'r'")
    harness.detect(mono=4)
    assert harness.handoff.runs == ["r", "r"]
    assert harness.ledger.reopen("r", decided_on=record.fingerprint) == (False, None)  # a stale archival: no effect
    assert harness.ledger.phase("r") == "announced"


def test_a_pass_given_the_runs_a_notification_named_reads_and_marks_only_those(harness: Harness) -> None:
    add_run(harness, "a", ["SUCCEEDED", "RUNNING"])
    add_run(harness, "b", ["SUCCEEDED", "RUNNING"])
    harness.reconcile()
    harness.sql("UPDATE tasks SET status = 'SUCCEEDED'")
    harness.detect(mono=1, touched=frozenset({"a"}))
    assert (harness.status("a"), harness.status("b")) == ("COMPLETED", "RUNNING")
    harness.detect(mono=2, touched=frozenset())
    assert harness.status("b") == "RUNNING"
    harness.sql("UPDATE tasks SET status = 'RUNNING', attempts = 2 WHERE task_id = 'a.t1'")  # a retry after the mark
    harness.detect(mono=3, touched=frozenset({"b"}))  # b's notification: a's retry is not looked at
    assert harness.status("b") == "COMPLETED" and harness.recorder.of(EventType.RUN_REOPENED) == []
    harness.detect(mono=4)  # a notification without ids (or a poll): every run
    assert [run_id for run_id, _ in harness.recorder.of(EventType.RUN_REOPENED)] == ["a"]


def test_a_mark_is_written_before_the_reopen_watch_is_read(harness: Harness) -> None:
    add_run(harness, "done", ["SUCCEEDED"])
    harness.reconcile()
    harness.detect(mono=1)  # "done" is marked: watched for a reopening from now on
    add_run(harness, "next", ["SUCCEEDED"])
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])  # (connection, cursor, statement, ...)

    engine = harness.connection.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        harness.detect(mono=2)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    marked = next(i for i, sql in enumerate(statements) if sql.startswith("UPDATE runs"))
    watched = next(i for i, sql in enumerate(statements) if "UNION" in sql)
    assert harness.status("next") == "COMPLETED" and marked < watched
