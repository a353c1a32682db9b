"""The daemon: the one place that builds everything, runs it and stops it, top to bottom.

settings -> workspace lock -> event bus -> state database -> ledger -> detector ->
watchers -> detection thread -> wait for the stop event -> undo it all in reverse
(an `ExitStack`), with `MONITOR_STOPPED` the last line written.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from sqlalchemy import Connection, Engine

from . import __version__
from .config import Settings
from .detection import DetectionJob, Probe, Timing
from .detector import Detector, NoHandoff
from .errors import BadInput
from .events import EventType
from .ids import run_directory
from .ledger import Ledger
from .lock import hold_lock
from .publishing import open_bus
from .state.engine import database_url, open_engine, sqlite_path
from .state.probe import PollingProbe, SqliteProbe
from .watch import RunDirWatcher, Signals
from .workspace import Workspace

logger = logging.getLogger(__name__)

THREAD_JOIN_SECONDS = 8.0  # SIGTERM must end the process within 10 s
ERROR_PAUSE_SECONDS = 1.0
RECENT_ERRORS = 5


class StateConnection:
    """The detector's one connection (its `data_version` is what tells others' commits from ours)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection = engine.connect()

    def __call__(self) -> Connection:
        return self._connection

    def reopen(self) -> None:
        """After the database file was replaced: a new connection (and file descriptor) on the new file."""
        self._connection.invalidate()
        self._connection.close()
        self._engine.dispose()
        self._connection = self._engine.connect()

    def close(self) -> None:
        self._connection.close()


class RunFollower:
    """Keeps the run-directory watches equal to the open runs.

    Paths are recomputed only when the open runs change; the watcher is asked on every pass,
    so a directory the executor creates after the run's row is picked up as soon as it exists.
    """

    def __init__(self, workspace: Path, watcher: RunDirWatcher, warn: Callable[[str, str, str], None]) -> None:
        self._workspace = workspace
        self._watcher = watcher
        self._warn = warn
        self._last: dict[str, str | None] = {}
        self._directories: dict[str, Path] = {}

    def __call__(self, runs: dict[str, str | None]) -> None:
        if runs != self._last:
            self._last = runs
            self._directories = {}
            for run_id, run_dir in runs.items():
                try:
                    self._directories[run_id] = run_directory(self._workspace, run_id, run_dir)
                except BadInput as err:
                    self._warn(f"run_dir:{run_id}", "run directory refused", str(err))
        self._watcher.sync(self._directories)


def run_detection_thread(job: DetectionJob, stop: threading.Event) -> None:
    """Run the job until `stop`; an exception is logged and retried after a pause (per-job isolation)."""
    errors: deque[str] = deque(maxlen=RECENT_ERRORS)
    while not stop.is_set():
        try:
            job.run(stop)
        except Exception as err:
            errors.append(repr(err))
            logger.exception("detection pass failed (%d recent errors); retrying", len(errors))
            stop.wait(ERROR_PAUSE_SECONDS)


def run_daemon(settings: Settings, stop: threading.Event, *, on_ready: Callable[[], None] = lambda: None) -> None:
    """Run the monitor until `stop` is set. Raises `Unavailable` (exit 3) for a held workspace or missing database."""
    workspace = Workspace.from_settings(settings)
    busy = settings.database.busy_timeout_seconds
    url = database_url(settings)
    with ExitStack() as stack:
        stack.enter_context(hold_lock(workspace.monitor_dir / "daemon.lock", f"workspace {workspace.root}"))
        engine = open_engine(url, busy_timeout_seconds=busy, readonly=False)
        stack.callback(engine.dispose)
        connection = StateConnection(engine)
        stack.callback(connection.close)
        bus = stack.enter_context(open_bus(settings))
        identity = {"version": __version__, "pid": os.getpid(), "workspace": str(workspace.root)}
        stack.callback(bus.publish, EventType.MONITOR_STOPPED, identity)
        ledger = Ledger(workspace.progress_db, busy_timeout_seconds=busy)
        stack.callback(ledger.close)
        detector = Detector(
            ledger=ledger,
            publish=bus.publish,
            handoff=NoHandoff(),
            settle_seconds=settings.completion.settle_seconds,
            stall_after_seconds=settings.completion.stall_after_seconds,
            connection=connection,
        )
        detector.start()
        signals = Signals()
        watcher = RunDirWatcher(signals)
        stack.callback(watcher.close)
        db_file = sqlite_path(url)
        probe: Probe = PollingProbe()
        if db_file is not None:
            watcher.watch_state(db_file.parent, db_file.name)
            probe = SqliteProbe(db_file, connection)
        job = DetectionJob(
            detector=detector,
            probe=probe,
            signals=signals,
            timing=Timing(
                debounce_seconds=settings.completion.debounce_seconds,
                poll_seconds=settings.completion.poll_seconds,
                reconcile_seconds=settings.completion.reconcile_seconds,
            ),
            publish=bus.publish,
            reopen=connection.reopen,
            follow_runs=RunFollower(workspace.root, watcher, detector.warn_once),
        )
        bus.publish(EventType.MONITOR_STARTED, identity)
        thread = threading.Thread(target=run_detection_thread, args=(job, stop), name="detection", daemon=True)
        thread.start()
        stack.callback(thread.join, THREAD_JOIN_SECONDS)
        stack.callback(stop.set)
        logger.info("watching %s", workspace.root)
        on_ready()
        stop.wait()
