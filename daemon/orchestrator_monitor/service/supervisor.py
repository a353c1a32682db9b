"""The daemon's health, kept current by the scheduled checks and the detection loop.

`Supervisor` holds the safe-mode machine's state (`safemode`), feeds it the checks'
observations (`health`), publishes what the machine says, runs the escalation hooks, and
answers the questions the rest of the daemon asks: may the detector mark (`marks_allowed`),
may archival run (`archival_allowed`), is the daemon live and healthy (`/healthz`, the
watchdog). The `run_*_iteration` methods are the scheduled jobs' single passes; `daemon.py`
schedules them and wraps each with `isolate`, which keeps its recent errors for the heartbeat.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from ..config import Settings
from ..events.subscription import SinkHealth, Subscription
from ..events.types import Event, EventType, Publish
from ..ledger.monitor_db import Heartbeat
from ..streaks import Streak
from ..timefmt import utc_now
from .escalation import deliver_escalation
from .health import HEARTBEAT, STORAGE, check_archival_storage
from .metrics import MonitorMetrics
from .notify import Notifier
from .safemode import Condition, Effect, HealthState, Observation, observe, repeat_escalations

logger = logging.getLogger(__name__)

RECENT_ERRORS = 5
RECENT_ERROR_SECONDS = 300.0
REPORTS = "report_generation"
LOOP = "monitoring_loop"


class LoopProgress:
    """Whether a loop makes progress: its counter moved within `limit_seconds` (progress, not success)."""

    def __init__(self, limit_seconds: float, clock: Callable[[], float]) -> None:
        self._counter: Callable[[], int] = lambda: 0
        self._limit = limit_seconds
        self._clock = clock
        self._seen = 0
        self._moved_at = clock()

    def follow(self, counter: Callable[[], int]) -> None:
        """The loop's counter, once the loop exists (it is built after those who ask about it)."""
        self._counter = counter
        self._seen = counter()

    def age_seconds(self) -> float:
        """Seconds since the counter last moved (as of this call)."""
        now, count = self._clock(), self._counter()
        if count != self._seen:
            self._seen, self._moved_at = count, now
        return now - self._moved_at

    def live(self) -> bool:
        return self.age_seconds() <= self._limit


class Supervisor:
    """See the module docstring. Thread-safe: checks, the detection thread and the web server share it."""

    def __init__(
        self,
        *,
        settings: Settings,
        publish: Publish,
        metrics: MonitorMetrics,
        notifier: Notifier,
        detection: LoopProgress,
        check_database: Callable[[float], Observation],
        record_beats: Callable[[list[Heartbeat]], None],
        sink_health: Callable[[], Mapping[str, SinkHealth]] = dict,
        daemons: Callable[[], list[dict[str, Any]]] = list,
        clock: Callable[[], float] = time.monotonic,
        escalate: Callable[[Settings, dict[str, Any]], None] = lambda s, e: deliver_escalation(s.escalation, e),
    ) -> None:
        self.settings = settings
        self._publish = publish
        self._metrics = metrics
        self._notifier = notifier
        self._detection = detection
        self._check_database = check_database
        self._record_beats = record_beats  # the heartbeat rows (and, on a shared database, the daemon's lease)
        self._sink_health = sink_health
        self._read_daemons = daemons  # several daemons on one PostgreSQL: read at every heartbeat
        self._daemons: list[dict[str, Any]] = []
        self._clock = clock
        self._escalate = escalate
        self._lock = threading.Lock()
        self._state = HealthState()
        self._started = clock()
        self._last_beat = clock()
        self._last_event: float | None = None
        self._errors: dict[str, deque[tuple[float, str]]] = {}

    # -- what the rest of the daemon asks ---------------------------------------------------

    def marks_allowed(self) -> bool:
        return self._state.marks_allowed

    def archival_allowed(self) -> bool:
        return self._state.archival_allowed

    def safe_modes(self) -> frozenset[str]:
        return self._state.safe_modes

    def live(self) -> bool:
        scheduler_age = self._clock() - self._last_beat
        return self._detection.live() and scheduler_age <= self.settings.health.stale_after_seconds

    def healthy(self) -> bool:
        return self.live() and self._state.passing

    def heartbeat_age_seconds(self) -> float:
        return self._clock() - self._last_beat

    def report(self) -> dict[str, Any]:
        """The daemon's view of its health, for `/api/health` and the heartbeat row."""
        state, live = self._state, self.live()
        return {
            "live": live,
            "healthy": live and state.passing,
            "checks": {name: {"status": str(o.condition), "detail": o.detail} for name, o in state.checks.items()},
            "safe_modes": sorted(state.safe_modes),
            "escalations": sorted(state.incidents),
            "heartbeat_age_s": round(self.heartbeat_age_seconds(), 3),
            "detection_lag_s": round(self._detection.age_seconds(), 3),
            "recent_errors": self.recent_errors(),
            "daemons": self._daemons,
        }

    # -- observations -------------------------------------------------------------------------

    def observe(self, seen: Observation) -> None:
        with self._lock:
            before = self._state
            self._state, effects = observe(before, seen, self._clock(), self.settings.escalation.repeat_seconds)
            escalations = self._apply(before, effects)
        self._deliver(escalations)

    def observe_loop(self, storm: bool) -> None:
        """The detection job's loop guard changed: safe mode `monitoring_loop` follows it."""
        detail = "wake-ups that find nothing: polling slowly" if storm else "calm again"
        self.observe(Observation(LOOP, Condition.LOOP if storm else Condition.OK, detail))

    def observe_outcome(self, event: Event) -> None:
        """What archival and reports said: a full disk mid-archive, a failed or a written report."""
        if event.type is EventType.ARCHIVE_FAILED and event.data["reason"] == "storage_full":
            self.observe(Observation(STORAGE, Condition.FULL, f"run {event.run_id}: {event.data['detail']}"))
        elif event.type is EventType.REPORT_FAILED:
            self.observe(Observation(REPORTS, Condition.FAILED, f"run {event.run_id}: {event.data['detail']}"))
        elif event.type is EventType.REPORT_GENERATED:
            self.observe(Observation(REPORTS, Condition.OK, f"run {event.run_id}: reports written"))

    def _apply(self, before: HealthState, effects: list[Effect]) -> list[dict[str, Any]]:
        """Publish the machine's events (under the lock, so they go out in the order decided).

        Returns the escalations for `_deliver`, which runs their hooks after the lock is released:
        a slow command or webhook must not hold up the other observers.
        """
        escalations = []
        for effect in effects:
            self._publish(effect.type, dict(effect.data))
            if effect.type is EventType.ESCALATION:
                logger.error("ESCALATION %s: %s", effect.data["trigger"], effect.data["detail"])
                escalations.append(dict(effect.data))
        self._metrics.show_health(self._state, self._detection.live())
        if effects and (before.safe_modes != self._state.safe_modes or before.passing != self._state.passing):
            self._notifier.status(self.status_line())
        return escalations

    def _deliver(self, escalations: list[dict[str, Any]]) -> None:
        """Each hook in a daemon thread of its own: a hanging command or webhook holds up neither
        the check that raised it nor SIGTERM (the scheduler's worker threads are joined at exit)."""
        for escalation in escalations:
            threading.Thread(
                target=self._escalate, args=(self.settings, escalation), name="escalation", daemon=True
            ).start()

    def status_line(self) -> str:
        state = self._state
        if state.passing:
            return "healthy"
        failing = [
            f"{name}={o.condition}" for name, o in sorted(state.checks.items()) if o.condition is not Condition.OK
        ]
        modes = f"; safe mode: {', '.join(sorted(state.safe_modes))}" if state.safe_modes else ""
        return f"unhealthy: {', '.join(failing)}{modes}"

    # -- the scheduled jobs ---------------------------------------------------------------------

    def run_heartbeat_iteration(self, now: datetime, outcomes: Subscription | None = None) -> None:
        """Liveness of the loops and network sinks, escalation repeats, archival and report outcomes, heartbeats."""
        self._last_beat = self._clock()
        age = self._detection.age_seconds()
        if self._detection.live():
            self.observe(Observation(HEARTBEAT, Condition.OK, "loops make progress"))
        else:
            self.observe(Observation(HEARTBEAT, Condition.STALE, f"the detection loop made no pass for {age:.0f} s"))
        for name, sink in self._sink_health().items():  # a network sink's outage: unhealthy, no safe mode
            condition = Condition.OK if sink.ok else Condition.UNREACHABLE
            self.observe(Observation(f"{name}_sink", condition, sink.detail))
        while outcomes is not None and (item := outcomes.get(0)) is not None:
            if isinstance(item, Event):  # a Missed marker: only the latest outcome matters, and it follows
                self.observe_outcome(item)
        with self._lock:
            before = self._state
            self._state, effects = repeat_escalations(before, self._clock(), self.settings.escalation.repeat_seconds)
            escalations = self._apply(before, effects)
        self._deliver(escalations)
        self._daemons = self._read_daemons()
        pid, errors = os.getpid(), tuple(self.recent_errors())
        self._record_beats(
            [
                Heartbeat("scheduler", pid, now, errors, self.report()),
                Heartbeat("detection", pid, now - timedelta(seconds=age)),
            ]
        )
        every = self.settings.health.heartbeat_event_seconds
        if self._last_event is None or self._clock() - self._last_event >= every:
            self._last_event = self._clock()
            uptime = round(self._clock() - self._started, 3)
            self._publish(EventType.HEARTBEAT, {"uptime_s": uptime, "safe_mode": sorted(self._state.safe_modes)})

    def run_db_check_iteration(self, now: datetime) -> None:
        self.observe(self._check_database(self.settings.health.quick_check_seconds))

    def run_storage_check_iteration(self, now: datetime) -> None:
        settings = self.settings
        root = settings.resolve(settings.archive.root)
        self.observe(
            check_archival_storage(
                root, reserve_bytes=settings.archive.reserve_bytes, min_free_percent=settings.health.min_free_percent
            )
        )

    # -- error isolation per job ------------------------------------------------------------------

    def isolate(self, job: str, iteration: Callable[[datetime], object]) -> Callable[[], None]:
        """The job as the scheduler runs it: one pass at `now`; an exception is logged and kept, never raised."""

        streak = Streak()  # each job runs on one thread at a time (max_instances=1)

        def run() -> None:
            try:
                iteration(utc_now())
            except Exception as err:
                self.record_error(job, repr(err))
                if streak.news(repr(err)):
                    logger.exception("%s failed; next run as scheduled", job)
            else:
                if failures := streak.ended():
                    logger.info("%s works again after %d failed runs", job, failures)

        return run

    def record_error(self, job: str, text: str) -> None:
        """A job's error (the last five, for five minutes), kept for the heartbeat and `/api/health`."""
        with self._lock:
            errors = self._errors.setdefault(job, deque(maxlen=RECENT_ERRORS))
        errors.append((self._clock(), f"{job}: {text}"))

    def recent_errors(self) -> list[str]:
        cutoff = self._clock() - RECENT_ERROR_SECONDS
        return [text for errors in self._errors.values() for at, text in list(errors) if at >= cutoff]
