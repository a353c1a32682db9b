"""Wake-up -> read what changed -> decide -> mark -> record -> event -> hand-off.

`Detector` holds what it knows of open runs in memory and what it has finished with in the
ledger. `run_detect_iteration` is the cheap pass run on every confirmed change: the open runs,
the few that may be done, and the runs completed recently that have an open task or workstream
again (a retry after the mark: `RUN_REOPENED` on the wake-up its commit causes) or, reopened,
have ended again. `run_reconcile_iteration` is the full pass run at start and periodically to
catch anything missed (runs finished while the daemon was down, executor-set statuses, rows
changed and changed back between two cheap passes, stalls). Both take the connection and the
time from the caller and make one pass.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, exc

from ..events.types import EventType, Publish
from ..ledger.runs import BAGGED_PHASES, Ledger
from ..state.marks import mark_runs
from ..state.records import RUN_STATUSES, RUN_TERMINAL, RunSnapshot
from ..state.snapshots import (
    fetch_all_runs,
    fetch_candidates,
    fetch_newest_rowid,
    fetch_open_runs,
    fetch_orphan_run_ids,
    fetch_runs_after,
    fetch_runs_with_open_rows,
    fetch_snapshots,
    fetch_statuses,
    iterate_all_runs,
)
from ..state.tables import StateTables
from .completions import REOPEN_WATCH_SECONDS, Completions, End, Handoff
from .rule import Decision, Verdict, decide, decide_again
from .shares import Alone, Shares
from .warnings import OnceWarnings

logger = logging.getLogger(__name__)
MARK_RETRY_SECONDS = 1.0  # a mark that could not be written (lock, safe mode) is tried again after this
LEDGER_BATCH = 5000  # the full pass asks the ledger about this many terminal runs at a time
SEAL_ASK_SECONDS = 0.5  # how often the loop asks the ledger which completed runs have their bag
# A run's directory is watched from its completion until this long after its bag: an executor's late
# flush comes within seconds. Watching each for an hour was a third of the daemon's memory growth at
# three runs a second (an inotify watch and its bookkeeping per run, bench/soak.py).
LATE_WRITE_WATCH_SECONDS = 300.0


V = TypeVar("V")


class _Keyed(dict[str, V]):
    """A dict that counts how often a key came or went: the watched directories are rebuilt from the
    three of them only after such a change, not on every wake-up (thousands of runs in the window)."""

    changes = 0

    def __setitem__(self, key: str, value: V) -> None:
        if key not in self:
            self.changes += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.changes += 1

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            self.changes += 1
        return super().pop(key, *default)


def _expire(ended: _Keyed[tuple[str | None, float]], before: float) -> None:
    """Forget the runs that came in before `before` (oldest first: each is put at the end when it comes)."""
    while ended:
        run_id, (_, at) = next(iter(ended.items()))
        if at >= before:
            break
        del ended[run_id]


@dataclass
class _OpenRun:
    status: str
    run_dir: str | None
    changed_at: float  # monotonic: last observed change of the run's rows
    life_at: float  # monotonic: last change or run-directory activity
    fingerprint: tuple[object, ...] | None = None
    stalled: bool = False


class Detector:
    """Decides completions exactly once; see the module docstring for the two passes."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        publish: Publish,
        flush: Callable[[], None],
        handoff: Handoff,
        settle_seconds: float,
        stall_after_seconds: float,
        connection: Callable[[], Connection],
        tables: StateTables,
        marks_allowed: Callable[[], bool] = lambda: True,
        shares: Shares | None = None,
        on_completed: Callable[[float], None] = lambda seen_at: None,
    ) -> None:
        self._tables = tables
        self._shares = shares or Alone()
        self._on_completed = on_completed  # given when the run's end was first seen (monotonic), for metrics
        self._marks_allowed = marks_allowed  # False in safe mode database_read_only: marks wait
        self._publish = publish
        self._settle = settle_seconds
        self._stall_after = stall_after_seconds
        self._connection = connection
        self._open: _Keyed[_OpenRun] = _Keyed()
        self._completions = Completions(ledger=ledger, publish=publish, flush=flush, handoff=handoff, tables=tables)
        self._finished: _Keyed[tuple[str | None, float]] = _Keyed()  # completed here, not yet archived
        # reopened under a terminal status: run -> (fingerprint last seen ended, when it last changed)
        self._ending: dict[str, tuple[tuple[object, ...] | None, float]] = {}
        # archived: run -> (run_dir, when its bag was seen); a write into its directory is reported once
        self._sealed: _Keyed[tuple[str | None, float]] = _Keyed()
        self._watched: dict[str, str | None] = {}
        self._watched_version = (0, 0, 0)
        self._seal_asked = -SEAL_ASK_SECONDS  # when seal_archived last asked the ledger (monotonic)
        self._warnings = OnceWarnings(publish)
        self._started = False
        self._rowid: int | None = None  # SQLite: runs inserted after this are new to us

    def configure(self, *, settle_seconds: float, stall_after_seconds: float) -> None:
        """Take the [reload] keys of a configuration reloaded on SIGHUP."""
        self._settle = settle_seconds
        self._stall_after = stall_after_seconds

    def watched_run_dirs(self) -> dict[str, str | None]:
        """run_id -> run_dir column of the runs whose directories are watched: the open ones, for
        stall detection, and the completed ones, for a late write, from their completion (not only once
        this loop has heard of their bag: a write in between is late too) until `LATE_WRITE_WATCH_SECONDS`
        after their bag."""
        version = (self._open.changes, self._finished.changes, self._sealed.changes)
        if version != self._watched_version:
            self._watched = {run_id: run.run_dir for run_id, run in self._open.items()}
            for ended in (self._finished, self._sealed):
                self._watched.update((run_id, run_dir) for run_id, (run_dir, _) in ended.items())
            self._watched_version = version
        return self._watched

    def open_counts(self) -> dict[str, int]:
        """Open runs by status, for a gauge read from another thread (`list` copies the values atomically)."""
        return dict(Counter(run.status for run in list(self._open.values())))

    def warn_once(self, key: str, what: str, detail: str, run_id: str | None = None) -> None:
        self._warnings.warn(key, what, detail, run_id)

    def clear_warning(self, key: str) -> None:
        self._warnings.clear(key)

    def start(self) -> None:
        """Load the ledger; on the very first start in a workspace, record the baseline first.

        Runs terminal at that moment are left for `archive --backfill`; doing this before the
        daemon says it is watching means a run that finishes afterwards is never mistaken for one.
        """
        self._completions.load(self._run_statuses)

    def _run_statuses(self) -> dict[str, str]:
        connection = self._connection()
        with connection.begin():
            return {run_id: status for run_id, (status, _) in fetch_all_runs(connection, self._tables).items()}

    # -- the full pass -------------------------------------------------------------------

    def run_reconcile_iteration(self, *, now: datetime, mono: float) -> None:
        """Compare every run with the ledger: what finished unseen, what reopened, what stalls.

        The runs are read one at a time and only the few that need more are kept (the open ones,
        the terminal ones the ledger has not finished): a long history is never held at once.
        """
        connection = self._connection()
        open_runs: dict[str, tuple[str, str | None]] = {}
        unsettled: dict[str, str] = {}  # terminal runs the ledger is not done with (looked at after the read)
        still_there: set[str] = set()  # of the runs we follow as open
        terminal: dict[str, str] = {}
        with connection.begin():
            self._rowid = fetch_newest_rowid(connection, self._tables)
            for run_id, status, run_dir in iterate_all_runs(connection, self._tables):
                if not self._warnings.admitted(run_id) or not self._shares.mine(run_id):
                    continue
                if run_id in self._open:
                    still_there.add(run_id)
                if status not in RUN_TERMINAL:
                    open_runs[run_id] = (status, run_dir)
                else:
                    terminal[run_id] = status
                    if len(terminal) >= LEDGER_BATCH:  # asked of the ledger in batches: never every run at once
                        unsettled.update(self._completions.unsettled(terminal))
                        terminal = {}
            unsettled.update(self._completions.unsettled(terminal))
            open_snapshots = fetch_snapshots(
                connection, self._tables, {run_id: status for run_id, (status, _) in open_runs.items()}
            )
            orphans = fetch_orphan_run_ids(connection, self._tables)
        for run_id in orphans:
            self.warn_once(
                f"orphan:{run_id}",
                "orphan rows",
                f"tasks or workstreams reference run {run_id!r}, which does not exist",
            )
        for run_id in [r for r in self._open if r not in still_there]:
            del self._open[run_id]
            self.warn_once(f"deleted:{run_id}", "run deleted", f"run {run_id} disappeared from the state database")
        self._completions.prefetch(run_id for run_id in open_runs if run_id not in self._open)
        terminal_unrecorded: dict[str, str] = {}
        for run_id, status in unsettled.items():  # outside the read: this may publish (a re-announcement)
            try:
                if self._completions.needs_completion(run_id, status):
                    terminal_unrecorded[run_id] = status
            except Exception:
                logger.exception("reconciling run %s failed; going on with the others", run_id)
        for run_id, (status, run_dir) in open_runs.items():
            try:
                self._observe_open(run_id, status, run_dir, open_snapshots.get(run_id), mono, announce=self._started)
            except Exception:
                logger.exception("reconciling run %s failed; going on with the others", run_id)
        self._complete_terminal(terminal_unrecorded, mono)
        self._completions.check_reopened(connection, mono, now)
        self._completions.commit()
        self._started = True

    def _observe_open(
        self,
        run_id: str,
        status: str,
        run_dir: str | None,
        snapshot: RunSnapshot | None,
        mono: float,
        *,
        announce: bool,
    ) -> None:
        if status not in RUN_STATUSES:
            self.warn_once(
                f"status:{run_id}:{status}",
                "unknown status",
                f"run {run_id} has status {status!r}, counted as not terminal",
                run_id,
            )
        self._completions.observe_open(run_id, status)
        known = self._open.get(run_id)
        if known is None:
            self._open[run_id] = _OpenRun(status, run_dir, mono, mono, snapshot.fingerprint if snapshot else None)
            if announce:
                self._publish(EventType.RUN_STATUS_CHANGED, {"from": None, "to": status}, run_id=run_id)
            return
        if known.status != status:
            self._publish(EventType.RUN_STATUS_CHANGED, {"from": known.status, "to": status}, run_id=run_id)
            known.status = status
            self._touch(known, mono)
        if snapshot is not None and snapshot.fingerprint != known.fingerprint:
            known.fingerprint = snapshot.fingerprint
            self._touch(known, mono)

    @staticmethod
    def _touch(run: _OpenRun, mono: float) -> None:
        run.changed_at = run.life_at = mono
        run.stalled = False

    # -- the cheap pass ------------------------------------------------------------------

    def run_detect_iteration(
        self, *, now: datetime, mono: float, touched: Collection[str] | None = None
    ) -> float | None:
        """Read the open runs and the few that may be done; mark those that are. Returns a recheck time.

        Two short transactions, so that the marks never wait for the reopen watch: first the open runs
        and the completions, then, by index seeks, which runs completed within the cheap window (and
        reopened runs waiting for their new end) have an open task or workstream now: as many seeks as
        such runs, never more with a longer history. `touched`: the runs a change notification named
        (PostgreSQL): only those can have changed, so only those are read; None reads every open run.
        Rows that changed and changed back between two passes are left to the reconciliation's full
        comparison, and archival compares once more.
        """
        watched = self._completions.watched(mono)
        waiting = [run_id for run_id in self._completions.waiting_to_end() if run_id not in self._open]
        for run_id in [r for r in self._ending if r not in waiting]:
            del self._ending[run_id]  # completed anew, or open again (followed as an open run)
        if touched is not None:
            watched = [run_id for run_id in watched if run_id in touched]
            waiting = [run_id for run_id in waiting if run_id in touched]
        recheck, open_now = self._detect_completions(now, mono, touched)
        when = self._watch_reopened(now, mono, watched, waiting, open_now)
        if when is not None:
            recheck = when if recheck is None else min(recheck, when)
        return recheck

    def _detect_completions(
        self, now: datetime, mono: float, touched: Collection[str] | None
    ) -> tuple[float | None, set[str]]:
        """The cheap pass's first part: open runs, those that left, and the marks. Returns the recheck
        time and the open runs it read."""
        connection = self._connection()
        among = None if touched is None else sorted(touched)
        with connection.begin():
            read = fetch_open_runs(connection, self._tables, among)
            open_now = {
                r: row
                for r, row in read.items()
                if (r in self._open or self._warnings.admitted(r)) and self._shares.mine(r)
            }
            self._completions.prefetch(r for r in open_now if r not in self._open)
            followed = self._open if among is None else [r for r in among if r in self._open]
            left = [run_id for run_id in followed if run_id not in open_now]
            left_statuses = fetch_statuses(connection, self._tables, left) if left else {}
            terminal = {r: s for r, s in left_statuses.items() if s in RUN_TERMINAL}
            if self._rowid is not None:
                new_runs, self._rowid = fetch_runs_after(connection, self._tables, self._rowid)
                new_ended = {
                    r: s
                    for r, s in self._warnings.admit(new_runs).items()
                    if s in RUN_TERMINAL and self._shares.mine(r)
                }
                self._completions.prefetch(new_ended)
                terminal.update((r, s) for r, s in new_ended.items() if not self._completions.known(r))
            candidates = fetch_candidates(connection, self._tables, among)
            snapshots = fetch_snapshots(
                connection, self._tables, {r: open_now[r][0] for r in candidates if r in open_now}
            )
            terminal_snapshots = fetch_snapshots(connection, self._tables, terminal)
        for run_id, (status, run_dir) in open_now.items():
            known = self._open.get(run_id)
            if known is None or known.status != status or run_id in snapshots or self._completions.known(run_id):
                self._observe_open(run_id, status, run_dir, snapshots.get(run_id), mono, announce=True)
        for run_id in left:
            left_status = left_statuses.get(run_id)
            if left_status is None:
                del self._open[run_id]
                self.warn_once(f"deleted:{run_id}", "run deleted", f"run {run_id} disappeared from the state database")
            elif left_status not in RUN_TERMINAL:
                self._observe_open(run_id, left_status, self._open[run_id].run_dir, None, mono, announce=True)
        self._complete_terminal({r: s.status for r, s in terminal_snapshots.items()}, mono, terminal_snapshots)
        to_mark: dict[str, tuple[RunSnapshot, str]] = {}
        recheck = self._decide_each(self._decide, snapshots, now, mono, to_mark)
        when = self._mark_all(to_mark, now, mono)
        if when is not None:
            recheck = when if recheck is None else min(recheck, when)
        self._completions.commit()
        return recheck, set(open_now)

    def _watch_reopened(
        self, now: datetime, mono: float, watched: list[str], waiting: list[str], open_now: set[str]
    ) -> float | None:
        """The cheap pass's second part: marked runs with an open row again are reopened; reopened runs
        whose rows have all ended again are completed anew. Returns a recheck time."""
        if not watched and not waiting:
            return None
        connection = self._connection()
        with connection.begin():
            busy = fetch_runs_with_open_rows(connection, self._tables, watched + waiting)
            ended = fetch_statuses(connection, self._tables, [r for r in waiting if r not in busy])
            ended_snapshots = fetch_snapshots(
                connection, self._tables, {r: s for r, s in ended.items() if s in RUN_TERMINAL and r not in open_now}
            )
        for run_id in watched:
            if run_id in busy:
                self._completions.changed(run_id, "a task or workstream is open again after the run was marked")
        for run_id in busy.intersection(waiting):
            self._ending[run_id] = (None, mono)
        recheck = self._decide_each(self._complete_again, ended_snapshots, now, mono, {})
        self._completions.commit()
        return recheck

    @staticmethod
    def _decide_each(
        decide_one: Callable[[RunSnapshot, datetime, float, dict[str, tuple[RunSnapshot, str]]], float | None],
        snapshots: dict[str, RunSnapshot],
        now: datetime,
        mono: float,
        to_mark: dict[str, tuple[RunSnapshot, str]],
    ) -> float | None:
        """Decide each run (one failing is logged, the others go on); the earliest recheck time asked for."""
        recheck: float | None = None
        for run_id, snapshot in snapshots.items():
            try:
                when = decide_one(snapshot, now, mono, to_mark)
            except Exception:
                logger.exception("deciding run %s failed; going on with the others", run_id)
                continue
            if when is not None:
                recheck = when if recheck is None else min(recheck, when)
        return recheck

    def take_over(self, mono: float) -> None:
        """Runs of a daemon whose lease ran out (asked on every wake-up, a quiet database's included): what it
        had completed is announced again (same id, so a repeat is recognisable) and handed to archival here;
        an intent to mark is decided anew."""
        taken = self._shares.take_over(mono)
        if not taken:
            return
        logger.warning("took over %d runs from daemons whose lease ran out", len(taken))
        self._completions.take_over(taken)
        intents = [run_id for run_id, phase in taken.items() if phase == "marking"]
        if intents:
            connection = self._connection()
            with connection.begin():
                statuses = fetch_statuses(connection, self._tables, intents)
            ended = {r: s for r, s in statuses.items() if s in RUN_TERMINAL}
            self._completions.abandon_marks([r for r in intents if r not in ended])
            self._complete_terminal(ended, mono)
        self._completions.commit()

    def _decide(
        self, snapshot: RunSnapshot, now: datetime, mono: float, to_mark: dict[str, tuple[RunSnapshot, str]]
    ) -> float | None:
        """The completion rule on an open run's rows; a run to mark joins the pass's batch."""
        run = self._open[snapshot.run_id]
        self._warnings.unknown_task_statuses(snapshot)
        if self._completions.finished(snapshot.run_id):
            return None  # the executor reopened it after its mark: it owns it, its own end is taken as it is
        decision = decide(snapshot, changed_at=run.changed_at, now=mono, settle_seconds=self._settle)
        if decision.verdict is Verdict.SETTLING:
            return decision.recheck_at
        if decision.verdict is not Verdict.MARK or decision.status is None:
            return None
        if not self._marks_allowed():
            return mono + MARK_RETRY_SECONDS  # safe mode: the decision stands, the write waits
        to_mark[snapshot.run_id] = (snapshot, decision.status)
        return None

    def _mark_all(self, to_mark: dict[str, tuple[RunSnapshot, str]], now: datetime, mono: float) -> float | None:
        """The pass's marks: the intents in one ledger write, the marks in one transaction of the state
        database (a compare-and-set each), the completions in one ledger write."""
        if not to_mark:
            return None
        held = self._completions.begin_marks({run_id: status for run_id, (_, status) in to_mark.items()})
        for run_id in [r for r in to_mark if r not in held]:
            self._open.pop(run_id, None)  # another daemon's intent or completion landed first: its run
        chosen = [to_mark[run_id] for run_id in to_mark if run_id in held]
        written = self._write_marks(chosen, now)
        self._completions.abandon_marks([s.run_id for s, _ in chosen if written.get(s.run_id) is not True])
        self._finish([End(s, status, "monitor") for s, status in chosen if written.get(s.run_id) is True], mono)
        return mono + MARK_RETRY_SECONDS if None in written.values() else None

    def _complete_again(
        self, snapshot: RunSnapshot, now: datetime, mono: float, _batch: dict[str, tuple[RunSnapshot, str]]
    ) -> float | None:
        """A reopened run under a terminal status whose tasks and workstreams are all terminal again.

        Decided again once settled: the monitor's own mark by the rule, written again where the new
        outcome differs (a compare-and-set from the status it wrote; a status already equal to the
        new outcome needs no write, which also covers a crash between that write and its record),
        any other status taken as the executor's. Then recorded with these rows, for archival.
        """
        run_id = snapshot.run_id
        self._warnings.unknown_task_statuses(snapshot)
        seen, changed_at = self._ending.get(run_id, (None, mono))
        if seen != snapshot.fingerprint:
            changed_at = mono
        self._ending[run_id] = (snapshot.fingerprint, changed_at)
        decision: Decision = decide_again(
            snapshot,
            decided=self._completions.decided(run_id),
            read_back=self._tables.mapping.runs.read_back,
            changed_at=changed_at,
            now=mono,
            settle_seconds=self._settle,
        )
        if decision.verdict is Verdict.SETTLING:
            return decision.recheck_at
        if decision.status is None:
            return None
        if decision.verdict is Verdict.MARK and self._tables.mapping.runs.read_back(decision.status) != snapshot.status:
            if not self._marks_allowed():
                return mono + MARK_RETRY_SECONDS
            written = self._write_marks([(snapshot, decision.status)], now).get(run_id)
            if written is not True:
                return None if written is False else mono + MARK_RETRY_SECONDS
        del self._ending[run_id]
        marked_by = "monitor" if decision.verdict is Verdict.MARK else "executor"
        self._finish([End(snapshot, decision.status, marked_by)], mono)
        return None

    def _write_marks(self, chosen: list[tuple[RunSnapshot, str]], now: datetime) -> dict[str, bool | None]:
        """The compare-and-sets: run -> True written, False the run changed first, None deferred (locked:
        warned once)."""
        if not chosen:
            return {}
        try:
            results = mark_runs(self._connection(), self._tables, chosen, now)
        except exc.OperationalError as err:
            for snapshot, _ in chosen:
                self.warn_once(
                    f"mark:{snapshot.run_id}",
                    "mark deferred",
                    f"could not mark run {snapshot.run_id}: {err.orig}; will retry",
                    snapshot.run_id,
                )
            return dict.fromkeys((snapshot.run_id for snapshot, _ in chosen), None)
        for snapshot, _ in chosen:
            result = results[snapshot.run_id]
            if result.marked and result.unreadable_times:
                self.warn_once(
                    f"times:{snapshot.run_id}",
                    "unreadable timestamps",
                    f"run {snapshot.run_id}: {result.unreadable_times} task finished_at values could not be "
                    "read; finished_at is the latest readable one",
                    snapshot.run_id,
                )
        return {run_id: None if result.deferred else result.marked for run_id, result in results.items()}

    # -- recording a completion ------------------------------------------------------------

    def _complete_terminal(
        self, statuses: dict[str, str], mono: float, snapshots: dict[str, RunSnapshot] | None = None
    ) -> None:
        """Runs found terminal without our mark: the executor's status (or our mark from before a crash)."""
        if not statuses:
            return
        if snapshots is None:
            connection = self._connection()
            with connection.begin():
                snapshots = fetch_snapshots(connection, self._tables, statuses)
        self._completions.prefetch(snapshots)
        self._finish([End(s, *self._completions.terminal_outcome(s)) for s in snapshots.values()], mono)

    def _finish(self, ends: list[End], mono: float) -> None:
        """Record and announce the runs' ends; they are no longer followed as open (whoever recorded them)."""
        if not ends:
            return
        previous = {end.snapshot.run_id: self._open.pop(end.snapshot.run_id, None) for end in ends}
        with_previous = [
            End(e.snapshot, e.status, e.marked_by, None if (p := previous[e.snapshot.run_id]) is None else p.status)
            for e in ends
        ]
        for run_id in self._completions.finish(with_previous, mono):
            known = previous.get(run_id)
            self._finished.pop(run_id, None)  # to the end: the window expires them in order
            self._finished[run_id] = (known.run_dir if known else None, mono)
            self._on_completed(known.changed_at if known else mono)

    def seal_archived(self, mono: float, *, now: bool = False) -> None:
        """Move runs archival has published from `_finished` to `_sealed`; forget them after their windows
        (`LATE_WRITE_WATCH_SECONDS` after the bag; `REOPEN_WATCH_SECONDS` after the end for a run without one).

        Asks the ledger only while some run completed here waits for its bag, and at most every
        SEAL_ASK_SECONDS unless `now` (after a burst a thousand runs wait minutes for their bags:
        asking about all of them on every wake-up was a third of a wake-up's time). The same answer
        says which of them archival found changed (reopened): followed from then on.
        """
        _expire(self._finished, mono - REOPEN_WATCH_SECONDS)
        _expire(self._sealed, mono - LATE_WRITE_WATCH_SECONDS)
        if not now and mono < self._seal_asked + SEAL_ASK_SECONDS:
            return
        self._seal_asked = mono
        phases = self._completions.archival_phases(list(self._finished))
        self._completions.learn_phases(phases)
        for run_id, phase in phases.items():
            if phase in BAGGED_PHASES:
                self._sealed.pop(run_id, None)  # to the end: the window expires them in order
                self._sealed[run_id] = (self._finished.pop(run_id)[0], mono)

    # -- life and stalls -----------------------------------------------------------------

    def note_activity(self, run_ids: Iterable[str], mono: float) -> None:
        """Run-directory activity counts as life for stall detection; after archival it is a warning."""
        run_ids = list(run_ids)
        if any(run_id in self._finished for run_id in run_ids):
            self.seal_archived(mono, now=True)  # a write just after the bag, before this loop heard of it: late
        for run_id in run_ids:
            run = self._open.get(run_id)
            if run is not None:
                run.life_at = mono
                run.stalled = False
            elif self._sealed.pop(run_id, None) is not None:
                self.warn_once(
                    f"late-write:{run_id}",
                    "write after archival",
                    f"run {run_id}: its directory changed after it was archived; the archive keeps what was there",
                    run_id,
                )

    def check_stalls(self, mono: float) -> None:
        for run_id, run in self._open.items():
            if run.status == "RUNNING" and not run.stalled and mono - run.life_at >= self._stall_after:
                run.stalled = True
                self._publish(EventType.RUN_STALLED, {"idle_s": round(mono - run.life_at, 3)}, run_id=run_id)
