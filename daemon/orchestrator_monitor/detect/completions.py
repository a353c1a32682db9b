"""What the monitor has finished with: the ledger's records in memory, and telling everyone.

The detector decides; this records the decision in the ledger before its event goes out
(`RUN_STATUS_CHANGED`, `RUN_COMPLETED`, once per run, the same id after a crash), hands the
run to archival, and watches recently completed runs for changes after their mark
(`RUN_REOPENED`, once). Every write goes through the ledger, so a restart knows it all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Protocol

import orjson
from sqlalchemy import Connection

from ..events.types import EventType, Publish
from ..ledger.runs import Ledger, RunRecord
from ..state.records import RUN_TERMINAL, RunSnapshot
from ..state.snapshots import fetch_snapshots
from ..state.tables import StateTables

logger = logging.getLogger(__name__)

REOPEN_WATCH_SECONDS = 3600.0
FINISHED_PHASES = frozenset({"completed", "announced", "archived", "reported"})


class Handoff(Protocol):
    """Where a completed run goes next (archival); the default does nothing."""

    def completed(self, run_id: str) -> None: ...


class NoHandoff:
    def completed(self, run_id: str) -> None:
        return None


class Completions:
    """The records of finished runs (loaded from the ledger at start) and the announcements."""

    def __init__(
        self, *, ledger: Ledger, publish: Publish, flush: Callable[[], None], handoff: Handoff, tables: StateTables
    ) -> None:
        self._ledger = ledger
        self._tables = tables
        self._publish = publish
        self._flush = flush
        self._handoff = handoff
        self._records: dict[str, RunRecord] = {}
        self._published: list[str] = []  # RUN_COMPLETED out, not yet known written: see `commit`
        self._watch_reopen: dict[str, float] = {}  # run -> when this daemon completed it (monotonic)

    def load(self, runs: Callable[[], Mapping[str, str]]) -> None:
        """Read the ledger; on the very first start, first record the terminal `runs()` as the baseline
        (read only then: every later start has a baseline already)."""
        if not self._ledger.baseline_taken():
            self._ledger.take_baseline({run_id: status for run_id, status in runs().items() if status in RUN_TERMINAL})
        self._records = self._ledger.records()

    def known(self, run_id: str) -> bool:
        return run_id in self._records

    def finished(self, run_id: str) -> bool:
        """Completion recorded: a change after it is a reopening, never a second completion."""
        record = self._records.get(run_id)
        return record is not None and record.phase in FINISHED_PHASES

    def settled(self, run_id: str) -> bool:
        """Nothing left to do for a terminal run: announced (or behind the baseline) at least."""
        record = self._records.get(run_id)
        return record is not None and record.phase not in ("marking", "completed")

    def needs_completion(self, run_id: str, status: str) -> bool:
        """A terminal run the ledger has not finished with; re-announces one recorded but maybe not announced."""
        if self.settled(run_id):
            return False
        record = self._records.get(run_id)
        if record is None or record.phase == "marking":
            return True
        # completed: recorded, but its event may not have gone out: again, same id
        self._announce(run_id, status, record.marked_by or "executor", record.tasks)
        return False

    def terminal_outcome(self, snapshot: RunSnapshot) -> tuple[str, str]:
        """(status, marked_by) of a terminal run we did not see being set: our own mark from before a
        crash if it is the one we intended (as the executor's vocabulary stores it: a PARTIAL mark
        reads back FAILED, and PARTIAL is what is recorded), else the executor's status."""
        record = self._records.get(snapshot.run_id)
        if (
            record is not None
            and record.phase == "marking"
            and record.status is not None
            and self._tables.mapping.runs.read_back(record.status) == snapshot.status
        ):
            return record.status, "monitor"
        return snapshot.status, "executor"

    def observe_open(self, run_id: str, status: str) -> None:
        """A run seen open: an intended mark that never landed is dropped; a finished one has reopened."""
        record = self._records.get(run_id)
        if record is not None and record.phase == "marking":
            self._ledger.forget(run_id)
            del self._records[run_id]
        elif record is not None and record.phase != "baseline" and not record.reopened:
            self.reopen(run_id, f"status is {status} again after the run was {record.status}")

    def archived_among(self, run_ids: list[str]) -> set[str]:
        """Which runs archival has published (the archive worker records that in the ledger)."""
        return self._ledger.archived_among(run_ids) if run_ids else set()

    def begin_mark(self, run_id: str, status: str) -> None:
        self._ledger.begin_mark(run_id, status)

    def abandon_mark(self, run_id: str) -> None:
        self._ledger.forget(run_id)

    def finish(self, snapshot: RunSnapshot, status: str, marked_by: str, mono: float, previous: str | None) -> None:
        """Record the completion, then announce it; `previous` is the open status we last saw, if any."""
        run_id = snapshot.run_id
        first = not self.finished(run_id)  # else a reopened run ending again: announced already
        if first:
            fingerprint = fingerprint_text(snapshot)
            self._ledger.complete(
                run_id, status=status, marked_by=marked_by, tasks=snapshot.tasks, fingerprint=fingerprint
            )
            self._records[run_id] = RunRecord(
                run_id, "completed", status, marked_by, dict(snapshot.tasks), fingerprint, False
            )
        if previous is not None:
            self._publish(EventType.RUN_STATUS_CHANGED, {"from": previous, "to": status}, run_id=run_id)
        if first:
            self._announce(run_id, status, marked_by, snapshot.tasks)
            self._watch_reopen[run_id] = mono

    def _announce(self, run_id: str, status: str, marked_by: str, tasks: Mapping[str, int]) -> None:
        data = {"status": status, "marked_by": marked_by, "tasks": dict(tasks)}
        self._publish(EventType.RUN_COMPLETED, data, run_id=run_id)
        self._published.append(run_id)

    def commit(self) -> None:
        """After a pass: once its RUN_COMPLETED lines are written, record them announced and hand the runs on.

        `publish` returns when the log accepted a line, not when it wrote it; recording the run
        announced before that would let a `kill -9` lose its event for good. One flush and one
        ledger transaction serve a whole pass, however many runs it completed.
        """
        if not self._published:
            return
        self._flush()
        self._ledger.announce_many(self._published)
        for run_id in self._published:
            self._records[run_id] = replace(self._records[run_id], phase="announced")
            self._handoff.completed(run_id)
        self._published = []

    def check_reopened(self, connection: Connection, mono: float) -> None:
        """A run completed recently whose rows changed after the mark: one RUN_REOPENED.

        Only runs completed in the last `REOPEN_WATCH_SECONDS` are re-read (late writes come soon
        after the end; older runs are sealed by archival), so this pass stays small for months.
        """
        for run_id in [r for r, at in self._watch_reopen.items() if mono - at > REOPEN_WATCH_SECONDS]:
            del self._watch_reopen[run_id]
        candidates = {r: self._records[r].status or "" for r in self._watch_reopen if not self._records[r].reopened}
        if not candidates:
            return
        with connection.begin():
            snapshots = fetch_snapshots(connection, self._tables, candidates)
        for run_id, snapshot in snapshots.items():
            if fingerprint_text(snapshot) != self._records[run_id].fingerprint:
                self.reopen(run_id, "tasks or workstreams changed after the run was marked")

    def reopen(self, run_id: str, what: str) -> None:
        self._ledger.reopen(run_id)
        self._records[run_id] = replace(self._records[run_id], reopened=True)
        self._watch_reopen.pop(run_id, None)
        logger.warning("run %s reopened: %s", run_id, what)
        self._publish(EventType.RUN_REOPENED, {"what": what}, run_id=run_id)


def fingerprint_text(snapshot: RunSnapshot) -> str:
    """The rows' part of the fingerprint (the run's own status left out: the mark changes it)."""
    return orjson.dumps([str(part) for part in snapshot.fingerprint[1:]]).decode()
