"""The daemon's archival: a `Handoff` that archives, then reports, each completed run on a thread of its own.

The detector hands over a run once its completion is announced; the worker waits until the
run directory has been quiet `archive.quiet_seconds` (newest ctime in the tree), then runs
`run_archive_iteration`. Failures are retried with a doubling backoff (a full disk, a file
not readable yet, a database locked); `wake()` retries at once (the storage check saw space
again). A run whose rows changed since its completion is dropped: nothing was published, and
the detector hands it over again once it has ended again. At start it takes up what the ledger
says is not done: runs `announced` (no bag yet), `published` (bag out, not recorded) and `archived`
(not reported). `close` stops a copy at its next chunk, leaving staging and journal for the next
start, and returns within CLOSE_SECONDS.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from ..archive.archiver import fetch_terminal_run
from ..archive.failures import UNSAFE_RUN_DIR, ArchiveFailure, Interrupted
from ..archive.tree import scan_tree
from ..config import Settings
from ..errors import BadInput, ProblemFound, Unavailable
from ..events.types import Publish
from ..ledger.runs import Ledger
from ..state.access import StateDatabase
from ..streaks import Streak
from .pipeline import Pipeline, pipeline_for

logger = logging.getLogger(__name__)

RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 300.0
CLOSE_SECONDS = 8.0  # SIGTERM must end the daemon within 10 s
IDLE_WAIT_SECONDS = 60.0
ARCHIVAL_NICE = 10
REOPENED_RECHECK_SECONDS = 60.0
SAFE_MODE_POLL_SECONDS = 2.0  # while archival waits for room: how soon it notices the room


def run_archive_iteration(pipeline: Pipeline, run_id: str, *, quiet_seconds: float, now_ns: int) -> float | None:
    """One attempt at one run: None when it is done (or must not be retried), else seconds to wait.

    Raises what should be retried with backoff (`ArchiveFailure`, `Unavailable`, a report failure)
    and `Interrupted` when the daemon stops.
    """
    try:
        run = fetch_terminal_run(pipeline.archival, run_id)
    except BadInput as err:  # deleted from the state database: nothing to archive
        logger.warning("run %s is not archived: %s", run_id, err)
        return None
    except ArchiveFailure as failure:  # its run_dir leaves the workspace: said once (ARCHIVE_FAILED), never retried
        if failure.reason != UNSAFE_RUN_DIR:
            raise
        return None
    except ProblemFound as err:  # reopened and running again: archived once it ends
        logger.info("run %s is not terminal (%s); looking again in %.0f s", run_id, err, REOPENED_RECHECK_SECONDS)
        return REOPENED_RECHECK_SECONDS
    inventory = None
    if not (pipeline.archival.workspace.archive_root / run_id).exists():
        inventory = scan_tree(run.run_dir)
        quiet_left = quiet_seconds - (now_ns - inventory.newest_change_ns) / 1e9
        if quiet_left > 0:
            return quiet_left
    try:
        pipeline.process(run, inventory)
    except ArchiveFailure as failure:
        if not failure.reopened:
            raise
        logger.info("run %s is not archived: %s; it is once it has ended again", run_id, failure.detail)
    return None


class ArchiveWorker:
    """Implements the detector's `Handoff`; `start()` after construction, `close()` before the bus closes."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        quiet_seconds: float,
        stop: threading.Event,
        allowed: Callable[[], bool] = lambda: True,
    ) -> None:
        self._pipeline = pipeline
        self._allowed = allowed  # False in safe mode archive_storage_full: archival waits
        self._quiet = quiet_seconds
        self._stop = stop
        self._due: dict[str, float] = {}  # run id -> monotonic time of its next attempt
        self._failures: dict[str, int] = {}
        self._streak = Streak()  # the database away fails every run alike: logged once, not per run and retry
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._waiting_for_room = False

    @classmethod
    def for_daemon(
        cls,
        settings: Settings,
        *,
        state: StateDatabase,
        publish: Publish,
        flush: Callable[[], None],
        ledger: Ledger,
        allowed: Callable[[], bool] = lambda: True,
    ) -> ArchiveWorker:
        stop = threading.Event()
        pipeline = pipeline_for(
            settings, state=state, publish=publish, flush=flush, ledger=ledger, stop=stop, escalate=False
        )
        return cls(pipeline, quiet_seconds=settings.archive.quiet_seconds, stop=stop, allowed=allowed)

    def completed(self, run_id: str) -> None:
        self._schedule(run_id, 0.0)

    def wake(self) -> None:
        """Try every waiting run now (storage has room again)."""
        with self._lock:
            now = time.monotonic()
            self._due = {run_id: now for run_id in self._due}
        self._wake.set()

    def start(self) -> None:
        archival = self._pipeline.archival
        ledger = archival.ledger
        announced = ledger.runs_in_phase("announced")
        for run_id in announced:
            if (archival.workspace.archive_root / run_id).exists():
                # renamed into place, then killed before the ledger's commit: recorded before the detector
                # starts, so a change it finds keeps the bag rather than reopening a run whose bag is out
                ledger.publish_bag(run_id, None, lambda: None)
        # a bag to build, or one out to record and report
        for run_id in announced + ledger.runs_in_phase("published") + ledger.runs_in_phase("archived"):
            self._schedule(run_id, 0.0)
        self._thread = threading.Thread(target=self._run, name="archival", daemon=True)
        self._thread.start()

    def stopping(self) -> None:
        """Ask the thread to stop now (a copy ends at its next chunk); `close` waits for it."""
        self._stop.set()
        self._wake.set()

    def close(self, timeout: float = CLOSE_SECONDS) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.error("the archival thread did not stop within %.1f s", timeout)

    @property
    def waiting(self) -> list[str]:
        with self._lock:
            return sorted(self._due)

    def _schedule(self, run_id: str, delay: float) -> None:
        """Due in `delay` seconds, or sooner if it is already (the detector handed it over again during
        an attempt whose retry time would otherwise replace that)."""
        with self._lock:
            due = time.monotonic() + delay
            self._due[run_id] = min(due, self._due.get(run_id, due))
        self._wake.set()

    def _next(self) -> tuple[str | None, float]:
        with self._lock:
            if not self._due:
                return None, IDLE_WAIT_SECONDS
            run_id, due = min(self._due.items(), key=lambda item: item[1])
            wait = due - time.monotonic()
            if wait > 0:
                return None, wait
            del self._due[run_id]
            return run_id, 0.0

    def _run(self) -> None:
        _lower_priority()
        while not self._stop.is_set():
            try:
                if self._run_once():
                    return
            except Exception:  # never let the thread die quietly: log, pause, go on
                logger.exception("archival loop failed; going on in %.0f s", RETRY_FIRST_SECONDS)
                self._stop.wait(RETRY_FIRST_SECONDS)

    def _run_once(self) -> bool:
        """One turn of the loop; True when the daemon is stopping and the thread must end."""
        self._pipeline.archival.log.flush()
        if not self._allowed():
            self._waiting_for_room = True
            self._stop.wait(SAFE_MODE_POLL_SECONDS)
            return False
        if self._waiting_for_room:  # the storage check sees room again: every waiting run, now
            self._waiting_for_room = False
            self.wake()
        run_id, wait = self._next()
        if run_id is None:
            self._wake.wait(wait)
            self._wake.clear()
            return False
        try:
            retry = run_archive_iteration(self._pipeline, run_id, quiet_seconds=self._quiet, now_ns=time.time_ns())
        except Interrupted:
            logger.info("archival of run %s interrupted; it resumes at the next start", run_id)
            return True
        except Unavailable as err:  # the run's lock (a command is archiving it) or the database: said once
            if self._streak.news(str(err)):
                logger.warning("run %s: %s; retrying", run_id, err)
            retry = RETRY_FIRST_SECONDS
        except Exception as err:
            retry = self._backoff(run_id, err)
        else:
            self._failures.pop(run_id, None)
            self._streak.ended()
        if retry is not None:
            self._schedule(run_id, retry)
        return False

    def _backoff(self, run_id: str, err: Exception) -> float:
        failures = self._failures[run_id] = self._failures.get(run_id, 0) + 1
        delay = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** (failures - 1))
        if isinstance(err, ArchiveFailure):
            logger.warning("run %s: %s; retrying in %.0f s", run_id, err, delay)
        elif self._streak.news(repr(err)):
            logger.exception("run %s: archival or reports failed; retrying in %.0f s", run_id, delay)
        return delay


def _lower_priority() -> None:
    """Run this thread niced: on a busy machine, detection (marks within milliseconds) goes first.

    On Linux a thread is a task of its own, so its nice value is set by its native id.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), ARCHIVAL_NICE)
    except (AttributeError, OSError) as err:
        logger.debug("archival keeps the daemon's priority: %s", err)
