"""`logs/monitor.jsonl` (and `logs/archival.jsonl`): lines that survive rotation, logrotate and a full disk.

Each batch goes out in one `os.write` on an `O_APPEND` descriptor (looping on short writes), so
other appenders never interleave with a line and `tail -F` only ever sees whole lines appear.
Rotation renames the file to `.1` (older ones shift up, the oldest past `keep_files` goes),
only between lines and at most once per MIN_ROTATE_SECONDS; before each batch the path is
checked against the open file's device and inode, so a file moved away by logrotate is followed
by a fresh one instead of being written into forever. When writing fails (ENOSPC, EIO, a
read-only remount) the sink keeps running: what it could not write waits in memory, up to
RETAIN_BYTES, and is retried in order and from the exact byte where it stopped, so no line is
torn or repeated (a line a crash left half-written is ended at the next start); beyond the bound
lines are counted as lost. When writing works again the sink reports it (the bus turns that
into a WARNING event).
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from ...timefmt import format_timestamp, utc_now
from ..types import EventType
from .writer import FsyncPolicy, QueuedWriter

MONITOR_LOG = "monitor.jsonl"  # under the workspace's logs/: every event and log record
ARCHIVAL_LOG = "archival.jsonl"  # archival events only
MIN_ROTATE_SECONDS = 1.0  # a file lives at least this long: `tail -F` must get to see every file
RETAIN_BYTES = 32 << 20  # unwritten lines kept in memory while the disk refuses them
FILE_MODE = 0o640
_OPEN_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC  # read: to check the last byte at start

logger = logging.getLogger(__name__)


def rotated_path(path: Path, number: int) -> Path:
    """The name of the `number`-th older file: `monitor.jsonl.1` is the newest rotated one."""
    return path.with_name(f"{path.name}.{number}")


class JsonlSink(QueuedWriter):
    """One JSONL file with rotation; `types` None takes every event, `logs` also takes logging records."""

    def __init__(
        self,
        path: Path,
        *,
        types: Iterable[EventType] | None = None,
        logs: bool = False,
        rotate_bytes: int,
        keep_files: int,
        queue_size: int,
        fsync: FsyncPolicy = "interval",
        fsync_interval_seconds: float = 1.0,
        min_rotate_seconds: float = MIN_ROTATE_SECONDS,
    ) -> None:
        super().__init__(path.name, queue_size=queue_size, fsync=fsync, fsync_interval_seconds=fsync_interval_seconds)
        self.path = path
        self.types = None if types is None else frozenset(types)
        self.accepts_logs = logs
        self.rotate_bytes = rotate_bytes
        self.keep_files = keep_files
        self.min_rotate_seconds = min_rotate_seconds
        self._opened_at = 0.0
        self.lost_lines = 0  # dropped because the unwritten backlog was full
        self.unwritten_lines = 0  # lines not yet written since the current failure began
        self._fd = -1
        self._identity = (0, 0)
        self._size = 0
        self._mid_line = False  # the last write stopped inside a line: finish it in this file first
        self._backlog: deque[bytes] = deque()
        self._backlog_bytes = 0
        self._failure: str | None = None  # what went wrong and since when, while writing fails

    def takes(self, type: EventType) -> bool:
        return self.types is None or type in self.types

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._reopen()
        if self._size and os.pread(self._fd, 1, self._size - 1) != b"\n":
            # A crash during a full disk left half a line: end it, so the next line starts clean.
            self._size += os.write(self._fd, b"\n")

    def pack(self, lines: list[object]) -> bytes:
        return b"".join(lines)  # type: ignore[arg-type]

    def write_batch(self, batch: list[object]) -> None:
        if batch:
            data = b"".join(batch)  # type: ignore[arg-type]
            if self._backlog and self._backlog_bytes + len(data) > RETAIN_BYTES:
                self.lost_lines += data.count(b"\n")
            else:
                self._backlog.append(data)
                self._backlog_bytes += len(data)
                if self._failure is not None:
                    self.unwritten_lines += data.count(b"\n")
        self._drain_backlog()

    def pending_retry(self) -> bool:
        return bool(self._backlog)

    def sync(self) -> None:
        if self._fd >= 0:
            os.fdatasync(self._fd)

    def release(self) -> None:
        if self._backlog:
            lines = sum(chunk.count(b"\n") for chunk in self._backlog)
            logger.error("%s: %d lines could not be written before the stop and are lost", self.path, lines)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _drain_backlog(self) -> None:
        while self._backlog:
            chunk = self._backlog[0]
            try:
                if not self._mid_line:
                    self._follow_path()
                self._write_chunk(chunk)
            except OSError as exc:
                self._note_failure(exc)
                return
            self._backlog.popleft()
            self._backlog_bytes -= len(chunk)
        if self._failure is not None:
            self._report_recovery()

    def _write_chunk(self, chunk: bytes) -> None:
        """Write `chunk` whole, rotating between lines; on error its unwritten rest replaces it in the backlog."""
        view = memoryview(chunk)
        pos, end = 0, len(chunk)
        try:
            while pos < end:
                stop = end
                if not self._mid_line and end - pos > self.rotate_bytes - self._size and self._may_rotate():
                    stop = chunk.rfind(b"\n", pos, pos + max(0, self.rotate_bytes - self._size)) + 1
                    if stop <= pos:
                        if self._size > 0:
                            self._rotate()
                            continue
                        stop = chunk.find(b"\n", pos) + 1 or end  # one line longer than a whole file: alone
                while pos < stop:
                    written = os.write(self._fd, view[pos:stop])
                    pos += written
                    self._size += written
                    self._mid_line = chunk[pos - 1] != 0x0A
        except OSError:
            if pos:
                self._backlog[0] = chunk[pos:]
                self._backlog_bytes -= pos
            raise

    def _follow_path(self) -> None:
        """Reopen when the path no longer names our file (logrotate moved it, someone deleted it)."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._reopen()
            return
        if (stat.st_dev, stat.st_ino) != self._identity:
            self._reopen()

    def _reopen(self) -> None:
        fd = os.open(self.path, _OPEN_FLAGS, FILE_MODE)
        stat = os.fstat(fd)
        if self._fd >= 0:
            self._sync_quietly()
            os.close(self._fd)
        self._fd = fd
        self._identity = (stat.st_dev, stat.st_ino)
        self._size = stat.st_size
        self._mid_line = False
        self._opened_at = time.monotonic()

    def _may_rotate(self) -> bool:
        """A follower by name misses a file that comes and goes between two of its looks, so under
        a burst the file grows past `rotate_bytes` rather than rotating more than once a second."""
        return time.monotonic() - self._opened_at >= self.min_rotate_seconds

    def _rotate(self) -> None:
        """Shift `.N-1`..`.1` up (dropping the oldest), rename the file to `.1`, start a new one."""
        self._sync_quietly()
        for number in range(self.keep_files - 1, 0, -1):
            older = rotated_path(self.path, number)
            if older.exists():
                os.replace(older, rotated_path(self.path, number + 1))
        os.replace(self.path, rotated_path(self.path, 1))
        self._reopen()
        if self.fsync != "never":
            _sync_directory(self.path.parent)

    def _sync_quietly(self) -> None:
        if self.fsync != "never" and self._fd >= 0:
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                logger.warning("%s: fsync failed: %s", self.path, exc.strerror)

    def _note_failure(self, exc: OSError) -> None:
        if self._failure is None:
            self._failure = f"{errno.errorcode.get(exc.errno or 0, exc.errno)} since {format_timestamp(utc_now())}"
            self.unwritten_lines = sum(chunk.count(b"\n") for chunk in self._backlog)
            logger.error("%s: cannot write (%s); keeping up to %d bytes to retry", self.path, exc, RETAIN_BYTES)

    def _report_recovery(self) -> None:
        detail = (
            f"{self.path}: writing failed ({self._failure}); {self.unwritten_lines} lines written late, "
            f"{self.lost_lines} lost in all"
        )
        self._failure = None
        self.unwritten_lines = 0
        self._report("log_write_failed", detail)


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
