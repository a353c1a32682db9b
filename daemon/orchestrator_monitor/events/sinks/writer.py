"""The base of the sinks that may hold a publisher back: a bounded queue drained by one thread.

Only file sinks the contract depends on (`logs/*.jsonl`, the run spool) are built on this:
they must never drop an event, so a full queue makes the publisher wait (backpressure).
Every other consumer gets a `Subscription` instead and cannot slow the bus.

The bus appends each line to `pending` itself, under its lock, and must stay O(1) there: a list
append and one comparison with `hand_over_at`. Every CHUNK_LINES lines, or at once when the
writer thread is idle, `hand_over` packs them into one chunk (the JSONL sink joins them into
one bytes object) for the writer thread's queue `items`. So a busy bus pays no method call,
condition variable or syscall per event and sink, and the lines are made, joined and freed on
the publisher's core: handing each line to the writer thread on the other core instead cost
about 0.3 us per event in cache traffic (`bench/bus.py`). The writer takes whatever chunks
have piled up as one batch, and when there are none it takes `pending` itself, under the same
lock, before it goes idle: no line waits for the next CHUNK_LINES. Which events a sink takes
(`takes`, `keyed_by_run`, `accepts_logs`) is asked once per type, not per event.
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

from ..types import EventType

FsyncPolicy = Literal["never", "interval", "batch"]
Report = Callable[[str, str], None]  # (what, detail): how a writer tells the bus something went wrong

ROOM_WAIT_SECONDS = 1.0  # a publisher waiting for room re-checks at least this often
CHUNK_LINES = 64  # lines the bus gathers before handing them to the writer thread as one chunk
RETRY_SECONDS = 1.0  # how often a writer with unwritten data tries again when nothing new comes
JOIN_SECONDS = 30.0  # how long close() waits for the writer to drain

logger = logging.getLogger(__name__)
_writer_thread = threading.local()  # `active` in the writer threads of every QueuedWriter


class QueuedWriter:
    """A sink whose batches are written by its own thread; subclasses say what to keep and how to write."""

    accepts_logs = False  # whether logging records (not events) go here too
    keyed_by_run = False  # items are (run_id, line) and only events with a run_id come here

    def __init__(self, name: str, *, queue_size: int, fsync: FsyncPolicy, fsync_interval_seconds: float) -> None:
        self.name = name
        self.fsync = fsync
        self.fsync_interval_seconds = fsync_interval_seconds
        self.failures = 0  # batches whose writing raised something unexpected
        # The bound, in lines: the queue holds up to queue_size // chunk_lines chunks (at least one),
        # each of up to `chunk_lines`, beyond which publishers wait; `pending` adds at most one chunk.
        self.queue_size = queue_size
        self.chunk_lines = min(CHUNK_LINES, queue_size)
        self._max_chunks = max(1, queue_size // self.chunk_lines)
        self.pending: list[object] = []  # lines gathered by the bus, under `lock`
        self.hand_over_at = self.chunk_lines  # len(pending) at which the bus calls `hand_over`; 1 while idle
        self.items: deque[object] = deque()  # chunks waiting for the writer thread
        self.idle = False  # the writer found nothing to take: the next line is handed over at once (under `lock`)
        self.lock: threading.RLock = threading.RLock()  # the bus's own lock once started
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

    def hand_over(self) -> bool:
        """Under `lock`: `pending` becomes one chunk for the writer thread, which is woken if idle.

        True when the queue is now over its bound: the publisher should `wait_for_room` once it
        has released the lock.
        """
        self.items.append(self.pack(self.pending))
        self.pending.clear()
        if self.idle:
            self.idle = False
            self.hand_over_at = self.chunk_lines
            self._wake.set()
        return len(self.items) > self._max_chunks

    def pack(self, lines: list[object]) -> object:
        """The chunk the writer thread gets for `lines` (which the caller clears afterwards)."""
        return lines.copy()

    def wait_for_room(self) -> None:
        """Backpressure: block while the queue is over its bound.

        Never in a writer thread (a sink reporting a failure, or logging, publishes too): two
        writers waiting for each other's room would both wait forever.
        """
        if len(self.items) <= self._max_chunks or getattr(_writer_thread, "active", False):
            return
        with self._room:
            self._waiters += 1
            try:
                while len(self.items) > self._max_chunks and self.running:
                    self._room.wait(ROOM_WAIT_SECONDS)
            finally:
                self._waiters -= 1

    # --- lifecycle ---

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, report: Report | None = None, lock: threading.RLock | None = None) -> None:
        """Open the file(s) and start the writer thread; `lock` is the one the bus appends under."""
        if report is not None:
            self._report = report
        if lock is not None:
            self.lock = lock
        self.open()
        self._thread = threading.Thread(target=self._run, name=f"sink-{self.name}", daemon=True)
        self._thread.start()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued before this call was written (or given up on); False on timeout."""
        if threading.current_thread() is self._thread:
            return False  # it would wait for itself
        with self.lock:
            if self.pending:
                self.hand_over()
            with self._taking:
                target = self._taken + len(self.items)
        self._wake.set()
        with self._written_changed:
            return self._written_changed.wait_for(lambda: self._written >= target or not self.running, timeout)

    def close(self) -> None:
        """Write everything queued, sync, release the file; idempotent."""
        with self.lock:  # so the writer cannot clear this wake-up just after it looked at _stopping
            self._stopping = True
            self._wake.set()
        if self._thread is not None:
            self._thread.join(JOIN_SECONDS)
            if self._thread.is_alive():
                logger.error(
                    "sink %s did not drain within %.0f s; %d chunks unwritten", self.name, JOIN_SECONDS, len(self.items)
                )

    # --- the writer thread ---

    def _run(self) -> None:
        _writer_thread.active = True
        while True:
            batch = self._take_batch()
            if batch or self.pending_retry():
                self._write_safely(batch)
            if self._stopping and not self.items and not self.pending:
                break
            self._sync_if_due(final=False)
        self._sync_if_due(final=True)
        self.release()

    def _take_batch(self) -> list[object]:
        items = self.items
        if not items:
            with self.lock:  # the bus either hands over to an idle writer or sees pending taken here
                if self.pending:
                    self.hand_over()
                elif not items and not self._stopping:  # a chunk handed over since we looked would wake no one
                    self.idle = True
                    self.hand_over_at = 1
                    self._wake.clear()
            if self.idle:
                self._wake.wait(self._wait_seconds())
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
            logger.exception("sink %s could not write a batch of %d chunks", self.name, len(batch))
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
