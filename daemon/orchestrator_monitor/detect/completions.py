"""What the monitor has finished with: the ledger's records of the runs in hand, and telling everyone.

The detector decides; this records the decision in the ledger before its event goes out
(`RUN_STATUS_CHANGED`, `RUN_COMPLETED`, once per run, the same id after a crash), hands the
run to archival, and watches recently completed runs for changes after their mark
(`RUN_REOPENED`, once per run). A run that changes before its bag is published waits for its
new end (phase `reopened`), is completed anew on the rows of that end and handed to archival
again; archival, which compares the rows once more inside its snapshot, may be the one that saw
the change (`learn_phases`). Every write goes through the ledger, so a restart knows it all.

Only the records of runs still in hand are kept here (marking, completed, reopened, and those
completed within `CHEAP_WATCH_SECONDS`); any other is read from the ledger by id when a pass meets
its run (`prefetch`, `unsettled`), so memory grows neither with the history (bench/history.py) nor
with the hour of recent completions the full comparison watches: that hour is read from the ledger
by time on each full pass (bench/soak.py: at three runs a second, keeping it in memory was most of
the daemon's growth).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Protocol

from sqlalchemy import Connection

from ..events.types import EventType, Publish
from ..ledger.runs import BAGGED_PHASES, Completion, Ledger, RunRecord
from ..state.records import RUN_TERMINAL, TASK_TERMINAL, RunSnapshot
from ..state.snapshots import fetch_snapshots, fingerprint_text
from ..state.tables import StateTables
from ..timefmt import format_timestamp
from .rule import all_terminal

logger = logging.getLogger(__name__)

REOPEN_WATCH_SECONDS = 3600.0
# The cheap pass asks about runs completed this recently (one index seek each, per wake-up): at a
# run a second, an hour's worth made every wake-up cost ~40 ms and the daemon's CPU climb (bench/soak.py).
# Older ones are left to the full comparison, every `completion.reconcile_seconds`, which reads them
# from the ledger: only this window's runs are held in memory.
CHEAP_WATCH_SECONDS = 300.0
COMPARE_BATCH = 500  # runs whose snapshots the full comparison reads and compares at once
IN_HAND_PHASES = frozenset({"marking", "completed", "reopened"})  # this loop's own work: their records stay
_NO_ROWS: Mapping[str, int] = MappingProxyType({})
FINISHED_PHASES = frozenset({"completed", "announced", "reopened", *BAGGED_PHASES})
UNARCHIVED_PHASES = frozenset({"completed", "announced"})  # a change to them makes them wait for their new end


@dataclass(frozen=True, slots=True)
class End:
    """A run found at its end by a pass: the rows, the outcome, who set it, and its open status last seen."""

    snapshot: RunSnapshot
    status: str
    marked_by: str
    previous: str | None = None


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
        self._announcing: list[str] = []  # completion recorded and its events out, not yet known written: `commit`
        # run -> (when this daemon completed it (monotonic), whether every row was terminal then), for
        # CHEAP_WATCH_SECONDS; oldest first
        self._watch_reopen: dict[str, tuple[float, bool]] = {}
        self._reopened: set[str] = set()  # phase reopened: waiting for their new end

    def load(self, runs: Callable[[], Mapping[str, str]]) -> None:
        """Read the ledger; on the very first start, first record the terminal `runs()` as the baseline
        (read only then: every later start has a baseline already).

        Runs completed within `REOPEN_WATCH_SECONDS` are not read here: the full comparison reads them
        from the ledger each time, so a retry that came and went while the daemon was down or
        restarting is still one RUN_REOPENED (found by chaos, bench/chaos.py).
        """
        if not self._ledger.baseline_taken():
            self._ledger.take_baseline({run_id: status for run_id, status in runs().items() if status in RUN_TERMINAL})
        self._records = self._ledger.active_records()
        self._reopened = {run_id for run_id, record in self._records.items() if record.phase == "reopened"}

    def prefetch(self, run_ids: Iterable[str]) -> None:
        """Read the records of runs a pass meets for the first time (one query per 500), so that what
        follows asks memory; a run with no record needs none."""
        missing = [run_id for run_id in run_ids if run_id not in self._records]
        if missing:
            self._records.update(self._ledger.records_among(missing))

    def unsettled(self, statuses: Mapping[str, str]) -> dict[str, str]:
        """Of these terminal runs, those the ledger has not finished with (the full pass's question about
        every run): asked in batches, and only the few that need work are kept in memory."""
        unknown = [run_id for run_id in statuses if run_id not in self._records]
        phases = self._ledger.phases_among(unknown) if unknown else {}
        waiting = [r for r in statuses if r in self._records or phases.get(r) in (None, "marking", "completed")]
        self.prefetch(waiting)
        return {run_id: statuses[run_id] for run_id in waiting if not self.settled(run_id)}

    def known(self, run_id: str) -> bool:
        return run_id in self._records

    def finished(self, run_id: str) -> bool:
        """Completion recorded: a change after it is a reopening, never a second completion."""
        record = self._records.get(run_id)
        return record is not None and record.phase in FINISHED_PHASES

    def settled(self, run_id: str) -> bool:
        """Nothing left to do here for a terminal run: announced (or behind the baseline) at least, or another
        daemon's (on a shared database: it announces its own, and its runs are taken over if it dies)."""
        record = self._records.get(run_id)
        if record is None:
            return False
        return record.phase not in ("marking", "completed") or not self._mine(record)

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
            self._ledger.forget([run_id])
            del self._records[run_id]
        elif record is not None:
            self.changed(run_id, f"status is {status} again after the run was {record.status}")

    def changed(self, run_id: str, what: str) -> None:
        """The run's rows are no longer what its completion was decided on: reopen it where that is news
        (and where it is this daemon's: another's row may be newer than the rows this pass read)."""
        record = self._records.get(run_id)
        if record is not None and self._mine(record) and _reopenable(record.phase, record.reopened):
            self._reopen(run_id, what)

    def _mine(self, record: RunRecord) -> bool:
        return record.owner in (None, self._ledger.daemon_id)

    def _drop(self, run_id: str) -> None:
        """Another daemon's run: it announces, archives and reports it; nothing of it stays here."""
        self._records.pop(run_id, None)
        self._reopened.discard(run_id)
        self._watch_reopen.pop(run_id, None)

    def watched(self, mono: float) -> list[str]:
        """Runs completed within `CHEAP_WATCH_SECONDS` with every row terminal then: an open task or
        workstream of theirs now is a reopening (the cheap pass asks; bounded by recent completions)."""
        self._expire_watch(mono)
        return [run_id for run_id, (_, settled) in self._watch_reopen.items() if settled]

    def waiting_to_end(self) -> set[str]:
        """Reopened runs without a bag yet: completed anew once their rows have ended again."""
        return self._reopened

    def decided(self, run_id: str) -> str | None:
        """The status the monitor's own mark decided for a finished run; None when the executor's status was taken."""
        record = self._records.get(run_id)
        return record.status if record is not None and record.marked_by == "monitor" else None

    def archival_phases(self, run_ids: list[str]) -> dict[str, str]:
        """The ledger's phase of these runs (the archive worker records bags, and the reopenings it finds)."""
        return self._ledger.phases_among(run_ids) if run_ids else {}

    def learn_phases(self, phases: Mapping[str, str]) -> None:
        """What the ledger says archival did (a bag published, a reopening it saw): the records here agree."""
        for run_id, phase in phases.items():
            record = self._records.get(run_id)
            if record is None or record.phase == phase:
                continue
            if phase == "reopened":
                self._mark_reopened(run_id, phase)
            elif phase in BAGGED_PHASES:
                self._records[run_id] = replace(record, phase=phase)

    def begin_marks(self, intents: Mapping[str, str]) -> set[str]:
        """Record the intents to mark (run -> status); the runs this daemon holds (another's are theirs)."""
        held = self._ledger.begin_marks(intents)
        for run_id in held:
            self._records[run_id] = RunRecord(
                run_id, "marking", intents[run_id], None, _NO_ROWS, None, False, self._ledger.daemon_id
            )
        return held

    def abandon_marks(self, run_ids: list[str]) -> None:
        self._ledger.forget(run_ids)
        for run_id in run_ids:
            self._records.pop(run_id, None)

    def finish(self, ends: list[End], mono: float) -> list[str]:
        """Record the completions of a pass in one ledger write, then announce them; returns the runs finished
        here (one another daemon holds is not: it is theirs to announce).

        A reopened run ending again is recorded anew (its rows and status now: what archival
        compares with) and handed to archival again, without a second RUN_COMPLETED; a change of
        its outcome is a RUN_STATUS_CHANGED from the status recorded before. `End.previous` is the
        open status last seen, if any.
        """
        theirs = {e.snapshot.run_id for e in ends if (r := self._records.get(e.snapshot.run_id)) and not self._mine(r)}
        for run_id in theirs:
            self._drop(run_id)
        ends = [end for end in ends if end.snapshot.run_id not in theirs]
        new: list[End] = []
        seen_again: list[End] = []  # seen again: reopened after its bag, or met once more; announced already
        for end in ends:
            run_id = end.snapshot.run_id
            (new if not self.finished(run_id) or self._is_reopened(run_id) else seen_again).append(end)
        for end in seen_again:
            if end.previous is not None:
                self._publish(
                    EventType.RUN_STATUS_CHANGED, {"from": end.previous, "to": end.status}, run_id=end.snapshot.run_id
                )
        completions = [
            Completion(e.snapshot.run_id, e.status, e.marked_by, e.snapshot.tasks, fingerprint_text(e.snapshot))
            for e in new
        ]
        recorded = self._ledger.complete_many(completions)
        for end, completion in zip(new, completions, strict=True):
            if completion.run_id not in recorded:
                logger.info("run %s is another daemon's: left to it", completion.run_id)
                self._drop(completion.run_id)
                continue
            before = self._records.get(completion.run_id)
            again = before is not None and before.phase == "reopened"
            self._records[completion.run_id] = RunRecord(
                completion.run_id,
                "completed",
                end.status,
                end.marked_by,
                dict(end.snapshot.tasks),
                completion.fingerprint,
                again,
                self._ledger.daemon_id,
            )
            self._reopened.discard(completion.run_id)
            snapshot = end.snapshot
            settled = all_terminal(snapshot.tasks, TASK_TERMINAL) and all_terminal(snapshot.workstreams, RUN_TERMINAL)
            self._watch_reopen.pop(completion.run_id, None)
            self._watch_reopen[completion.run_id] = (mono, settled)
            if end.previous is not None:
                self._publish(
                    EventType.RUN_STATUS_CHANGED, {"from": end.previous, "to": end.status}, run_id=completion.run_id
                )
            elif again and before is not None and before.status != end.status:
                self._publish(
                    EventType.RUN_STATUS_CHANGED, {"from": before.status, "to": end.status}, run_id=completion.run_id
                )
            if again:
                self._announcing.append(completion.run_id)
            else:
                self._announce(completion.run_id, end.status, end.marked_by, snapshot.tasks)
        return sorted(recorded | {end.snapshot.run_id for end in seen_again})

    def _is_reopened(self, run_id: str) -> bool:
        record = self._records.get(run_id)
        return record is not None and record.phase == "reopened"

    def take_over(self, taken: Mapping[str, str]) -> None:
        """Runs taken from a daemon whose lease ran out (run -> phase): completed and not announced yet are
        announced again (same ids), announced and archived ones go to archival, which resumes them."""
        records = self._ledger.records_among(list(taken))
        self._records.update(records)
        for run_id, record in records.items():
            if record.phase == "completed":
                self._announce(run_id, record.status or "", record.marked_by or "executor", record.tasks)
            elif record.phase in ("announced", "published", "archived"):
                self._handoff.completed(run_id)
            elif record.phase == "reopened":
                self._reopened.add(run_id)

    def _announce(self, run_id: str, status: str, marked_by: str, tasks: Mapping[str, int]) -> None:
        if run_id in self._announcing:  # out already, its record failed (the database went away): `commit` retries
            return
        data = {"status": status, "marked_by": marked_by, "tasks": dict(tasks)}
        self._publish(EventType.RUN_COMPLETED, data, run_id=run_id)
        self._announcing.append(run_id)

    def commit(self) -> None:
        """After a pass: once its events are written, record its completions announced and hand the runs on.

        `publish` returns when the log accepted a line, not when it wrote it; recording the run
        announced before that would let a `kill -9` lose its event for good. One flush and one
        ledger transaction serve a whole pass, however many runs it completed. A run reopened
        within the same pass stays reopened: it is handed on once it has ended again.
        """
        if not self._announcing:
            return
        self._flush()
        self._ledger.announce_many(self._announcing)
        for run_id in self._announcing:
            record = self._records[run_id]
            if record.phase == "completed":
                self._records[run_id] = replace(record, phase="announced")
                self._handoff.completed(run_id)
        self._announcing = []

    def check_reopened(self, connection: Connection, mono: float, now: datetime) -> None:
        """The full comparison: runs completed recently whose rows differ from what their completion was
        decided on (a retry that came and went between two cheap passes), and the reopenings archival
        recorded that this daemon has not heard of (a command's archival, or one long after the end).

        Only runs completed in the last `REOPEN_WATCH_SECONDS` (by the ledger's clock: its records are
        read by time, not held) are re-read (late writes come soon after the end; older runs are sealed
        by archival), so this pass stays small for months.
        """
        self.learn_phases(dict.fromkeys(self._ledger.reopened_runs(), "reopened"))
        self._expire_watch(mono)
        since = format_timestamp(now - timedelta(seconds=REOPEN_WATCH_SECONDS))
        records = (self._records[run_id] for run_id in self._watch_reopen)  # as new as the ledger's
        newer = {record.run_id: (record.status or "", record.fingerprint or "") for record in records}
        changed: list[str] = []
        for decided in self._ledger.recent_fingerprints(since, COMPARE_BATCH):  # a batch at a time: a flat peak
            decided.update((run_id, newer.pop(run_id)) for run_id in decided.keys() & newer.keys())
            changed += self._changed_among(connection, decided)
        changed += self._changed_among(connection, newer)  # the watched runs the ledger's hour did not have
        for run_id in changed:
            record = self._records.get(run_id) or self._ledger.record(run_id)
            if record is not None:
                self._records.setdefault(run_id, record)
                self.changed(run_id, "tasks or workstreams changed after the run was marked")
                self._release(run_id)

    def _changed_among(self, connection: Connection, decided: Mapping[str, tuple[str, str]]) -> list[str]:
        """Of these runs (run_id -> (status, fingerprint)), those whose rows differ from the fingerprint their
        completion was decided on; their snapshots read COMPARE_BATCH at a time."""
        runs = list(decided.items())
        changed: list[str] = []
        for start in range(0, len(runs), COMPARE_BATCH):
            batch = dict(runs[start : start + COMPARE_BATCH])
            with connection.begin():
                snapshots = fetch_snapshots(connection, self._tables, {r: status for r, (status, _) in batch.items()})
            changed += [r for r, snapshot in snapshots.items() if fingerprint_text(snapshot) != batch[r][1]]
        return changed

    def _expire_watch(self, mono: float) -> None:
        """Past the cheap window a run's record leaves memory unless this loop still owes it work (the
        full comparison reads it from the ledger; a pass that meets the run reads it by id)."""
        while self._watch_reopen:  # oldest first: a run is put at the end whenever it completes
            run_id, (at, _) = next(iter(self._watch_reopen.items()))
            if mono - at <= CHEAP_WATCH_SECONDS:
                break
            del self._watch_reopen[run_id]
            self._release(run_id)

    def _release(self, run_id: str) -> None:
        record = self._records.get(run_id)
        if record is not None and record.phase not in IN_HAND_PHASES and run_id not in self._watch_reopen:
            del self._records[run_id]

    def _reopen(self, run_id: str, what: str) -> None:
        first, phase = self._ledger.reopen(run_id)  # not first: archival saw it first and said so
        if phase is None:
            return
        self._mark_reopened(run_id, phase)
        if first:
            logger.warning("run %s reopened: %s", run_id, what)
            self._publish(EventType.RUN_REOPENED, {"what": what}, run_id=run_id)

    def _mark_reopened(self, run_id: str, phase: str) -> None:
        """As the ledger has it: waiting for its new end (`reopened`), or archived already and keeping its bag."""
        self._records[run_id] = replace(self._records[run_id], phase=phase, reopened=True)
        if phase == "reopened":
            self._reopened.add(run_id)
        self._watch_reopen.pop(run_id, None)
        self._release(run_id)  # archived already: the ledger says it reopened once, nothing more to watch


def _reopenable(phase: str, reopened: bool) -> bool:
    """A change is news: before the bag (the run then waits for its new end), or the first one after it."""
    return phase in UNARCHIVED_PHASES or (phase in BAGGED_PHASES and not reopened)
