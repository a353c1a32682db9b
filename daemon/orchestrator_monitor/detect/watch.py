"""File-change signals for the detection loop: inotify on `.state/` and on each open run's directory.

Watchers translate and do nothing else: a callback sets a flag or adds a run id to a set,
never touching the database. One inotify instance and one reader thread serve every watch
(watchdog's `InotifyFD`): watchdog's observers would start a thread per watched directory.
Each run directory gets a watch of its own, never `runs/` recursively, which would run into
the kernel's watch limit on a big workspace. Where inotify is unavailable, or its watch
limit is hit, watchdog's `PollingObserver` watches what inotify cannot, and the detection
loop's `data_version` poll covers the database.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers.inotify_c import CallbackId, InotifyConstants, InotifyEvent, InotifyFD, Mask, WatchDescriptor
from watchdog.observers.polling import PollingObserver

from ..errors import BadInput
from ..ids import run_directory

logger = logging.getLogger(__name__)

_STATE_MASK = Mask(
    InotifyConstants.IN_MODIFY
    | InotifyConstants.IN_CLOSE_WRITE
    | InotifyConstants.IN_CREATE
    | InotifyConstants.IN_DELETE
    | InotifyConstants.IN_MOVED_FROM
    | InotifyConstants.IN_MOVED_TO
)
_RUN_MASK = Mask(_STATE_MASK | InotifyConstants.IN_ATTRIB)
_STATE_CALLBACK = CallbackId(0)
MISSING_DIRECTORY_SECONDS = 5.0  # run activity feeds stall detection, which counts minutes
POLLING_INTERVAL_SECONDS = 5.0  # fallback only: activity there feeds stall detection, which counts minutes


class StateFileFilter:
    """Which names in `.state/` are the database: the file and its `-wal` / `-journal` companions.

    `-shm` is left out: readers touch it too, so the monitor's own reads would wake it.
    """

    def __init__(self, db_name: str) -> None:
        self._names = {db_name, f"{db_name}-wal", f"{db_name}-journal"}

    def __call__(self, name: str) -> bool:
        return name in self._names


class Signals:
    """What the watchers tell the detection loop; safe to call from any thread."""

    def __init__(self) -> None:
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self._activity: set[str] = set()
        self._file_events = 0
        self._overflowed = False

    def state_changed(self) -> None:
        with self._lock:
            self._file_events += 1
        self.wake.set()

    def run_activity(self, run_id: str) -> None:
        with self._lock:
            self._activity.add(run_id)

    def overflowed(self) -> None:
        """The kernel dropped events: only a full reconciliation can tell what was missed."""
        with self._lock:
            self._overflowed = True
        self.wake.set()

    def take(self) -> tuple[int, set[str], bool]:
        """File events since the last call, runs with activity, and whether events were lost."""
        with self._lock:
            taken = (self._file_events, self._activity, self._overflowed)
            self._file_events, self._activity, self._overflowed = 0, set(), False
        return taken


class _StateCallback:
    def __init__(self, signals: Signals, accept: StateFileFilter) -> None:
        self._signals = signals
        self._accept = accept

    def on_event(self, event: InotifyEvent) -> None:
        if self._accept(os.fsdecode(event.name)):
            self._signals.state_changed()

    def on_watch_deleted(self, wd: int) -> None:
        self._signals.overflowed()  # `.state/` itself went away: reconcile, and the loop notices the file

    def on_queue_overflow(self) -> None:
        self._signals.overflowed()


class _RunCallback:
    def __init__(self, signals: Signals, run_id: str, forget: RunDirWatcher) -> None:
        self._signals = signals
        self._run_id = run_id
        self._forget = forget

    def on_event(self, event: InotifyEvent) -> None:
        self._signals.run_activity(self._run_id)

    def on_watch_deleted(self, wd: int) -> None:
        self._forget.dropped(self._run_id)

    def on_queue_overflow(self) -> None:
        self._signals.overflowed()


class _PollingHandler(FileSystemEventHandler):
    def __init__(self, signals: Signals, run_id: str) -> None:
        self._signals = signals
        self._run_id = run_id

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._signals.run_activity(self._run_id)


class RunDirWatcher:
    """Watches `.state/` and the directories of the runs it is given; see the module docstring."""

    def __init__(self, signals: Signals, *, polling_seconds: float = POLLING_INTERVAL_SECONDS) -> None:
        self._signals = signals
        self._polling_seconds = polling_seconds
        self._lock = threading.Lock()
        self._inotify: InotifyFD | None = None
        # run id -> (watch descriptor, callback id): ids are unique, as two runs may share a directory
        self._watches: dict[str, tuple[WatchDescriptor, CallbackId]] = {}
        self._callback_ids = itertools.count(1)
        self._polling: PollingObserver | None = None
        self._polled: dict[str, tuple[Path, object]] = {}
        try:
            self._inotify = InotifyFD()
            self._inotify.start()
        except OSError as err:  # no inotify here, or the instance limit: poll everything
            logger.warning("inotify unavailable (%s): run directories are polled every %.1f s", err, polling_seconds)

    @property
    def uses_inotify(self) -> bool:
        return self._inotify is not None

    def watch_state(self, state_dir: Path, db_name: str) -> bool:
        """Watch the database files; False when only polling can see them."""
        if self._inotify is None:
            return False
        try:
            self._inotify.add_callback(
                os.fsencode(state_dir),
                _STATE_MASK,
                _StateCallback(self._signals, StateFileFilter(db_name)),
                _STATE_CALLBACK,
            )
        except OSError as err:
            logger.warning("cannot watch %s (%s): the database is polled instead", state_dir, err)
            return False
        return True

    def sync(self, directories: Mapping[str, Path]) -> None:
        """Watch exactly these run directories; missing ones are tried again on the next call."""
        with self._lock:
            for run_id in [r for r in self._watches if r not in directories]:
                self._unwatch(run_id)
            for run_id in [r for r in self._polled if r not in directories]:
                self._unpoll(run_id)
            for run_id, directory in directories.items():
                if run_id not in self._watches and run_id not in self._polled and directory.is_dir():
                    self._watch(run_id, directory)

    def dropped(self, run_id: str) -> None:
        """The kernel removed a watch (its directory was deleted or moved)."""
        with self._lock:
            self._watches.pop(run_id, None)

    def _watch(self, run_id: str, directory: Path) -> None:
        if self._inotify is not None:
            callback_id = CallbackId(next(self._callback_ids))
            try:
                wd = self._inotify.add_callback(
                    os.fsencode(directory), _RUN_MASK, _RunCallback(self._signals, run_id, self), callback_id
                )
            except FileNotFoundError:
                return
            except OSError as err:  # ENOSPC: the kernel's watch limit; poll this one
                logger.warning("inotify cannot watch %s (%s): polling it", directory, err)
            else:
                self._watches[run_id] = (wd, callback_id)
                return
        if self._polling is None:
            self._polling = PollingObserver(timeout=self._polling_seconds)
            self._polling.start()
        watch = self._polling.schedule(_PollingHandler(self._signals, run_id), str(directory), recursive=False)
        self._polled[run_id] = (directory, watch)

    def _unwatch(self, run_id: str) -> None:
        watch = self._watches.pop(run_id)
        if self._inotify is not None:
            self._inotify.remove_callbacks([watch])

    def _unpoll(self, run_id: str) -> None:
        _, watch = self._polled.pop(run_id)
        if self._polling is not None:
            self._polling.unschedule(watch)  # type: ignore[arg-type]

    @property
    def watched(self) -> set[str]:
        with self._lock:
            return set(self._watches) | set(self._polled)

    def close(self, timeout: float = 5.0) -> None:
        if self._inotify is not None:
            self._inotify.stop()
            self._inotify.join(timeout)
        if self._polling is not None:
            self._polling.stop()
            self._polling.join(timeout)


class RunFollower:
    """Keeps the run-directory watches equal to the open runs.

    Paths are recomputed only when the open runs change; the watcher is asked then, and every
    `MISSING_DIRECTORY_SECONDS` for directories the executor creates after the run's row (each
    ask stats every unwatched directory: on every pass it was most of an idle daemon's CPU).
    """

    def __init__(
        self,
        workspace: Path,
        watcher: RunDirWatcher,
        warn: Callable[[str, str, str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._workspace = workspace
        self._watcher = watcher
        self._warn = warn
        self._clock = clock
        self._next_sync = 0.0
        self._last: dict[str, str | None] = {}
        self._directories: dict[str, Path] = {}

    def __call__(self, runs: dict[str, str | None]) -> None:
        changed = runs is not self._last and runs != self._last  # the same dict: the detector saw no change
        if changed:  # only the runs that came or changed: a burst changes a few of thousands
            directories = {r: path for r, path in self._directories.items() if r in runs and runs[r] == self._last[r]}
            for run_id, run_dir in runs.items():
                if run_id in directories:
                    continue
                try:
                    directories[run_id] = run_directory(self._workspace, run_id, run_dir)
                except BadInput as err:
                    self._warn(f"run_dir:{run_id}", "run directory refused", str(err))
            self._last, self._directories = runs, directories
        if changed or self._clock() >= self._next_sync:
            self._watcher.sync(self._directories)
            self._next_sync = self._clock() + MISSING_DIRECTORY_SECONDS
