"""`flock` files under `.monitor/`: refused while held, and a run's lock file gone when its work is done."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest
from archive_support import add_terminal_run
from orchestrator_monitor import lock
from orchestrator_monitor.errors import Unavailable
from orchestrator_monitor.lock import hold_lock


def test_a_held_lock_names_its_holder_and_a_removable_one_is_gone_afterwards(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "r.lock"
    with hold_lock(path, "run r", remove=True):
        assert path.read_text() == f"{os.getpid()}\n"
        held_by_us = rf"run r is held by another process \(pid {os.getpid()}\)"
        with pytest.raises(Unavailable, match=held_by_us), hold_lock(path, "run r", remove=True):
            pass
    assert not path.exists()
    with hold_lock(path, "workspace"):
        pass
    assert path.exists()  # a lock without remove=True stays (the daemon's own)


def test_whoever_opened_a_lock_file_its_holder_then_removed_takes_a_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "r.lock"
    flock, locked = fcntl.flock, []

    def holder_finishes_first(fd: int, operation: int) -> None:
        if not locked:  # between our open and our flock, the holder removed the file and let go
            path.unlink()
        flock(fd, operation)
        locked.append(fd)

    monkeypatch.setattr(lock.fcntl, "flock", holder_finishes_first)
    with hold_lock(path, "run r", remove=True):
        assert len(locked) == 2  # the first lock was on the removed file: it started over on the new one
        held = os.fstat(locked[1])
        assert (held.st_dev, held.st_ino, held.st_nlink) == (path.stat().st_dev, path.stat().st_ino, 1)
        assert path.read_text() == f"{os.getpid()}\n"
    assert not path.exists()


def test_archiving_a_run_leaves_no_lock_file_behind(workspace: Path, cli) -> None:  # type: ignore[no-untyped-def]
    add_terminal_run(workspace, "r1")
    assert cli("archive", "--run", "r1", "--workspace", str(workspace)).code == 0
    assert (workspace / ".archive" / "r1").is_dir()
    assert list((workspace / ".monitor" / "locks").iterdir()) == []
