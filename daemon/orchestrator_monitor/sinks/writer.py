"""The base of the sinks that may hold a publisher back: a bounded queue drained by one thread.

Only file sinks the contract depends on (`logs/*.jsonl`, the run spool) are built on this:
they must never drop an event, so a full queue makes the publisher wait (backpressure).
The bus appends to `items` itself, under its lock, and must stay O(1): a deque append (atomic
under the GIL), and a wake-up only when the writer said it was `idle`, so a busy bus pays
neither a method call, a condition variable nor a syscall per event and sink; which events
a sink takes (`takes`, `keyed_by_run`, `accepts_logs`) is asked once per type, not per event.
The writer takes whatever has piled up as one batch. Every other consumer gets a
`Subscription` instead and cannot slow the bus.
"""

from __future__ import annotations

import logging
import operator
import threading
import time
from collections import deque
from collections.abc import Callable
from itertools import repeat
from typing import Literal

from ..events import EventType

FsyncPolicy = Literal["never", "interval", "batch"]
Report = Callable[[str, str], None]  # (what, detail): how a writer tells the bus something went wrong

ROOM_WAIT_SECONDS = 1.0  # a publisher waiting for room re-checks at least this often
RETRY_SECONDS = 1.0  # how often a writer with unwritten data tries again when nothing new comes
JOIN_SECONDS = 30.0  # how long close() waits for the writer to drain

logger = logging.getLogger(__name__)


class QueuedWriter:
    """A sink whose batches are written by its own thread; subclasses say what to keep and how to write."""

    accepts_logs = False  # whether logging records (not events) go here too
    keyed_by_run = False  # items are (run_id, line) and only events with a run_id come here

    def __init__(self, name: str, *, queue_size: int, fsync: FsyncPolicy, fsync_interval_seconds: float) -> None:
        self.name = name
        self.fsync = fsync
        self.fsync_interval_seconds = fsync_interval_seconds
        self.failures = 0  # batches whose writing raised something unexpected
        self.queue_size = queue_size
        self.items: deque[object] = deque()  # appended to by the bus, under its lock
        self.idle = False  # the writer waits for `wake`
        self._wake = threading.Event()
        self._room = threading.Condition()
        self._waiters = 0
        self._taking = threading.Lock()  # makes "taken + still queued" exact for flush()
        self._taken = 0
        self._written = 0
        self._written_changed = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._report: Report = _log_report
        self._last_sync = time.monotonic()
        self._unsynced = False

    # --- the publisher's side (under the bus lock, except wait_for_room) ---

    def takes(self, type: EventType) -> bool:
        """Whether events of `type` come here; asked when the bus routes, once per type."""
        return True

    def wake(self) -> None:
        """Called by the bus after an append that found the writer idle: once per wake-up."""
        self.idle = False
        self._wake.set()

    def wait_for_room(self) -> None:
        """Backpressure: block while the queue is over its bound (never in the writer's own thread)."""
        if len(self.items) <= self.queue_size or threading.current_thread() is self._thread:
            return
        with self._room:
            self._waiters += 1
            try:
                while len(self.items) > self.queue_size and self.running:
                    self._room.wait(ROOM_WAIT_SECONDS)
            finally:
                self._waiters -= 1

    # --- lifecycle ---

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, report: Report | None = None) -> None:
        if report is not None:
            self._report = report
        self.open()
        self._thread = threading.Thread(target=self._run, name=f"sink-{self.name}", daemon=True)
        self._thread.start()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued before this call was written (or given up on); False on timeout."""
        with self._taking:
            target = self._taken + len(self.items)
        self._wake.set()
        with self._written_changed:
            return self._written_changed.wait_for(lambda: self._written >= target or not self.running, timeout)

    def close(self) -> None:
        """Write everything queued, sync, release the file; idempotent."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(JOIN_SECONDS)
            if self._thread.is_alive():
                logger.error(
                    "sink %s did not drain within %.0f s; %d lines unwritten", self.name, JOIN_SECONDS, len(self.items)
                )

    # --- the writer thread ---

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch or self.pending_retry():
                self._write_safely(batch)
            if self._stopping and not self.items:
                break
            self._sync_if_due(final=False)
        self._sync_if_due(final=True)
        self.release()

    def _take_batch(self) -> list[object]:
        items = self.items
        if not items and not self._stopping:
            self.idle = True
            self._wake.clear()
            if not items:  # re-check after announcing idleness: the bus either sees it or we see the item
                self._wake.wait(self._wait_seconds())
            self.idle = False
        with self._taking:  # pops in C (no Python per line): what was queued when we looked, in order
            batch = list(map(operator.call, repeat(items.popleft, len(items))))
            self._taken += len(batch)
        if batch and self._waiters:
            with self._room:
                self._room.notify_all()
        return batch

    def _write_safely(self, batch: list[object]) -> None:
        try:
            self.write_batch(batch)
            self._unsynced = True
        except Exception:
            self.failures += 1
            logger.exception("sink %s could not write a batch of %d lines", self.name, len(batch))
        with self._written_changed:
            self._written += len(batch)
            self._written_changed.notify_all()

    def _wait_seconds(self) -> float | None:
        if self.pending_retry():
            return RETRY_SECONDS
        if self.fsync == "interval" and self._unsynced:
            return max(0.0, self._last_sync + self.fsync_interval_seconds - time.monotonic())
        return None

    def _sync_if_due(self, *, final: bool) -> None:
        if not self._unsynced or self.fsync == "never":
            return
        due = self.fsync == "batch" or final or time.monotonic() - self._last_sync >= self.fsync_interval_seconds
        if not due:
            return
        try:
            self.sync()
        except OSError as exc:
            logger.warning("sink %s could not fsync: %s", self.name, exc.strerror)
        self._unsynced = False
        self._last_sync = time.monotonic()

    # --- for subclasses ---

    def open(self) -> None:
        """Acquire the file(s), in the caller's thread so that a bad path fails at start."""

    def write_batch(self, batch: list[object]) -> None:
        raise NotImplementedError

    def pending_retry(self) -> bool:
        """Whether data waits to be retried (then the writer wakes up every RETRY_SECONDS)."""
        return False

    def sync(self) -> None:
        """Make what was written durable (fsync)."""

    def release(self) -> None:
        """Close the file(s); called last, in the writer thread."""


def _log_report(what: str, detail: str) -> None:
    logger.warning("%s: %s", what, detail)
