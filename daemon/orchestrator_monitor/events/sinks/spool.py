"""The run spool: every event of a run in `.monitor/events/<run_id>.jsonl` until the run is archived.

`logs/monitor.jsonl` rotates by size, so on a busy daemon a long run's early events may be
gone from it by the time the run is archived; the spec wants them all in the archive. This
sink keeps one never-rotated file per run; the archiver reads it (`read_run_events`) into the
bag and then removes it (`remove_run_events`). A write that fails part-way is cut back to the
last whole line, so the file stays parseable; the lines are still in `logs/monitor.jsonl`.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import cast

import orjson

from ...ids import validate_run_id
from ..types import Event, EventType, decode_event
from .writer import FsyncPolicy, QueuedWriter

SPOOL_DIRECTORY = "events"  # under the workspace's .monitor/
FILE_MODE = 0o640
_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC

logger = logging.getLogger(__name__)
_run_id, _line = itemgetter(0), itemgetter(1)
AFTER_ARCHIVAL = frozenset(
    {EventType.ARCHIVE_CORRUPT, EventType.RUN_PRUNED, EventType.ARCHIVE_PRUNED, EventType.RETENTION_HELD}
)


def run_events_path(monitor_dir: Path, run_id: str) -> Path:
    return monitor_dir / SPOOL_DIRECTORY / f"{validate_run_id(run_id)}.jsonl"


def read_run_events(monitor_dir: Path, run_id: str) -> list[Event]:
    """Every spooled event of the run, in `seq` order; empty when none was spooled."""
    try:
        raw = run_events_path(monitor_dir, run_id).read_bytes()
    except FileNotFoundError:
        return []
    events = []
    for line in raw.splitlines():
        try:
            events.append(decode_event(orjson.loads(line)))
        except (ValueError, KeyError, TypeError):
            logger.warning("run %s: skipping an unreadable spooled event line", run_id)
    return sorted(events, key=lambda event: event.seq)


def remove_run_events(monitor_dir: Path, run_id: str) -> None:
    """Drop the run's spool once its archive holds the events; no error when there is none."""
    run_events_path(monitor_dir, run_id).unlink(missing_ok=True)


class RunSpoolSink(QueuedWriter):
    """Appends each run-scoped event to its run's spool file; one open/write/close per run and batch."""

    keyed_by_run = True

    def __init__(
        self,
        monitor_dir: Path,
        *,
        queue_size: int,
        fsync: FsyncPolicy = "interval",
        fsync_interval_seconds: float = 1.0,
    ) -> None:
        super().__init__("run-spool", queue_size=queue_size, fsync=fsync, fsync_interval_seconds=fsync_interval_seconds)
        self.directory = monitor_dir / SPOOL_DIRECTORY
        self._unsynced_paths: set[Path] = set()

    def takes(self, type: EventType) -> bool:
        """Not what comes after the bag: its file would never be read nor removed."""
        return type not in AFTER_ARCHIVAL

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def pack(self, lines: list[object]) -> list[tuple[str, bytes]]:
        """(run_id, line) items as one (run_id, lines) pair per stretch of one run's lines (in C)."""
        return [(run_id, b"".join(map(_line, pairs))) for run_id, pairs in groupby(lines, _run_id)]  # type: ignore[arg-type]

    def write_batch(self, batch: list[object]) -> None:
        failed = 0
        for run_id, data in _group([pair for chunk in cast(list[list[tuple[str, bytes]]], batch) for pair in chunk]):
            path = self.directory / f"{run_id}.jsonl"
            try:
                _append_whole(path, data)
            except OSError as exc:
                lines = data.count(b"\n")
                failed += lines
                logger.error("run %s: %d events not spooled to %s: %s", run_id, lines, path, exc.strerror)
            else:
                self._unsynced_paths.add(path)
        if failed:
            self.failures += 1

    def sync(self) -> None:
        paths, self._unsynced_paths = self._unsynced_paths, set()
        for path in paths:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:  # archived and removed meanwhile
                continue
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)


def _group(pairs: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """One (run_id, data) per run, each run's data in order: one open and write per run and batch."""
    by_run: defaultdict[str, list[bytes]] = defaultdict(list)
    for run_id, data in pairs:
        by_run[run_id].append(data)
    return [(run_id, b"".join(parts)) for run_id, parts in by_run.items()]


def _append_whole(path: Path, data: bytes) -> None:
    """Append `data`, or on failure cut the file back to where it was: never half a line."""
    fd = os.open(path, _OPEN_FLAGS, FILE_MODE)
    try:
        start = os.fstat(fd).st_size
        view = memoryview(data)
        pos = 0
        try:
            while pos < len(data):
                pos += os.write(fd, view[pos:])
        except OSError:
            if pos:
                os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)
