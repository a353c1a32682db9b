"""The detection job's timing decisions, driven one pass at a time with a fake clock."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from orchestrator_monitor.detect.job import DetectionJob, Timing
from orchestrator_monitor.detect.watch import Signals
from orchestrator_monitor.events.types import EventType
from orchestrator_monitor.state.probe import Change


class FakeDetector:
    def __init__(self) -> None:
        self.passes: list[str] = []
        self.recheck: float | None = None
        self.activity: list[set[str]] = []

    def run_reconcile_iteration(self, *, now: datetime, mono: float) -> None:
        self.passes.append("reconcile")

    def run_detect_iteration(
        self, *, now: datetime, mono: float, touched: frozenset[str] | None = None
    ) -> float | None:
        self.passes.append("detect" if touched is None else f"detect {','.join(sorted(touched))}")
        return self.recheck

    def note_activity(self, run_ids: set[str], mono: float) -> None:
        self.activity.append(set(run_ids))

    def check_stalls(self, mono: float) -> None:
        return None

    def seal_archived(self, mono: float) -> None:
        return None

    def take_over(self, mono: float) -> None:
        return None

    def watched_run_dirs(self) -> dict[str, str | None]:
        return {}

    def warn_once(self, key: str, what: str, detail: str, run_id: str | None = None) -> None:
        self.passes.append(f"warn:{what}")

    def clear_warning(self, key: str) -> None:
        return None


class ScriptedProbe:
    def __init__(self, *answers: Change, touched: list[frozenset[str] | None] | None = None) -> None:
        self.answers = list(answers)
        self.touched_answers = list(touched or [])
        self.resets = 0
        self.checks = 0
        self._touched: frozenset[str] | None = None

    def check(self) -> Change:
        self.checks += 1
        self._touched = self.touched_answers.pop(0) if self.touched_answers else None
        return self.answers.pop(0) if self.answers else Change.NONE

    def touched(self) -> frozenset[str] | None:
        return self._touched

    def reset(self) -> None:
        self.resets += 1


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_job(
    probe: ScriptedProbe, clock: Clock, detector: FakeDetector | None = None, poll_seconds: float = 0.5, **options: Any
):
    detector = detector or FakeDetector()
    published: list[tuple[EventType, dict[str, Any]]] = []
    signals = Signals()
    job = DetectionJob(
        detector=detector,  # type: ignore[arg-type]
        probe=probe,
        signals=signals,
        timing=Timing(debounce_seconds=0.0, poll_seconds=poll_seconds, reconcile_seconds=60, confirm_seconds=0.01),
        on_guard=lambda storm: published.append(
            (EventType.SAFE_MODE_ENTERED if storm else EventType.SAFE_MODE_EXITED, {"reason": "monitoring_loop"})
        ),
        reopen=lambda: None,
        follow_runs=lambda runs: None,
        clock=clock,
        wall=lambda: datetime(2026, 11, 24, tzinfo=UTC),
        **options,
    )
    return job, detector, signals, published


def test_an_idle_daemon_reconciles_once_then_does_no_scans() -> None:
    clock = Clock()
    job, detector, _, _ = make_job(ScriptedProbe(), clock)
    stop = threading.Event()
    for _ in range(1000):  # 1000 polls with nothing changed: over eight minutes at the default interval
        job.run_detection_iteration(woke=False, stop=stop)
        clock.now += 0.5
    assert detector.passes == ["reconcile", "detect"]
    assert job.iterations == 1000


def test_behind_a_probe_that_may_miss_a_change_the_full_pass_runs_every_period_anyway() -> None:
    clock = Clock()
    job, detector, _, _ = make_job(ScriptedProbe(), clock, probe_may_miss=True)
    stop = threading.Event()
    for _ in range(1000):  # 500 s of polls that see nothing: a watermark that missed a change would say so
        job.run_detection_iteration(woke=False, stop=stop)
        clock.now += 0.5
    assert detector.passes == ["reconcile", "detect"] * 9  # at start, then every 60 s


def test_the_start_up_reconciliation_does_not_wait_for_the_first_poll() -> None:
    job, detector, signals, _ = make_job(ScriptedProbe(), Clock(), poll_seconds=3600)
    stop = threading.Event()
    thread = threading.Thread(target=job.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while "reconcile" not in detector.passes and time.monotonic() < deadline:
            stop.wait(0.01)  # the job's own thread makes the pass: awaited, with a deadline
    finally:
        stop.set()
        signals.wake.set()  # the job waits on its wake-up, then sees the stop
        thread.join()
    assert detector.passes[:1] == ["reconcile"]


def test_a_change_runs_the_cheap_pass_and_the_full_one_only_when_due_and_quiet() -> None:
    clock = Clock()
    probe = ScriptedProbe(Change.NONE, Change.CHANGED, Change.CHANGED, Change.NONE, Change.CHANGED, Change.CHANGED)
    job, detector, _, _ = make_job(probe, clock)
    stop = threading.Event()
    job.run_detection_iteration(woke=False, stop=stop)
    detector.passes.clear()
    job.run_detection_iteration(woke=False, stop=stop)
    assert detector.passes == ["detect"]
    clock.now += 61  # the period is over: a commit still gets the cheap pass alone, at once
    job.run_detection_iteration(woke=False, stop=stop)
    assert detector.passes == ["detect", "detect"]
    job.run_detection_iteration(woke=False, stop=stop)  # the first quiet moment: the full pass
    assert detector.passes == ["detect", "detect", "reconcile", "detect"]
    detector.passes.clear()
    clock.now += 61  # commits never stop: after one more period the full pass runs after the cheap one
    job.run_detection_iteration(woke=False, stop=stop)
    assert detector.passes == ["detect"]
    clock.now += 60
    job.run_detection_iteration(woke=False, stop=stop)
    assert detector.passes == ["detect", "detect", "reconcile", "detect"]


def test_a_slow_full_pass_on_a_long_history_runs_less_often() -> None:
    clock = Clock()

    class Slow(FakeDetector):
        def run_reconcile_iteration(self, *, now: datetime, mono: float) -> None:
            super().run_reconcile_iteration(now=now, mono=mono)
            clock.now += 4.0  # a million runs of history

        def run_detect_iteration(
            self, *, now: datetime, mono: float, touched: frozenset[str] | None = None
        ) -> float | None:
            clock.now += 3.0  # marks waiting for the executor's lock: not the full pass's cost
            return super().run_detect_iteration(now=now, mono=mono, touched=touched)

    job, detector, _, _ = make_job(ScriptedProbe(*[Change.CHANGED] * 60), clock, Slow())
    stop = threading.Event()
    full_passes = []
    for _ in range(60):  # the database changes all the time, for about 40 minutes
        job.run_detection_iteration(woke=False, stop=stop)
        if detector.passes.count("reconcile") > len(full_passes):
            full_passes.append(clock.now)
        clock.now += 36
    gaps = [later - earlier for earlier, later in itertools.pairwise(full_passes)]
    # Never quiet, so each full pass waits one more period: 2 x 50 x 4 s, not 2 x 60 s; and the
    # 3 s cheap pass just before it is not counted as its cost (which would make it 2 x 50 x 7 s).
    assert len(gaps) >= 2 and all(400 <= gap < 500 for gap in gaps), gaps


def test_a_file_event_before_the_commit_is_visible_is_confirmed_in_the_same_pass() -> None:
    clock = Clock()
    probe = ScriptedProbe(Change.NONE, Change.NONE, Change.NONE, Change.CHANGED)
    job, detector, signals, _ = make_job(probe, clock)
    stop = threading.Event()
    job.run_detection_iteration(woke=False, stop=stop)  # start-up reconciliation takes the first answer
    detector.passes.clear()
    signals.state_changed()
    job.run_detection_iteration(woke=True, stop=stop)
    assert detector.passes == ["detect"]


class ScriptedWait(threading.Event):
    """An event whose waits answer from a script (True: something came meanwhile) and are recorded."""

    def __init__(self, *answers: bool) -> None:
        super().__init__()
        self.answers = list(answers)
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return self.answers.pop(0) if self.answers else False


def woken(wake: ScriptedWait, events: int) -> tuple[FakeDetector, ScriptedProbe]:
    """A job past its start-up pass, woken by `events` file events of a commit its probe then sees."""
    probe = ScriptedProbe(Change.NONE, Change.CHANGED)
    job, detector, signals, _ = make_job(probe, Clock())
    stop = threading.Event()
    job.run_detection_iteration(woke=False, stop=stop)
    detector.passes.clear()
    signals.wake = wake
    for _ in range(events):
        signals.state_changed()
    job.run_detection_iteration(woke=True, stop=stop)
    return detector, probe


def test_a_wake_up_is_looked_at_within_a_millisecond() -> None:
    wake = ScriptedWait()  # nothing more comes: the first gap passes quietly
    detector, _ = woken(wake, 1)
    assert wake.waits == [0.0005]
    assert detector.passes == ["detect"]


def test_a_burst_of_file_events_waits_longer_while_they_keep_coming_and_gets_one_pass() -> None:
    wake = ScriptedWait(True, True, True, True, True)  # events during every gap: never quiet
    detector, probe = woken(wake, 20)
    assert wake.waits == [0.0005, 0.001, 0.002, 0.004]  # doubling, and bounded: 7.5 ms at most
    assert detector.passes == ["detect"] and probe.checks == 2  # one look, one pass for the whole burst


def test_a_configured_debounce_still_waits_for_a_quiet_period_of_its_length() -> None:
    probe = ScriptedProbe(Change.NONE, Change.CHANGED)
    job, detector, signals, _ = make_job(probe, Clock())
    job._timing = Timing(debounce_seconds=0.02, poll_seconds=0.5, reconcile_seconds=60)
    stop = threading.Event()
    job.run_detection_iteration(woke=False, stop=stop)
    detector.passes.clear()
    signals.wake = ScriptedWait(True)
    signals.state_changed()
    job.run_detection_iteration(woke=True, stop=stop)
    assert signals.wake.waits == [0.02, 0.02]
    assert detector.passes == ["detect"]


def test_an_unconfirmed_wake_up_looks_again_with_growing_gaps() -> None:
    probe = ScriptedProbe(Change.NONE, Change.NONE, Change.NONE, Change.NONE, Change.CHANGED)
    job, detector, signals, _ = make_job(probe, Clock())
    job.run_detection_iteration(woke=False, stop=threading.Event())
    detector.passes.clear()
    signals.wake = ScriptedWait()
    signals.state_changed()
    job.run_detection_iteration(woke=True, stop=threading.Event())
    # the first look (0.5 ms), then gaps from 0.5 ms, doubling: a commit visible a few ms late is read then
    assert signals.wake.waits == [0.0005, 0.0005, 0.001, 0.002]
    assert detector.passes == ["detect"]


def test_the_looks_at_an_unconfirmed_wake_up_are_never_more_than_4_ms_apart() -> None:
    job, _, signals, _ = make_job(ScriptedProbe(), Clock())
    job._timing = Timing(debounce_seconds=0.0, poll_seconds=0.5, reconcile_seconds=60, confirm_seconds=0.1)
    job.run_detection_iteration(woke=False, stop=threading.Event())
    signals.wake = ScriptedWait()
    signals.state_changed()  # the echo of our own mark, say: nothing to see for the whole 100 ms
    job.run_detection_iteration(woke=True, stop=threading.Event())
    looks = signals.wake.waits[1:]
    assert looks[:4] == [0.0005, 0.001, 0.002, 0.004] and max(looks) == 0.004
    assert sum(looks) == pytest.approx(0.1)


def test_file_events_during_the_looks_start_the_gaps_over() -> None:
    probe = ScriptedProbe(*[Change.NONE] * 6, Change.CHANGED)  # the start-up pass takes the first
    job, detector, signals, _ = make_job(probe, Clock())
    job.run_detection_iteration(woke=False, stop=threading.Event())
    detector.passes.clear()
    signals.wake = ScriptedWait(False, False, False, False, True)  # an executor's commit during our echo's looks
    signals.state_changed()
    job.run_detection_iteration(woke=True, stop=threading.Event())
    assert signals.wake.waits == [0.0005, 0.0005, 0.001, 0.002, 0.004, 0.0005]
    assert detector.passes == ["detect"]


def test_a_notification_s_runs_alone_are_read_and_a_settling_run_s_recheck_still_stands() -> None:
    clock = Clock()
    detector = FakeDetector()
    detector.recheck = 105.0  # a run settling somewhere
    probe = ScriptedProbe(
        Change.NONE, Change.CHANGED, Change.CHANGED, touched=[None, frozenset({"r1"}), frozenset({"r2"})]
    )
    job, _, _, _ = make_job(probe, clock, detector)
    stop = threading.Event()
    job.run_detection_iteration(woke=False, stop=stop)
    detector.passes.clear()
    detector.recheck = None  # the notified run needs no recheck
    job.run_detection_iteration(woke=False, stop=stop)
    assert detector.passes == ["detect r1"]
    clock.now = 105.0
    job.run_detection_iteration(woke=False, stop=stop)  # r2 notified, but the settling run is due: every run is read
    assert detector.passes == ["detect r1", "detect"]


def test_a_settling_run_is_looked_at_again_when_due_without_any_change() -> None:
    clock = Clock()
    detector = FakeDetector()
    detector.recheck = 105.0
    job, _, _, _ = make_job(ScriptedProbe(), clock, detector)
    stop = threading.Event()
    job.run_detection_iteration(woke=False, stop=stop)
    detector.passes.clear()
    detector.recheck = None
    clock.now = 104.9
    job.run_detection_iteration(woke=False, stop=stop)
    assert detector.passes == []
    clock.now = 105.0
    job.run_detection_iteration(woke=False, stop=stop)
    assert detector.passes == ["detect"]


def test_a_storm_of_wakeups_that_find_nothing_enters_safe_mode_and_leaves_it_when_calm() -> None:
    clock = Clock()
    job, detector, signals, published = make_job(ScriptedProbe(), clock)
    stop = threading.Event()
    for _ in range(300):  # 30 s of 10 wake-ups a second, 10 file events each, never a database change
        for _ in range(10):
            signals.state_changed()
        job.run_detection_iteration(woke=True, stop=stop)
        clock.now += 0.1
    assert published == [(EventType.SAFE_MODE_ENTERED, {"reason": "monitoring_loop"})]
    for _ in range(60):  # a window to forget the storm, then the calm period
        job.run_detection_iteration(woke=False, stop=stop)
        clock.now += 1.0
    assert published[-1] == (EventType.SAFE_MODE_EXITED, {"reason": "monitoring_loop"})
    assert detector.passes.count("detect") == 1  # the storm never set off a scan


def test_run_directory_activity_is_passed_on() -> None:
    clock = Clock()
    job, detector, signals, _ = make_job(ScriptedProbe(), clock)
    signals.run_activity("r1")
    signals.run_activity("r2")
    job.run_detection_iteration(woke=False, stop=threading.Event())
    assert detector.activity == [{"r1", "r2"}]


def test_a_missing_database_is_warned_once_and_a_replaced_one_reopened() -> None:
    clock = Clock()
    probe = ScriptedProbe(Change.MISSING, Change.MISSING, Change.REPLACED)
    reopened: list[bool] = []
    job, detector, _, _ = make_job(probe, clock)
    job._reopen = lambda: reopened.append(True)  # type: ignore[method-assign]
    stop = threading.Event()
    job.run_detection_iteration(woke=False, stop=stop)
    job.run_detection_iteration(woke=False, stop=stop)
    assert detector.passes == ["warn:database missing"]
    job.run_detection_iteration(woke=False, stop=stop)
    assert reopened == [True] and probe.resets == 1
    assert detector.passes[-3:] == ["warn:database replaced", "reconcile", "detect"]
