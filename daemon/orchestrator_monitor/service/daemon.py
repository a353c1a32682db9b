"""The daemon: the one place that builds everything, runs it and stops it, top to bottom.

settings -> state database -> the monitor's own database and this daemon's place in it (the workspace
lock on SQLite, the daemon id's lease on a shared PostgreSQL) -> event bus and metrics -> ledger -> supervisor
(health, safe mode) -> detector -> watchers -> detection thread -> scheduled checks -> the
front the command passed in (the web server) -> READY -> the main loop (SIGHUP reloads,
watchdog pings while the loops make progress) until the stop event -> undo it all in reverse
(an `ExitStack`), with `MONITOR_STOPPED` the last line written.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from .. import __version__
from ..alerts.delivery import require_apprise
from ..alerts.facts import state_run_details
from ..alerts.sink import AlertSink, open_alert_sink
from ..archive.sizes import ArchiveSizes
from ..config import Settings
from ..detect.change_source import watch_database
from ..detect.detector import Detector
from ..detect.job import DetectionJob, Timing
from ..detect.shares import ClusterShares
from ..detect.watch import RunDirWatcher, RunFollower, Signals
from ..errors import MonitorError, Unavailable
from ..events.bus import Bus
from ..events.publishing import open_bus
from ..events.subscription import Subscription
from ..events.types import EventType
from ..finish.worker import ArchiveWorker
from ..ledger.catalog import Catalog
from ..ledger.members import IdTaken, Membership
from ..ledger.monitor_db import Heartbeat, record_heartbeats
from ..ledger.runs import Ledger
from ..ledger.store import MonitorStore, open_store
from ..lock import hold_lock
from ..offload.remote import make_confirmer
from ..retention.prune import retention_job
from ..state.access import StateDatabase, open_state, settle_seconds
from ..state.connection import StateConnection
from ..state.engine import create_archival_table, open_engine, sqlite_path
from ..state.mapping import SchemaMapping
from ..streaks import Streak
from ..workspace import Workspace
from .audit import audit_job
from .health import DATABASE, HEARTBEAT, STORAGE, DatabaseChecker
from .memory import memory_release_job
from .metrics import MonitorMetrics
from .notify import Notifier
from .offload import offload_job
from .reload import merge_reloadable
from .signals import on_continue
from .supervisor import LoopProgress, Supervisor

if TYPE_CHECKING:  # openlineage-python is an optional extra: imported only when enabled (open_lineage)
    from ..lineage.sink import LineageSink

logger = logging.getLogger(__name__)

THREAD_JOIN_SECONDS = 5.0  # SIGTERM must end the process within 10 s, all joins included
ERROR_PAUSE_SECONDS = 1.0  # a failing detection pass is retried after this, doubling up to the maximum
MAX_ERROR_PAUSE_SECONDS = 8.0
BACKOFF_RESET_SECONDS = 60.0  # a pass loop that ran this long before failing starts the backoff over
MAIN_LOOP_SECONDS = 1.0
GIL_SWITCH_SECONDS = 0.001
LIVENESS_FLOOR_SECONDS = 15.0  # the detection loop may make no pass for this long and still be live
TAKE_OVER_CHECK_SECONDS = 2.0  # how often a daemon on a shared database looks for runs of a dead one


def record_beats(
    store: MonitorStore, membership: Membership, step_down: Callable[[IdTaken], None], beats: list[Heartbeat]
) -> None:
    """The jobs' heartbeat rows; on a shared database, also this daemon's lease, while its id is its own."""
    record_heartbeats(store, beats)
    if store.shared:
        try:
            membership.beat()
        except IdTaken as err:
            step_down(err)


@dataclass(frozen=True)
class RunningDaemon:
    """What a front may use of the running daemon: it reads, never wires."""

    settings: Settings
    bus: Bus
    metrics: MonitorMetrics
    health: Callable[[], dict[str, Any]]


Front = Callable[[RunningDaemon], AbstractContextManager[object]]  # served while the daemon runs


def run_detection_thread(job: DetectionJob, stop: threading.Event, on_error: Callable[[str], None]) -> None:
    """Run the job until `stop`; a failure is logged, kept for the heartbeat and retried with backoff."""
    pause = ERROR_PAUSE_SECONDS
    streak = Streak()  # a database away for minutes: one line, not one per retry
    while not stop.is_set():
        started = time.monotonic()
        try:
            job.run(stop)
        except Exception as err:
            if time.monotonic() - started > BACKOFF_RESET_SECONDS:
                pause = ERROR_PAUSE_SECONDS
                streak.ended()
            on_error(repr(err))
            if streak.news(repr(err)):
                logger.exception("detection pass failed; retrying in %.0f s", pause)
            stop.wait(pause)
            pause = min(pause * 2, MAX_ERROR_PAUSE_SECONDS)


Job = tuple[str, float, Callable[[datetime], object]]


class StartedThreadPool(ThreadPoolExecutor):
    """APScheduler's thread pool with every worker started at once. concurrent.futures starts a worker
    only when all are busy, so a rare overlap of the checks added a thread hours in (a two-hour soak's
    thread count stepped from 19 to 20 at minute 70); a service's thread count should be set at start."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers, pool_kwargs={"thread_name_prefix": "scheduled"})
        started = threading.Barrier(workers + 1)
        for _ in range(workers):
            self._pool.submit(started.wait)  # each worker waits for the others: none is idle for the next
        started.wait()


def start_scheduler(
    supervisor: Supervisor, settings: Settings, outcomes: Subscription, more: tuple[Job | None, ...] = ()
) -> BackgroundScheduler:
    """The scheduled checks (and `more` jobs): each starts at once, may start half its interval late, never
    overlaps itself."""
    health = settings.health
    jobs: list[Job] = [
        (HEARTBEAT, health.heartbeat_seconds, partial(supervisor.run_heartbeat_iteration, outcomes=outcomes)),
        (DATABASE, health.db_check_seconds, supervisor.run_db_check_iteration),
        (STORAGE, health.storage_check_seconds, supervisor.run_storage_check_iteration),
        *(job for job in more if job is not None),
    ]
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # not two log lines per job run
    scheduler = BackgroundScheduler(
        timezone=UTC,
        executors={"default": StartedThreadPool(len(jobs))},
        job_defaults={"coalesce": True, "max_instances": 1},
    )
    for name, seconds, iteration in jobs:
        scheduler.add_job(
            supervisor.isolate(name, iteration),
            "interval",
            seconds=seconds,
            id=name,
            name=name,
            misfire_grace_time=max(1, round(seconds / 2)),
            next_run_time=datetime.now(UTC),
        )
    scheduler.start()
    return scheduler


def reload_settings(
    current: Settings,
    load: Callable[[], Settings],
    detector: Detector,
    supervisor: Supervisor,
    mapping: SchemaMapping,
    alerts: AlertSink | None = None,
) -> Settings:
    """SIGHUP: take the new configuration's [reload] keys; a bad one keeps the running one and says why."""
    try:
        applied, waiting = merge_reloadable(current, load())
        if alerts is not None:
            alerts.configure(applied.alerts)
        elif applied.alerts.rules:
            require_apprise()  # not installed: Unavailable, saying which extra
    except MonitorError as err:
        logger.error("configuration not reloaded, the running one is kept: %s", err)
        return current
    detector.configure(
        settle_seconds=settle_seconds(applied, mapping), stall_after_seconds=applied.completion.stall_after_seconds
    )
    supervisor.settings = applied
    logger.info("configuration reloaded%s", "" if applied != current else " (no change)")
    if waiting:
        logger.warning("configuration reloaded; these keys take effect on restart: %s", ", ".join(waiting))
    return applied


def open_alerts(settings: Settings, state: StateDatabase) -> AlertSink | None:
    """The alert sink, also without rules; None without apprise (an optional extra) and without rules, which
    need it (Unavailable)."""
    if not settings.alerts.rules:
        try:
            require_apprise()
        except Unavailable:
            return None
    return open_alert_sink(
        settings.alerts,
        Workspace.from_settings(settings).progress_db,
        busy_timeout_seconds=settings.database.busy_timeout_seconds,
        details=state_run_details(state.engine, state.tables),
    )


def open_lineage(settings: Settings, state: StateDatabase) -> LineageSink:
    """The OpenLineage sink (`openlineage.enabled`); its library is an optional extra, imported only then."""
    try:
        from ..lineage.sink import open_lineage_sink, state_run_names
    except ImportError:
        raise Unavailable(
            "openlineage.enabled needs openlineage-python: pip install 'orchestrator-monitor[openlineage]'"
        ) from None
    return open_lineage_sink(settings, state_run_names(state.engine, state.tables))


def report_with_alerts(supervisor: Supervisor, alerts: AlertSink) -> dict[str, Any]:
    """`/api/health`: the supervisor's view and the alerts' delivery (pending, undeliverable, dropped)."""
    return {**supervisor.report(), "alerts": alerts.stats()}


def freeze_start_up() -> None:
    """Leave what start-up built (modules, the mapping, SQLAlchemy's tables and compiled statements) out of
    every later collection: it lives as long as the daemon, and the collector's full passes would otherwise
    walk all of it again and again (a pause in the detection thread each time)."""
    gc.collect()
    gc.freeze()


def run_daemon(
    settings: Settings,
    stop: threading.Event,
    *,
    on_ready: Callable[[], None] = lambda: None,
    notifier: Notifier | None = None,
    watchdog_seconds: float | None = None,
    reload_requested: threading.Event | None = None,
    load_settings: Callable[[], Settings] | None = None,
    front: Front | None = None,
) -> None:
    """Run the monitor until `stop` is set. Raises `Unavailable` (exit 3) for a missing or held workspace, or a
    missing database or one that does not fit the schema mapping (checked before any event is published).

    `notifier` speaks systemd's notify protocol; `watchdog_seconds` is how often to send
    `WATCHDOG=1` (only while the loops make progress); `reload_requested` set (SIGHUP) makes
    the main loop call `load_settings` and take what may change while running. `front` (the
    web's, from the command) is started last and stopped first.
    """
    notifier = notifier or Notifier(None)
    # The detection thread gives up the GIL at every SQLite call and fsync and must win it back
    # at once; with the default 5 ms interval, a busy web or archival thread made each of those
    # a wait (measured: detection p99 with 200 SSE clients, bench/dashboard.py).
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    workspace = Workspace.from_settings(settings)
    busy = settings.database.busy_timeout_seconds
    workspace.check_initialised()  # before the lock: a mistyped --workspace must not be created by it
    with ExitStack() as stack:
        if sqlite_path(settings.database_url()) is not None:  # one daemon per workspace; on PostgreSQL, per id
            stack.enter_context(hold_lock(workspace.monitor_dir / "daemon.lock", f"workspace {workspace.root}"))
        state = open_state(settings, readonly=False)
        stack.callback(state.dispose)
        store = open_store(settings)
        assert store is not None
        stack.callback(store.dispose)
        membership = Membership(store, version=__version__, lease_seconds=settings.cluster.lease_seconds)
        stepped_down: list[IdTaken] = []  # raised once everything has stopped: exit 3, and no twin at work

        def step_down(err: IdTaken) -> None:
            logger.error("%s: stepping down", err)
            stepped_down.append(err)
            stop.set()

        if store.shared:
            membership.join()
            stack.callback(membership.leave)
        try:
            create_archival_table(state.engine, state.tables.archival_log, state.name)
        except Unavailable as err:  # a read-only database: its rows wait in the outbox (safe mode says why)
            logger.warning("%s", err)
        connection = StateConnection(state.engine)
        stack.callback(connection.close)
        bus = stack.enter_context(open_bus(settings, store=store))
        identity = {"version": __version__, "pid": os.getpid(), "workspace": str(workspace.root)}
        started = threading.Event()  # MONITOR_STOPPED only ever follows a MONITOR_STARTED
        stack.callback(lambda: started.is_set() and bus.publish(EventType.MONITOR_STOPPED, identity))
        for statement in state.index_advice:
            detail = f"the cheap pass has no index to seek on {state.name}; the executor's owner can run: {statement}"
            logger.warning("%s", detail)
            bus.publish(EventType.WARNING, {"what": "missing index", "detail": detail})
        metrics = MonitorMetrics(settings.metrics.prefix)
        bus.add_sink(metrics, name="metrics", queue_size=settings.events.subscriber_queue_size)
        outcomes = bus.subscribe({EventType.ARCHIVE_FAILED, EventType.REPORT_FAILED, EventType.REPORT_GENERATED})
        stack.callback(outcomes.close)
        ledger = Ledger(store)
        db_file = sqlite_path(state.url)
        check_engine = None if db_file is not None else open_engine(state.url, busy_timeout_seconds=busy, readonly=True)
        if check_engine is not None:
            stack.callback(check_engine.dispose)
        poll = settings.completion.poll_seconds
        refresh = min(settings.cluster.lease_seconds / 3, TAKE_OVER_CHECK_SECONDS)
        progress = LoopProgress(max(LIVENESS_FLOOR_SECONDS, 3 * busy) + 2 * poll, time.monotonic)
        supervisor = Supervisor(
            settings=settings,
            publish=bus.publish,
            metrics=metrics,
            notifier=notifier,
            detection=progress,
            check_database=DatabaseChecker(db_file, check_engine, state.name, timeout_seconds=busy),
            record_beats=partial(record_beats, store, membership, step_down),
            sink_health=bus.sink_health,
            daemons=(lambda: [asdict(m) for m in membership.members()]) if store.shared else list,
        )
        alerts = open_alerts(settings, state)  # wired without rules too: a SIGHUP may add the first
        if alerts is not None:
            alerts.wire(bus, queue_size=settings.events.subscriber_queue_size)
        if settings.openlineage.enabled:
            open_lineage(settings, state).wire(bus, queue_size=settings.events.subscriber_queue_size)
        archival = ArchiveWorker.for_daemon(
            settings,
            state=state,
            publish=bus.publish,
            flush=bus.flush,
            ledger=ledger,
            allowed=supervisor.archival_allowed,
        )
        stack.callback(archival.close)  # before the bus and the ledger close: it publishes and records
        archival.start()
        detector = Detector(
            ledger=ledger,
            publish=bus.publish,
            flush=bus.flush,
            handoff=archival,
            settle_seconds=settle_seconds(settings, state.mapping),
            stall_after_seconds=settings.completion.stall_after_seconds,
            connection=connection,
            tables=state.tables,
            marks_allowed=supervisor.marks_allowed,
            shares=ClusterShares(membership, ledger, refresh_seconds=refresh) if store.shared else None,
            on_completed=lambda seen_at: metrics.observe_detection(time.monotonic() - seen_at),
        )
        metrics.bind(
            heartbeat_age=supervisor.heartbeat_age_seconds,
            detection_lag=progress.age_seconds,
            event_counts=lambda: dict(bus.counts),
            open_runs=detector.open_counts,
            archive_bytes=ArchiveSizes(Catalog(store), workspace.archive_root).total_bytes,
            alerts=alerts.stats if alerts is not None else None,
            sink_health=bus.sink_health,
        )
        detector.start()
        signals = Signals()
        stack.enter_context(on_continue(signals.overflowed))  # stopped and continued: compare everything
        watcher = RunDirWatcher(signals)
        stack.callback(watcher.close)
        choice = settings.database.change_detection
        source = stack.enter_context(watch_database(state, connection, signals, watcher, choice))
        job = DetectionJob(
            detector=detector,
            probe=source.probe,
            probe_may_miss=source.may_miss,
            signals=signals,
            timing=Timing(
                debounce_seconds=source.debounce_seconds(settings.completion.debounce_seconds),
                poll_seconds=poll,
                reconcile_seconds=settings.completion.reconcile_seconds,
            ),
            on_guard=supervisor.observe_loop,
            reopen=connection.reopen,
            follow_runs=RunFollower(workspace.root, watcher, detector.warn_once),
        )
        progress.follow(lambda: job.iterations)
        bus.publish(
            EventType.MONITOR_STARTED, {**identity, "schema": state.mapping.name, "change_detection": source.mode}
        )
        started.set()
        on_error = partial(supervisor.record_error, "detection")
        thread = threading.Thread(
            target=run_detection_thread, args=(job, stop, on_error), name="detection", daemon=True
        )
        thread.start()
        stack.callback(thread.join, THREAD_JOIN_SECONDS)
        audit = audit_job(settings.audit, Catalog(store), bus.publish, supervisor.observe, stop, workspace.archive_root)
        offload = offload_job(
            settings,
            store,
            bus.publish,
            supervisor.observe,
            stop,
            workspace.archive_root,
            lambda: not supervisor.safe_modes(),
        )
        if offload is not None:
            stack.callback(offload[1].close)  # after the scheduler's shutdown below: no pass is left running
        retention = retention_job(
            settings.retention,
            workspace,
            store,
            bus.publish,
            supervisor.safe_modes,
            stop,
            confirm_offloaded=make_confirmer(settings, store),  # None with offload off: no local bag ever goes
        )
        more = (audit, offload and offload[0], retention, memory_release_job())
        scheduler = start_scheduler(supervisor, settings, outcomes, more)
        stack.callback(scheduler.shutdown, wait=False)  # a running check or hook must not hold up SIGTERM
        if front is not None:
            report = supervisor.report if alerts is None else partial(report_with_alerts, supervisor, alerts)
            stack.enter_context(front(RunningDaemon(settings, bus, metrics, report)))
        stack.callback(archival.stopping)  # every thread is told at once; the joins above then overlap
        stack.callback(signals.wake.set)  # the detection loop may wait a long poll for its wake-up
        stack.callback(stop.set)
        stack.callback(notifier.stopping)
        logger.info("watching %s", workspace.root)
        freeze_start_up()
        notifier.ready(f"watching {workspace.root}")
        on_ready()
        tick = min(MAIN_LOOP_SECONDS, watchdog_seconds / 2) if watchdog_seconds else MAIN_LOOP_SECONDS
        next_ping = 0.0
        while not stop.wait(tick):  # the main loop: reload on SIGHUP, ping the watchdog while loops progress
            if reload_requested is not None and reload_requested.is_set() and load_settings is not None:
                reload_requested.clear()
                settings = reload_settings(settings, load_settings, detector, supervisor, state.mapping, alerts)
            if watchdog_seconds and time.monotonic() >= next_ping and supervisor.live():
                notifier.watchdog()
                next_ping = time.monotonic() + watchdog_seconds
    if stepped_down:
        raise stepped_down[0]
