"""The detection job: when the detector's passes run, driven by file events and polls.

A wake-up looks at the probe almost at once (`PROBE_SECONDS`: the file events of one commit come
together), waiting longer, each gap twice the last, only while file events keep coming: a single
commit is read within a millisecond, a burst of them is still taken by one pass (a fixed trailing
debounce of `completion.debounce_seconds` replaces this where one is configured). In WAL mode the
inotify event can arrive before the commit is visible, so an unconfirmed wake-up keeps looking, with
growing gaps (at most CONFIRM_GAP_SECONDS), for up to `confirm_seconds`. A poll every `poll_seconds` backs the
watcher up, a full reconciliation runs every `reconcile_seconds` when the database changed
(and whenever the kernel dropped events; every period, changed or not, behind a probe that
can miss a change), and a storm of spurious wake-ups switches to
slow polling (`LoopGuard`). The full pass reads every run, so on a workspace with a long
history it takes seconds (4.4 s at a million runs); its period then stretches to
RECONCILE_COST_FACTOR times its last duration (at most RECONCILE_MAX_SECONDS), so that a
safety net never takes more than about 2% of a core, nor holds up the cheap passes that often.
Everything it needs is passed in; `run_detection_iteration` is one pass, so tests drive it
directly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ..state.probe import Change
from ..timefmt import utc_now
from .detector import Detector
from .loopguard import GuardChange, LoopGuard
from .watch import Signals

logger = logging.getLogger(__name__)

STORM_POLL_SECONDS = 2.0
CONFIRM_SECONDS = 0.1  # how long a file event's commit may take to become visible
PROBE_SECONDS = 0.0005  # the first look after a wake-up, and the first gap of the confirmation's looks
PROBE_GAPS = 4  # a look waits again while file events keep coming, at most this many times (7.5 ms in all)
# the longest gap between the looks at an unconfirmed wake-up: a commit becomes visible once the writer's
# fsync is done, which sends no file event (tens of ms under load), and is read at most this late
CONFIRM_GAP_SECONDS = 0.004
DEBOUNCE_LIMIT = 10  # a burst never delays a pass by more than this many (configured) debounce periods
RECONCILE_COST_FACTOR = 50.0  # the full pass's period is at least this many times its duration
RECONCILE_MAX_SECONDS = 900.0  # ...but never longer: on PostgreSQL it is what finds runs inserted terminal


class Probe(Protocol):
    def check(self) -> Change: ...

    def reset(self) -> None: ...

    def touched(self) -> frozenset[str] | None:
        """The runs the change seen by the last `check` was about, when the probe knows (None: any run)."""
        ...


@dataclass(frozen=True)
class Timing:
    debounce_seconds: float
    poll_seconds: float
    reconcile_seconds: float
    confirm_seconds: float = CONFIRM_SECONDS


class DetectionJob:
    """Runs the detector on wake-ups; `run` loops until `stop` is set."""

    def __init__(
        self,
        *,
        detector: Detector,
        probe: Probe,
        signals: Signals,
        timing: Timing,
        on_guard: Callable[[bool], None],
        reopen: Callable[[], None],
        follow_runs: Callable[[dict[str, str | None]], None],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = utc_now,
        probe_may_miss: bool = False,
    ) -> None:
        self._detector = detector
        self._probe = probe
        self._probe_may_miss = probe_may_miss  # a watermark: the full pass runs every period, changed or not
        self._signals = signals
        self._timing = timing
        self._on_guard = on_guard  # the loop guard's transitions (True: a loop), for safe mode
        self._reopen = reopen
        self._follow_runs = follow_runs
        self._clock = clock
        self._wall = wall
        self._guard = LoopGuard()
        self._recheck: float | None = None
        self._next_reconcile: float | None = None  # None: the start-up reconciliation is still to run
        self._reconcile_period = timing.reconcile_seconds  # stretched when the full pass is slow
        self._dirty = True  # the database changed since the last reconciliation
        self._missing = False
        self._after_pass = False  # the last iteration ran a pass (which may have marked runs)
        self.iterations = 0  # progress, for the service's watchdog: passes made, not passes that found work

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            if self._guard.storm:  # safe mode monitoring_loop: file events are not listened to, only polls
                stop.wait(self._timeout())
                woke = False
            else:
                woke = self._signals.wake.wait(self._timeout())
            if stop.is_set():
                return
            self.run_detection_iteration(woke=woke, stop=stop)

    def _timeout(self) -> float:
        if self._next_reconcile is None:
            return 0.0  # the start-up reconciliation runs at once, not a poll (or a change) later
        poll = STORM_POLL_SECONDS if self._guard.storm else self._timing.poll_seconds
        if self._recheck is not None:
            poll = min(poll, max(0.0, self._recheck - self._clock()))
        return poll

    def run_detection_iteration(self, *, woke: bool, stop: threading.Event) -> None:
        """One pass: settle the burst, ask the probe, run what is due."""
        self.iterations += 1
        if woke and not self._guard.storm:
            self._debounce()
        self._signals.wake.clear()
        file_events, activity, overflowed = self._signals.take()
        change = self._probe.check()
        if woke and file_events and change is Change.NONE and not self._guard.storm:
            change = self._confirm(stop)
        # The file events that follow a pass are mostly its own marks' echo (data_version ignores
        # our own commits, so they can never start a pass): not spurious, or every run the monitor
        # marks would count toward a "loop" and a busy executor would trip the guard.
        self._observe_guard(file_events if change is Change.NONE and not self._after_pass else 0)
        self._after_pass = False
        mono = self._clock()
        if change is Change.MISSING:
            self._warn_missing()
            return
        if self._missing or change is Change.REPLACED:
            self._recover_database(change)
            overflowed = True
        if change is Change.CHANGED:
            self._dirty = True
        now = self._wall()
        recheck_due = self._recheck is not None and mono >= self._recheck
        cheap_due = change is Change.CHANGED or recheck_due
        if cheap_due and self._next_reconcile is not None and not overflowed:
            # a notification's runs alone, unless a settling run is due too (it may be any run)
            touched = self._probe.touched() if change is Change.CHANGED and not recheck_due else None
            recheck = self._detector.run_detect_iteration(now=now, mono=mono, touched=touched)
            if touched is not None and self._recheck is not None:  # the other runs' recheck still stands
                recheck = self._recheck if recheck is None else min(recheck, self._recheck)
            self._recheck = recheck
            self._after_pass = True
        if overflowed or self._reconcile_due(mono, cheap_due):
            started = self._clock()  # the full pass alone: not the cheap pass's marks before it
            self._detector.run_reconcile_iteration(now=now, mono=mono)
            self._dirty = False
            self._next_reconcile = mono + self._stretch_period(self._clock() - started)
            self._recheck = self._detector.run_detect_iteration(now=now, mono=mono)
            self._after_pass = True
        if activity:
            self._detector.note_activity(activity, mono)
        self._detector.check_stalls(mono)
        self._detector.take_over(mono)
        self._detector.seal_archived(mono)
        self._follow_runs(self._detector.watched_run_dirs())

    def _stretch_period(self, took: float) -> float:
        """The next full pass's period: the configured one, or longer when the last pass was slow."""
        period = max(self._timing.reconcile_seconds, min(RECONCILE_COST_FACTOR * took, RECONCILE_MAX_SECONDS))
        if period > self._timing.reconcile_seconds and self._reconcile_period == self._timing.reconcile_seconds:
            logger.info(
                "the full reconciliation took %.1f s: it now runs every %.0f s instead of %.0f s",
                took,
                period,
                self._timing.reconcile_seconds,
            )
        self._reconcile_period = period
        return period

    def _reconcile_due(self, mono: float, busy: bool) -> bool:
        """At start; then when the database changed and the period is over, at a quiet moment.

        A commit that completes a run is never kept waiting behind the full pass (hundreds of
        milliseconds on a big workspace): while commits keep coming, the pass waits for one
        iteration without a change, for at most one more period.
        """
        if self._next_reconcile is None:
            return True
        if not (self._dirty or self._probe_may_miss) or mono < self._next_reconcile:
            return False
        return not busy or mono >= self._next_reconcile + self._reconcile_period

    def _debounce(self) -> None:
        """Until the file events pause: a gap of PROBE_SECONDS, doubled each time events came during
        the last one (at most PROBE_GAPS gaps); a configured debounce period instead, where one is set."""
        self._signals.wake.clear()
        debounce = self._timing.debounce_seconds
        if debounce > 0:
            limit = self._clock() + DEBOUNCE_LIMIT * debounce
            while self._clock() < limit and self._signals.wake.wait(debounce):
                self._signals.wake.clear()
            return
        gap = PROBE_SECONDS
        for _ in range(PROBE_GAPS):
            if not self._signals.wake.wait(gap):
                return
            self._signals.wake.clear()
            gap *= 2

    def _confirm(self, stop: threading.Event) -> Change:
        """Look again with growing gaps (from PROBE_SECONDS, doubling up to CONFIRM_GAP_SECONDS) until
        the change shows or `confirm_seconds` have passed: most commits show within a few milliseconds.
        New file events cut the gap short and start the gaps over: most wake-ups that find nothing are
        the echo of the monitor's own marks, and a commit of the executor's during one must not wait
        for a long gap. (A stop sets the wake-up too.)"""
        waited, gap = 0.0, PROBE_SECONDS
        while waited < self._timing.confirm_seconds:
            gap = min(gap, self._timing.confirm_seconds - waited)
            more = self._signals.wake.wait(gap)
            if stop.is_set():
                break
            waited += gap
            if more:
                self._signals.wake.clear()
                gap = PROBE_SECONDS
            else:
                gap = min(2 * gap, CONFIRM_GAP_SECONDS)
            change = self._probe.check()
            if change is not Change.NONE:
                return change
        return Change.NONE

    def _observe_guard(self, spurious: int) -> None:
        transition = self._guard.observe(self._clock(), spurious)
        if transition is GuardChange.ENTERED:
            logger.warning(
                "monitoring loop: too many wake-ups that find nothing; polling every %s s", STORM_POLL_SECONDS
            )
            self._on_guard(True)
        elif transition is GuardChange.EXITED:
            self._on_guard(False)

    def _warn_missing(self) -> None:
        if not self._missing:
            self._missing = True
            self._detector.warn_once("db:missing", "database missing", "the state database file is gone; waiting")

    def _recover_database(self, change: Change) -> None:
        what = "replaced" if change is Change.REPLACED else "back"
        logger.warning("state database %s: reopening and reconciling", what)
        self._reopen()
        self._probe.reset()
        self._missing = False
        self._detector.clear_warning("db:missing")
        self._detector.warn_once(
            f"db:{what}:{self._clock()}",
            f"database {what}",
            f"the state database file is {what}; reopened, reconciling",
        )
