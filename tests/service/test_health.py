"""The checks as plain functions on real files, with `now` passed in; and the notify helpers."""

from __future__ import annotations

import os
import re
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

from orchestrator_monitor.ledger.monitor_db import Heartbeat
from orchestrator_monitor.service.health import check_archival_storage, check_heartbeats, check_sqlite_database
from orchestrator_monitor.service.notify import watchdog_interval_seconds
from orchestrator_monitor.service.safemode import Condition

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def check(path: Path, verified=None):  # type: ignore[no-untyped-def]
    return check_sqlite_database(path, timeout_seconds=1, quick_check_seconds=1, verified=verified)


def test_a_sound_database_passes_and_is_not_scanned_again_until_it_changes(workspace: Path) -> None:
    db = workspace / ".state" / "orchestration.db"
    first = check(db)
    assert first.observation.condition is Condition.OK and first.verified is not None
    assert check(db, first.verified).verified == first.verified


def test_corruption_and_a_missing_file_are_told_apart(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    with closing(sqlite3.connect(db)) as connection:
        connection.execute("CREATE TABLE t (a)")
        connection.executemany("INSERT INTO t VALUES (?)", [(os.urandom(500),) for _ in range(50)])
        connection.commit()
    with db.open("r+b") as handle:
        handle.seek(4096)
        handle.write(os.urandom(db.stat().st_size - 4096))
    assert check(db).observation.condition is Condition.CORRUPT
    db.write_bytes(b"this is not a database at all" * 200)
    assert check(db).observation.condition is Condition.CORRUPT
    assert check(tmp_path / "gone.db").observation.condition is Condition.UNREACHABLE


def test_a_database_removed_while_it_is_checked_is_missing_not_read_only(workspace: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    db = workspace / ".state" / "orchestration.db"
    access = os.access

    def removed_first(path: Path, mode: int) -> bool:  # a restore removes the file at the worst moment
        for name in (db.name, db.name + "-wal", db.name + "-shm"):
            (db.parent / name).unlink(missing_ok=True)
        return access(path, mode)

    monkeypatch.setattr(os, "access", removed_first)
    seen = check(db).observation
    assert seen.condition is Condition.UNREACHABLE and "does not exist" in seen.detail


def test_storage_missing_full_or_fine(tmp_path: Path) -> None:
    assert (
        check_archival_storage(tmp_path / "no", reserve_bytes=0, min_free_percent=0).condition is Condition.UNAVAILABLE
    )
    full = check_archival_storage(tmp_path, reserve_bytes=1 << 62, min_free_percent=0)
    assert full.condition is Condition.FULL and "archive.reserve_bytes" in full.detail
    ok = check_archival_storage(tmp_path, reserve_bytes=0, min_free_percent=0)
    assert ok.condition is Condition.OK and re.match(r"[\d.]+ [KMGTP]iB free \(", ok.detail), ok.detail  # not raw bytes


def test_heartbeats_fresh_stale_dead_or_absent() -> None:
    fresh = [Heartbeat("scheduler", 42, NOW - timedelta(seconds=5)), Heartbeat("detection", 42, NOW)]
    assert check_heartbeats(fresh, now=NOW, stale_after_seconds=30, alive=lambda pid: True).condition is Condition.OK
    stale = [*fresh, Heartbeat("x", 42, NOW - timedelta(seconds=31))]
    seen = check_heartbeats(stale, now=NOW, stale_after_seconds=30, alive=lambda pid: True)
    assert seen.condition is Condition.STALE and "x 31 s ago" in seen.detail
    dead = check_heartbeats(fresh, now=NOW, stale_after_seconds=30, alive=lambda pid: False)
    assert "is not running" in dead.detail
    assert check_heartbeats([], now=NOW, stale_after_seconds=30, alive=lambda pid: True).condition is Condition.STALE


def test_the_watchdog_interval_is_half_of_watchdog_usec_and_only_for_its_pid() -> None:
    assert watchdog_interval_seconds({"WATCHDOG_USEC": "30000000"}, 7) == 15.0
    assert watchdog_interval_seconds({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "8"}, 7) is None
    assert watchdog_interval_seconds({}, 7) is None
