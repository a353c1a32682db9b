"""Reading the event log back: current and rotated files in order, filtered, followed across rotation.

Used by `orchestrator events` and by subscribers that fetch missed events again by `seq`.
All files are opened (newest first) before any is read, so a rotation meanwhile cannot make
one disappear; a file seen twice is harmless because lines are taken in `seq` order and a
`seq` already seen is skipped. Following reads the open file to its end and, when the path
names another file (rotated, moved by logrotate), drains the old one and then reads every
newer file from its start, so nothing is missed or repeated. An incomplete last line is held
back until its newline arrives: the writer may be in the middle of a batch.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, TextIO

import orjson

from ..config import Settings
from ..errors import BadInput, Unavailable
from ..ids import validate_run_id
from ..state.access import state_database
from ..state.engine import read_transaction, sqlite_path, translate_errors
from ..state.queries import fetch_run
from ..timefmt import format_timestamp, parse_timestamp, utc_now
from ..workspace import Workspace
from .sinks.console import format_line
from .sinks.jsonl import MONITOR_LOG, rotated_path
from .sinks.spool import run_events_path
from .subscription import Missed
from .types import LOG_TYPE, Event, EventType, decode_event

FOLLOW_POLL_SECONDS = 0.2
ARCHIVED_EVENTS = Path("data") / "logs" / "events.jsonl"  # inside .archive/<run_id>/
_DURATION = re.compile(r"(?P<amount>\d+(?:\.\d+)?)(?P<unit>[smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

Line = dict[str, Any]
_EVENT_TYPES = frozenset(EventType)


@dataclass(frozen=True)
class LineFilter:
    """Which lines to show; `since_time` is compared as text, which RFC 3339 UTC times allow."""

    run_id: str | None = None
    types: frozenset[str] | None = None
    since_seq: int | None = None
    until_seq: int | None = None
    since_time: str | None = None

    def matches(self, line: Line) -> bool:
        if self.run_id is not None and line.get("run_id") != self.run_id:
            return False
        if self.types is not None and line.get("type") not in self.types:
            return False
        seq = line.get("seq", 0)
        if self.since_seq is not None and seq < self.since_seq:
            return False
        if self.until_seq is not None and seq > self.until_seq:
            return False
        return self.since_time is None or str(line.get("time", "")) >= self.since_time


def parse_since(text: str, now: datetime) -> tuple[int | None, str | None]:
    """`--since`: a seq (`1234`), an age (`90s`, `15m`, `2h`, `1d`) or a time; (seq, time) with one set."""
    text = text.strip()
    if text.isdigit():
        return int(text), None
    duration = _DURATION.fullmatch(text)
    if duration:
        age = timedelta(seconds=float(duration["amount"]) * _UNIT_SECONDS[duration["unit"]])
        return None, format_timestamp(now - age)
    moment = parse_timestamp(text)
    if moment is None:
        raise BadInput(f"--since {text!r}: expected a seq number, an age such as 15m, or a time YYYY-MM-DDTHH:MM:SSZ")
    return None, format_timestamp(moment)


class _OpenFile:
    """One log file held open, remembering which file it is and any incomplete last line."""

    def __init__(self, handle: IO[bytes]) -> None:
        stat = os.fstat(handle.fileno())
        self.handle = handle
        self.identity = (stat.st_dev, stat.st_ino)
        self.pending = b""

    def complete_lines(self) -> list[bytes]:
        data = self.handle.read()
        if not data:
            return []
        *lines, self.pending = (self.pending + data).split(b"\n")
        return lines


class EventLogReader:
    """Reads a log file and its rotated predecessors; call `read_new()` again to follow it.

    `in_file_order`: every line past `after_seq` in the order written, also one whose seq is
    below one returned already. Another process that publishes while the daemon runs (`orchestrator
    archive`) numbers from a later block, so its lines sit between the daemon's with higher seqs;
    a reader that resends the daemon's events must not skip the daemon's lines after them. A
    line may then repeat (a rotation while the files are opened): its `id` is the same.
    """

    def __init__(self, path: Path, *, after_seq: int = 0, in_file_order: bool = False) -> None:
        self.path = path
        self.after_seq = after_seq
        self.in_file_order = in_file_order
        self.last_seq = after_seq
        self.skipped = 0  # lines that were not JSON objects with a seq
        self._current: _OpenFile | None = None

    def read_new(self) -> Iterator[Line]:
        """Every line not yet returned, oldest first."""
        if self._current is None:
            files = self._open_newer_than(None)
        else:
            yield from self._parse(self._current.complete_lines())
            if not self._path_moved():
                return
            yield from self._parse(self._current.complete_lines())
            files = self._open_newer_than(self._current.identity)
            if not files:
                return
            self._current.handle.close()
        for file in files[:-1]:
            yield from self._parse(file.complete_lines())
            file.handle.close()
        if files:
            self._current = files[-1]
            yield from self._parse(self._current.complete_lines())

    def close(self) -> None:
        if self._current is not None:
            self._current.handle.close()
            self._current = None

    def _path_moved(self) -> bool:
        assert self._current is not None
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:  # between a rename and the new file: look again next time
            return False
        return (stat.st_dev, stat.st_ino) != self._current.identity

    def _open_newer_than(self, identity: tuple[int, int] | None) -> list[_OpenFile]:
        """The current file and the rotated ones up to (not including) `identity`, oldest first."""
        opened: list[_OpenFile] = []
        number = 0
        while True:
            path = self.path if number == 0 else rotated_path(self.path, number)
            try:
                file = _OpenFile(path.open("rb"))
            except FileNotFoundError:
                if number > 0:
                    break
            except OSError as exc:
                for done in opened:
                    done.handle.close()
                raise Unavailable(f"cannot read the event log {path}: {exc.strerror}") from None
            else:
                if file.identity == identity:
                    file.handle.close()
                    break
                opened.append(file)
            number += 1
        return opened[::-1]

    def _parse(self, lines: list[bytes]) -> Iterator[Line]:
        for raw in lines:
            try:
                line = orjson.loads(raw)
            except orjson.JSONDecodeError:
                self.skipped += 1
                continue
            seq = line.get("seq") if isinstance(line, dict) else None
            if not isinstance(seq, int):
                self.skipped += 1
                continue
            if seq <= (self.after_seq if self.in_file_order else self.last_seq):
                continue
            self.last_seq = max(seq, self.last_seq)
            yield line


def read_lines(
    path: Path, line_filter: LineFilter, *, after_seq: int = 0, in_file_order: bool = False
) -> Iterator[Line]:
    """What the log holds now, oldest first (see `EventLogReader` for `in_file_order`)."""
    reader = EventLogReader(path, after_seq=after_seq, in_file_order=in_file_order)
    try:
        yield from (line for line in reader.read_new() if line_filter.matches(line))
    finally:
        reader.close()


def refetch_events(path: Path, missed: Missed, types: frozenset[EventType] | None) -> list[Event]:
    """The events in `missed`'s range (of `types`) as written to the log: for a subscriber that fell behind.

    In the order written, each once: a line of another process in between (a later seq block) must
    not hide the rest of the range.
    """
    wanted = LineFilter(
        types=None if types is None else frozenset(str(t) for t in types),
        since_seq=missed.first_seq,
        until_seq=missed.last_seq,
    )
    found: dict[int, Event] = {}
    for line in read_lines(path, wanted, after_seq=missed.first_seq - 1, in_file_order=True):
        if line.get("type") in _EVENT_TYPES:
            found.setdefault(line["seq"], decode_event(line))
    return list(found.values())


def show_events(
    settings: Settings,
    out: TextIO,
    *,
    run_id: str | None = None,
    types: list[str] | None = None,
    since: str | None = None,
    follow: bool = False,
    as_json: bool = False,
    stop: threading.Event | None = None,
) -> int:
    """`orchestrator events`: print matching lines (JSON or readable); with `follow`, until `stop`.

    A missing workspace is unavailable (exit 3) and a run nothing knows is bad input (exit 2):
    an empty answer would read as "nothing happened". One reader serves the replay and the
    following, so no line is read twice or missed in between.
    """
    since_seq, since_time = parse_since(since, utc_now()) if since is not None else (None, None)
    line_filter = LineFilter(
        run_id=None if run_id is None else validate_run_id(run_id),
        types=_checked_types(types),
        since_seq=since_seq,
        since_time=since_time,
    )
    workspace = Workspace.from_settings(settings)
    workspace.check_initialised()
    stop = stop or threading.Event()
    reader = EventLogReader(workspace.logs_dir / MONITOR_LOG)
    seen: set[str] = set()  # the run's event ids shown or passed over: a repeat while following is not new
    try:
        if run_id is None:
            lines: Iterable[Line] = reader.read_new()
        else:
            lines = run_history(workspace, run_id, reader.read_new(), seen)
            if not lines and not _run_known_elsewhere(settings, workspace, run_id):
                raise BadInput(f"unknown run: {run_id} (not in the event log, the archive or the state database)")
        while True:
            for line in lines:
                if line_filter.matches(line):
                    _print_line(line, out, as_json)
            if not follow:
                return 0
            out.flush()
            if stop.wait(FOLLOW_POLL_SECONDS):
                return 0
            lines = reader.read_new()
            if run_id is not None:
                lines = (line for line in lines if line.get("run_id") == run_id and _first_time(line, seen))
    finally:
        reader.close()


def run_history(workspace: Workspace, run_id: str, live: Iterable[Line], seen: set[str]) -> list[Line]:
    """Every line of the run, in `seq` order, each event once (by `id`, gathered in `seen`: a repeat after a
    crash has the same one).

    Its bag's copy (or its spool, until it is archived) holds the run's events whatever
    rotation did to the log, but stops at ARCHIVE_STARTED; RUN_ARCHIVED, REPORT_GENERATED and
    anything later are only in the log (`live`, the current and rotated files).
    """
    mine = LineFilter(run_id=run_id)
    by_seq: dict[int, Line] = {}
    for kept in (workspace.archive_root / run_id / ARCHIVED_EVENTS, run_events_path(workspace.monitor_dir, run_id)):
        if kept.is_file():
            for line in read_lines(kept, mine):
                by_seq.setdefault(line["seq"], line)
    for line in live:
        if mine.matches(line):
            by_seq.setdefault(line["seq"], line)
    return [by_seq[seq] for seq in sorted(by_seq) if _first_time(by_seq[seq], seen)]


def _first_time(line: Line, seen: set[str]) -> bool:
    """False for an event whose `id` was seen already; log records (no `id`) are always new."""
    event_id = line.get("id")
    if not isinstance(event_id, str):
        return True
    if event_id in seen:
        return False
    seen.add(event_id)
    return True


def _run_known_elsewhere(settings: Settings, workspace: Workspace, run_id: str) -> bool:
    """A run without a line: archived without events, or in the state database (not started yet, say).

    The database is asked last and only here; one that does not exist knows no run, so
    `events` works on logs alone.
    """
    if (workspace.archive_root / run_id).is_dir():
        return True
    db_file = sqlite_path(settings.database_url())
    if db_file is not None and not db_file.is_file():
        return False
    with state_database(settings) as state, translate_errors(state.name), read_transaction(state.engine) as connection:
        return fetch_run(connection, state.tables, run_id) is not None


def _checked_types(types: list[str] | None) -> frozenset[str] | None:
    if not types:
        return None
    names = {name.strip() for item in types for name in item.split(",") if name.strip()}
    known = {str(event_type) for event_type in EventType} | {LOG_TYPE}
    unknown = sorted(names - known)
    if unknown:
        raise BadInput(f"--type {', '.join(unknown)}: unknown (known: {', '.join(sorted(known))})")
    return frozenset(names)


def _print_line(line: Line, out: TextIO, as_json: bool) -> None:
    out.write((orjson.dumps(line).decode() if as_json else format_line(line)) + "\n")
