"""The watchers' translation: which names matter, and that events become signals, with real inotify."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from orchestrator_monitor.watch import RunDirWatcher, Signals, StateFileFilter


def test_state_filter_takes_the_database_and_its_journals_but_not_shm() -> None:
    accept = StateFileFilter("orchestration.db")
    assert all(map(accept, ["orchestration.db", "orchestration.db-wal", "orchestration.db-journal"]))
    assert not any(map(accept, ["orchestration.db-shm", "other.db", "orchestration.db.bak", ""]))


@pytest.fixture
def watcher(tmp_path: Path) -> Iterator[tuple[RunDirWatcher, Signals]]:
    signals = Signals()
    watcher = RunDirWatcher(signals)
    if not watcher.uses_inotify:
        pytest.skip("inotify is not available here")
    yield watcher, signals
    watcher.close()


def wait_for_activity(signals: Signals, run_id: str) -> set[str]:
    seen: set[str] = set()
    for _ in range(200):
        _, activity, _ = signals.take()
        seen |= activity
        if run_id in seen:
            return seen
        signals.wake.wait(0.01)
    return seen


def test_a_commit_wakes_the_detector_and_other_files_do_not(tmp_path: Path, watcher) -> None:
    w, signals = watcher
    (tmp_path / ".state").mkdir()
    assert w.watch_state(tmp_path / ".state", "orchestration.db")
    (tmp_path / ".state" / "notes.txt").write_text("not the database")
    assert not signals.wake.wait(0.2)
    with closing(sqlite3.connect(tmp_path / ".state" / "orchestration.db")) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE t (x)")
        connection.commit()
    assert signals.wake.wait(5)
    assert signals.take()[0] > 0


def test_each_run_directory_gets_a_watch_and_missing_ones_are_picked_up_later(tmp_path: Path, watcher) -> None:
    w, signals = watcher
    one, two = tmp_path / "runs" / "one", tmp_path / "runs" / "two"
    one.mkdir(parents=True)
    w.sync({"one": one, "two": two})
    assert w.watched == {"one"}
    two.mkdir()
    w.sync({"one": one, "two": two})
    assert w.watched == {"one", "two"}
    (two / "artifact.bin").write_bytes(b"x")
    assert "two" in wait_for_activity(signals, "two")
    w.sync({"two": two})
    assert w.watched == {"two"}
    (one / "late.txt").write_text("after the run left the open set")
    assert "one" not in wait_for_activity(signals, "two-again")


def test_a_deleted_run_directory_drops_its_watch(tmp_path: Path, watcher) -> None:
    w, signals = watcher
    gone = tmp_path / "runs" / "gone"
    gone.mkdir(parents=True)
    w.sync({"gone": gone})
    gone.rmdir()
    for _ in range(200):
        if not w.watched:
            break
        signals.wake.wait(0.01)
    assert w.watched == set()
