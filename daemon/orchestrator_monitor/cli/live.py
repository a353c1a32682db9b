"""`monitor --follow` and `status --follow`: live terminal views redrawn when something happened.

Two things wake a view: new lines in `logs/monitor.jsonl` (followed with the event log's
own reader, across rotation) and commits to the state database (an inotify watch on
`.state/`, as the daemon's; a database that is not a local file is re-read every
`completion.poll_seconds`). Only then is the state read again, in one short read-only
transaction; the clock of elapsed time and ETA ticks in rich's own refresh, without
reading anything. Not on a terminal, the views print a line per change instead.
`monitor --follow` ends by itself once the run is archived and reported.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from rich.console import Console, ConsoleRenderable, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from ..config import Settings
from ..detect.watch import RunDirWatcher, Signals
from ..events.log import FOLLOW_POLL_SECONDS, EventLogReader, Line
from ..events.sinks.console import format_line
from ..events.sinks.jsonl import MONITOR_LOG
from ..events.types import LOG_TYPE, EventType
from ..ids import validate_run_id
from ..state.access import StateDatabase
from ..state.engine import read_transaction, sqlite_path, translate_errors
from ..state.pages import TaskFilter, fetch_tasks_page
from ..timefmt import parse_timestamp, utc_now
from ..views.reader import read_run, read_status, state_reader
from ..views.runs import RunDetail, StatusView
from ..workspace import Workspace
from .render import format_age, format_progress, plain_run_line, run_tables, status_table, write_plain

RECENT_ERRORS = 5
CLOCK_REFRESHES_PER_SECOND = 1  # rich redraws the same data for the elapsed-time clock only
T = TypeVar("T")
_RECENT_FAILURES = TaskFilter(status="FAILED", sort="finished_at", descending=True, limit=RECENT_ERRORS)


class ChangeWatch:
    """Blocks until the log grew or the state database was committed to; see the module docstring."""

    def __init__(self, settings: Settings) -> None:
        self._reader = EventLogReader(Workspace.from_settings(settings).logs_dir / MONITOR_LOG)
        self.history: list[Line] = [line for line in self._reader.read_new() if line.get("type") != LOG_TYPE]
        self._signals = Signals()
        self._watcher = RunDirWatcher(self._signals)
        db = sqlite_path(settings.database_url())
        self._watched = db is not None and self._watcher.watch_state(db.parent, db.name)
        self._poll_rounds = max(1, round(settings.completion.poll_seconds / FOLLOW_POLL_SECONDS))

    def wait(self, stop: threading.Event) -> tuple[bool, list[Line]] | None:
        """(the state database changed, new event lines); None once `stop` is set."""
        rounds = 0
        while not stop.is_set():
            changed = self._signals.wake.wait(FOLLOW_POLL_SECONDS)
            if changed:
                self._signals.wake.clear()
                self._signals.take()
            rounds += 1
            changed = changed or (not self._watched and rounds >= self._poll_rounds)
            lines = [line for line in self._reader.read_new() if line.get("type") != LOG_TYPE]
            if changed or lines:
                return changed, lines
        return None

    def close(self) -> None:
        self._watcher.close()
        self._reader.close()


@dataclass
class Outcome:
    """What the run's archival and reports produced, from its `RUN_ARCHIVED` and `REPORT_GENERATED` events."""

    archive_path: str | None = None
    report_paths: list[str] = field(default_factory=list)
    reported: bool = False

    def take(self, line: Line) -> None:
        data = line.get("data") or {}
        if line.get("type") == EventType.RUN_ARCHIVED:
            self.archive_path = str(data.get("archive_path"))
        elif line.get("type") == EventType.REPORT_GENERATED:
            self.reported = True
            self.report_paths = [str(path) for path in data.get("paths", [])]

    @property
    def done(self) -> bool:
        return self.archive_path is not None and self.reported


def elapsed_and_eta(detail: RunDetail) -> tuple[float | None, float | None]:
    """Seconds since the run started (until it finished), and the time left at its pace so far."""
    run = detail.run
    start = parse_timestamp(run.started_at or run.created_at or "")
    if start is None:
        return None, None
    end = parse_timestamp(run.finished_at or "") if run.terminal else None
    elapsed = max(0.0, ((end or utc_now()) - start).total_seconds())
    if run.terminal or not run.tasks_terminal:
        return elapsed, None
    return elapsed, elapsed * (run.tasks_total - run.tasks_terminal) / run.tasks_terminal


@dataclass
class RunScreen:
    """The live run view; rendered afresh at every refresh, so elapsed time and ETA keep moving."""

    detail: RunDetail
    failures: list[dict[str, Any]]
    outcome: Outcome

    def __rich__(self) -> ConsoleRenderable:
        run = self.detail.run
        elapsed, eta = elapsed_and_eta(self.detail)
        counts = ", ".join(f"{status} {count}" for status, count in run.tasks.items()) or "no tasks"
        header = (
            f"run {run.run_id}  {run.status}  {format_progress(run.tasks_terminal, run.tasks_total, run.progress)}"
            f"  elapsed {format_age(elapsed)}  ETA {format_age(eta)}\ntasks: {counts}"
        )
        bars = Table("workstream", "progress", "", title="progress", box=None)
        for ws in self.detail.workstreams:
            bars.add_row(
                ws.workstream_id or "(none)",
                ProgressBar(total=max(ws.tasks_total, 1), completed=ws.tasks_terminal, width=30),
                format_progress(ws.tasks_terminal, ws.tasks_total, ws.progress),
            )
        parts: list[Any] = [header, bars, *run_tables(self.detail)]
        if self.failures:
            recent = Table("task", "tool", "error", "finished", title="recent errors")
            for task in self.failures:
                message = f"{task['error_type'] or ''}: {task['error_message'] or ''}"
                recent.add_row(task["task_id"], task["tool"] or "", message, task["finished_at"] or "")
            parts.append(recent)
        if self.outcome.archive_path is not None:
            parts.append(f"archive: {self.outcome.archive_path}")
        parts.extend(f"report: {path}" for path in self.outcome.report_paths)
        return Group(*parts)


def read_run_screen(state: StateDatabase, run_id: str, outcome: Outcome) -> RunScreen:
    detail = read_run(state, run_id, utc_now())
    with translate_errors(state.name), read_transaction(state.engine) as connection:
        failures, _ = fetch_tasks_page(connection, state.tables, run_id, _RECENT_FAILURES)
    return RunScreen(detail, failures, outcome)


@dataclass
class View(Generic[T]):
    """How one live view reads (`redraw`: None when the change is not its business), draws and prints."""

    first: T
    redraw: Callable[[bool, list[Line]], T | None]
    render: Callable[[T], Any]
    print_plain: Callable[[T, list[Line]], None]
    finished: Callable[[], bool]


def _follow(console: Console, view: View[T], watch: ChangeWatch, stop: threading.Event) -> None:
    """The loop both views share: wait for a change, re-read when it concerns the view, show it."""
    live = None
    if console.is_terminal:
        live = Live(view.render(view.first), console=console, refresh_per_second=CLOCK_REFRESHES_PER_SECOND)
    else:
        view.print_plain(view.first, [])
    with live or nullcontext():
        while not view.finished():
            change = watch.wait(stop)
            if change is None:
                return
            data = view.redraw(*change)
            if data is None:
                continue
            if live is not None:
                live.update(view.render(data), refresh=True)
            else:
                view.print_plain(data, change[1])


def follow_run(settings: Settings, run_id: str, console: Console, stop: threading.Event) -> int:
    """`monitor --run ID --follow`: until the run is archived and reported (or `stop`), then the paths."""
    validate_run_id(run_id)
    with state_reader(settings) as state:
        watch = ChangeWatch(settings)
        try:
            outcome = Outcome()
            for line in watch.history:
                if line.get("run_id") == run_id:
                    outcome.take(line)
            last_plain: list[str] = [""]

            def redraw(state_changed: bool, lines: list[Line]) -> RunScreen | None:
                mine = [line for line in lines if line.get("run_id") == run_id]
                for line in mine:
                    outcome.take(line)
                return read_run_screen(state, run_id, outcome) if state_changed or mine else None

            def print_plain(screen: RunScreen, lines: list[Line]) -> None:
                for line in lines:
                    if line.get("run_id") == run_id:
                        write_plain(console, format_line(line))
                text = plain_run_line(screen.detail.run)
                if text.split("\t")[:3] != last_plain[0].split("\t")[:3]:
                    write_plain(console, text)
                    last_plain[0] = text

            first = read_run_screen(state, run_id, outcome)
            _follow(console, View(first, redraw, lambda screen: screen, print_plain, lambda: outcome.done), watch, stop)
        finally:
            watch.close()
    if not console.is_terminal:  # on a terminal, the last frame shows them
        if outcome.archive_path is not None:
            write_plain(console, f"archive\t{outcome.archive_path}")
        for path in outcome.report_paths:
            write_plain(console, f"report\t{path}")
    return 0


def follow_status(settings: Settings, console: Console, stop: threading.Event) -> int:
    """`status --follow`: every run, redrawn on any run's event or a commit, until `stop`."""
    with state_reader(settings) as state:
        watch = ChangeWatch(settings)
        try:
            shown: dict[str, list[str]] = {}

            def redraw(state_changed: bool, lines: list[Line]) -> StatusView | None:
                if not state_changed and not any("run_id" in line for line in lines):
                    return None
                return read_status(state, utc_now())

            def print_plain(view: StatusView, lines: list[Line]) -> None:
                for run in view.runs:
                    text = plain_run_line(run)
                    if shown.get(run.run_id) != text.split("\t")[:3]:
                        write_plain(console, text)
                        shown[run.run_id] = text.split("\t")[:3]

            first = read_status(state, utc_now())
            _follow(console, View(first, redraw, status_table, print_plain, lambda: False), watch, stop)
        finally:
            watch.close()
    return 0
