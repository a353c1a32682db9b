"""The watchers' translation: which names matter, and that events become signals, with real inotify."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from orchestrator_monitor.detect.watch import (
    MISSING_DIRECTORY_SECONDS,
    RunDirWatcher,
    RunFollower,
    Signals,
    StateFileFilter,
)


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


def test_without_inotify_run_directories_are_polled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_inotify() -> None:
        raise OSError(24, "inotify instance limit reached")

    monkeypatch.setattr("orchestrator_monitor.detect.watch.InotifyFD", no_inotify)
    signals = Signals()
    watcher = RunDirWatcher(signals, polling_seconds=0.05)
    try:
        assert not watcher.uses_inotify
        assert not watcher.watch_state(tmp_path, "orchestration.db")  # the data_version poll covers it
        run = tmp_path / "runs" / "r"
        run.mkdir(parents=True)
        watcher.sync({"r": run})
        assert watcher.watched == {"r"}
        (run / "out.txt").write_text("written while polled")
        assert "r" in wait_for_activity(signals, "r")
    finally:
        watcher.close()


def test_at_the_watch_limit_a_directory_is_polled(tmp_path: Path, watcher, monkeypatch: pytest.MonkeyPatch) -> None:
    w, signals = watcher

    def limit(*args: object) -> None:
        raise OSError(28, "inotify watch limit reached")

    monkeypatch.setattr(w._inotify, "add_callback", limit)
    w._polling_seconds = 0.05
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    w.sync({"r": run})
    assert w.watched == {"r"}
    (run / "out.txt").write_text("x")
    assert "r" in wait_for_activity(signals, "r")


class RecordingWatcher:
    def __init__(self) -> None:
        self.synced: list[dict[str, Path]] = []

    def sync(self, directories: dict[str, Path]) -> None:
        self.synced.append(dict(directories))


def test_the_follower_keeps_watches_equal_to_the_runs_and_refuses_escaping_dirs(tmp_path: Path) -> None:
    watcher, warnings, now = RecordingWatcher(), [], [0.0]
    follow = RunFollower(tmp_path, watcher, lambda key, what, detail: warnings.append(what), clock=lambda: now[0])
    follow({"a": None, "b": "elsewhere/b"})
    assert watcher.synced[-1] == {"a": tmp_path / "runs" / "a", "b": tmp_path / "elsewhere" / "b"}
    follow({"a": None, "b": "elsewhere/b"})
    assert len(watcher.synced) == 1  # nothing changed: not even a stat of missing directories
    now[0] = MISSING_DIRECTORY_SECONDS
    follow({"a": None, "b": "elsewhere/b"})
    assert len(watcher.synced) == 2  # a directory created after its run's row is picked up
    follow({"b": "moved/b", "c": "../../etc"})
    assert watcher.synced[-1] == {"b": tmp_path / "moved" / "b"}
    assert warnings == ["run directory refused"]
