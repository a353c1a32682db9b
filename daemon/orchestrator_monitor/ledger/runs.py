"""The monitor's record of each run it has finished with, in its own database (`.monitor/`).

This is what makes detection exactly-once across restarts: a decision is written here
before its effect (the intent to mark, before the mark), and its outcome before its event
goes out, so a restart can tell what is done. Events may repeat after a crash (same id),
completions are never lost or repeated.

Phases of a run here:
  baseline   terminal when the monitor first started in this workspace: left for backfill
  marking    the monitor is about to mark it (the mark may or may not have landed)
  completed  terminal, recorded; its RUN_COMPLETED may not have gone out yet
  announced  RUN_COMPLETED went out and the run was handed to archival
  reopened   its rows changed after its completion, before its bag: archived once it has ended again
             (then `completed` again, with the rows and status of its new end)
  archived   its bag is published and recorded; RUN_ARCHIVED may not have gone out yet
  reported   its reports are written and recorded; REPORT_GENERATED may not have gone out yet

`fingerprint` is what the latest completion was decided on (`state.snapshots.fingerprint_text`);
`reopened` says RUN_REOPENED went out (once per run, whoever saw the change first: the detector or
archival).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from sys import intern
from types import MappingProxyType

import orjson

from ..timefmt import format_timestamp, utc_now
from .monitor_db import create_progress_database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS monitor_runs (
    run_id TEXT NOT NULL PRIMARY KEY,
    phase TEXT NOT NULL,
    status TEXT,
    marked_by TEXT,
    tasks TEXT,
    fingerprint TEXT,
    reopened INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
)
"""
# Runs archival refuses for good (their run_dir leaves the workspace): said once, with its reason.
_REFUSALS = (
    "CREATE TABLE IF NOT EXISTS monitor_refusals (run_id TEXT PRIMARY KEY, reason TEXT NOT NULL, at TEXT NOT NULL)"
)
# The reconciliation asks for the reopened runs each time: a seek in the few, not a scan of every run ever seen.
_REOPENED_INDEX = (
    "CREATE INDEX IF NOT EXISTS ix_monitor_runs_reopened ON monitor_runs (run_id) WHERE phase = 'reopened'"
)


_NO_TASKS: Mapping[str, int] = MappingProxyType({})


def _intern(text: str | None) -> str | None:
    return None if text is None else intern(text)


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    phase: str
    status: str | None
    marked_by: str | None
    tasks: Mapping[str, int]
    fingerprint: str | None
    reopened: bool


class Ledger:
    """Per-run phases in `monitor_runs`; every method is one short transaction."""

    def __init__(self, path: Path, *, busy_timeout_seconds: float) -> None:
        create_progress_database(path, busy_timeout_seconds=busy_timeout_seconds)
        self._connection = sqlite3.connect(
            path, timeout=busy_timeout_seconds, isolation_level=None, check_same_thread=False
        )
        self._connection.execute("PRAGMA synchronous=FULL")  # a recorded completion must survive power loss
        self._connection.execute(_SCHEMA)
        self._connection.execute(_REOPENED_INDEX)
        self._connection.execute(_REFUSALS)
        self._lock = threading.Lock()

    def refuse(self, run_id: str, reason: str) -> bool:
        """Record that archival refuses the run for good; True the first time (when it must be said)."""
        return self._advance(
            "INSERT OR IGNORE INTO monitor_refusals (run_id, reason, at) VALUES (?, ?, ?)",
            (run_id, reason, format_timestamp(utc_now())),
        )

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def _write(self, statements: Iterable[tuple[str, tuple[object, ...]]]) -> None:
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    self._connection.execute(sql, params)
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    def baseline_taken(self) -> bool:
        with self._lock:
            row = self._connection.execute("SELECT 1 FROM monitor_meta WHERE key = 'baseline_at'").fetchone()
        return row is not None

    def take_baseline(self, terminal_runs: Mapping[str, str]) -> None:
        """Record the runs already terminal at the very first start, and that the baseline was taken."""
        now = format_timestamp(utc_now())
        rows = [
            (
                "INSERT OR IGNORE INTO monitor_runs (run_id, phase, status, updated_at) VALUES (?, 'baseline', ?, ?)",
                (run_id, status, now),
            )
            for run_id, status in terminal_runs.items()
        ]
        self._write([*rows, ("INSERT INTO monitor_meta (key, value) VALUES ('baseline_at', ?)", (now,))])

    def records(self) -> dict[str, RunRecord]:
        """Every run's record; the task counts and fingerprint only where a restart still needs them.

        A daemon that runs for months holds a record per run it ever saw: for runs archived,
        reported or behind the baseline, the phase and status are all it will ask about. Those
        few distinct strings are interned and runs without task counts share one empty mapping:
        341 -> 170 MB of records for a million runs.
        """
        with self._lock:  # rows read one at a time: no second copy of a long history while loading
            rows = self._connection.execute(
                "SELECT run_id, phase, status, marked_by, "
                "CASE WHEN phase IN ('marking', 'completed', 'announced') THEN tasks END, "
                "CASE WHEN phase IN ('marking', 'completed', 'announced') THEN fingerprint END, "
                "reopened FROM monitor_runs"
            )
            return {
                row[0]: RunRecord(
                    row[0],
                    intern(row[1]),
                    _intern(row[2]),
                    _intern(row[3]),
                    orjson.loads(row[4]) if row[4] else _NO_TASKS,
                    row[5],
                    bool(row[6]),
                )
                for row in rows
            }

    def recent_fingerprints(self, since: str) -> dict[str, str]:
        """Runs completed (announced, archived or reported) at or after `since` and not reopened yet: the
        rows their completion was decided on. A restarted daemon watches them for a late change again."""
        with self._lock:
            rows = self._connection.execute(
                "SELECT run_id, fingerprint FROM monitor_runs WHERE phase IN ('announced', 'archived', 'reported') "
                "AND fingerprint IS NOT NULL AND reopened = 0 AND updated_at >= ?",
                (since,),
            ).fetchall()
        return dict(rows)

    def begin_mark(self, run_id: str, status: str) -> None:
        self._write(
            [
                (
                    "INSERT OR REPLACE INTO monitor_runs (run_id, phase, status, updated_at) "
                    "VALUES (?, 'marking', ?, ?)",
                    (run_id, status, format_timestamp(utc_now())),
                )
            ]
        )

    def forget(self, run_id: str) -> None:
        """Drop an intent whose mark never landed (the run changed first)."""
        self._write([("DELETE FROM monitor_runs WHERE run_id = ? AND phase = 'marking'", (run_id,))])

    def complete(self, run_id: str, *, status: str, marked_by: str, tasks: Mapping[str, int], fingerprint: str) -> None:
        """Record a completion (a first one, or a reopened run's new end: its `reopened` flag stays)."""
        self._write(
            [
                (
                    "INSERT INTO monitor_runs (run_id, phase, status, marked_by, tasks, fingerprint, updated_at) "
                    "VALUES (?, 'completed', ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE SET "
                    "phase = 'completed', status = excluded.status, marked_by = excluded.marked_by, "
                    "tasks = excluded.tasks, fingerprint = excluded.fingerprint, updated_at = excluded.updated_at",
                    (
                        run_id,
                        status,
                        marked_by,
                        orjson.dumps(dict(tasks)).decode(),
                        fingerprint,
                        format_timestamp(utc_now()),
                    ),
                )
            ]
        )

    def announce_many(self, run_ids: list[str]) -> None:
        """RUN_COMPLETED of these runs is written: one transaction for a pass's worth of runs."""
        now = format_timestamp(utc_now())
        self._write(
            [
                (
                    "UPDATE monitor_runs SET phase = 'announced', updated_at = ? "
                    "WHERE run_id = ? AND phase = 'completed'",
                    (now, run_id),
                )
                for run_id in run_ids
            ]
        )

    def archived(self, run_id: str, status: str) -> bool:
        """Record a published bag; False when it was recorded already (or the run's completion is not out yet).

        A run the ledger does not know (archived by a command before any daemon saw it) gets a row,
        so a daemon starting later takes it as done, as it would a baseline run.
        """
        return self._advance(
            "INSERT INTO monitor_runs (run_id, phase, status, updated_at) VALUES (?, 'archived', ?, ?) "
            "ON CONFLICT (run_id) DO UPDATE SET phase = 'archived', updated_at = excluded.updated_at "
            "WHERE phase IN ('baseline', 'announced')",
            (run_id, status, format_timestamp(utc_now())),
        )

    def reported(self, run_id: str) -> bool:
        """Record written reports; False when the run was not waiting for them."""
        return self._advance(
            "UPDATE monitor_runs SET phase = 'reported', updated_at = ? WHERE run_id = ? AND phase = 'archived'",
            (format_timestamp(utc_now()), run_id),
        )

    def phase(self, run_id: str) -> str | None:
        with self._lock:
            row = self._connection.execute("SELECT phase FROM monitor_runs WHERE run_id = ?", (run_id,)).fetchone()
        return row[0] if row else None

    def record(self, run_id: str) -> RunRecord | None:
        """The run's whole record (archival compares the rows with the completion's `fingerprint`)."""
        with self._lock:
            row = self._connection.execute(
                "SELECT run_id, phase, status, marked_by, tasks, fingerprint, reopened "
                "FROM monitor_runs WHERE run_id = ?",
                (run_id,),
            ).fetchone()
        if row is None:
            return None
        tasks = orjson.loads(row[4]) if row[4] else _NO_TASKS
        return RunRecord(row[0], row[1], row[2], row[3], tasks, row[5], bool(row[6]))

    def decision(self, run_id: str) -> str | None:
        """The status the monitor's own mark decided for the run (None if the executor ended it).

        The truth to tell where the executor's vocabulary could not hold it (PARTIAL written `failed`)."""
        with self._lock:
            row = self._connection.execute(
                "SELECT status FROM monitor_runs WHERE run_id = ? AND marked_by = 'monitor'", (run_id,)
            ).fetchone()
        return row[0] if row else None

    def phases_among(self, run_ids: list[str]) -> dict[str, str]:
        """run_id -> phase of these runs: which have a published bag, which archival found reopened."""
        found: dict[str, str] = {}
        with self._lock:
            for start in range(0, len(run_ids), 500):
                chunk = run_ids[start : start + 500]
                rows = self._connection.execute(
                    f"SELECT run_id, phase FROM monitor_runs WHERE run_id IN ({', '.join('?' * len(chunk))})", chunk
                ).fetchall()
                found.update((run_id, intern(phase)) for run_id, phase in rows)
        return found

    def runs_in_phase(self, phase: str) -> list[str]:
        """Runs waiting in `phase`, oldest first: what the archival worker resumes at start."""
        with self._lock:
            rows = self._connection.execute(
                "SELECT run_id FROM monitor_runs WHERE phase = ? ORDER BY updated_at", (phase,)
            ).fetchall()
        return [row[0] for row in rows]

    def reopened_runs(self) -> list[str]:
        """Runs waiting for their new end (`ix_monitor_runs_reopened`: as many rows as there are such runs)."""
        with self._lock:
            rows = self._connection.execute("SELECT run_id FROM monitor_runs WHERE phase = 'reopened'").fetchall()
        return [row[0] for row in rows]

    def _advance(self, sql: str, params: tuple[object, ...]) -> bool:
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                changed = self._connection.execute(sql, params).rowcount > 0
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")
        return changed

    def reopen(self, run_id: str, decided_on: str | None = None) -> tuple[bool, str | None]:
        """Record that the run changed after its completion: (whether RUN_REOPENED is still to be published,
        the run's phase now; None when nothing was recorded).

        A run without a bag yet waits for its new end (phase `reopened`); one archived already keeps
        its bag (the spec: not archived again). With `decided_on`, nothing happens unless the
        recorded completion is still the one decided on those rows: an archival that read the record
        before the detector completed the run anew must not reopen the new completion.
        """
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                row = self._connection.execute(
                    "SELECT reopened, fingerprint, phase FROM monitor_runs WHERE run_id = ?", (run_id,)
                ).fetchone()
                if row is None or (decided_on is not None and row[1] != decided_on):
                    self._connection.execute("ROLLBACK")
                    return False, None
                phase = "reopened" if row[2] in ("completed", "announced") else row[2]
                self._connection.execute(
                    "UPDATE monitor_runs SET reopened = 1, phase = ?, updated_at = ? WHERE run_id = ?",
                    (phase, format_timestamp(utc_now()), run_id),
                )
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")
        return not row[0], intern(phase)
