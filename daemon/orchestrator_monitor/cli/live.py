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
from rich.table import Table

from ..config import Settings
from ..detect.watch import RunDirWatcher, Signals
from ..events.log import FOLLOW_POLL_SECONDS, EventLogReader, Line
from ..events.sinks.console import format_line
from ..events.sinks.jsonl import MONITOR_LOG
from ..events.types import LOG_TYPE, EventType
from ..ids import validate_run_id
from ..state.access import StateDatabase
from ..state.engine import sqlite_path
from ..timefmt import parse_timestamp, utc_now
from ..units import format_duration
from ..views.reader import read_run, read_status, state_reader
from ..views.runs import RunDetail, StatusView, select_runs
from ..workspace import Workspace
from .render import format_counts, format_progress, outcome_bar, plain_run_line, run_tables, status_table, write_plain

CLOCK_REFRESHES_PER_SECOND = 1  # rich redraws the same data for the elapsed-time clock only
T = TypeVar("T")
TABLE_FRAME_LINES = 6  # a status table's title, header, borders and the "more runs" line


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
    outcome: Outcome

    def __rich__(self) -> ConsoleRenderable:
        run = self.detail.run
        elapsed, eta = elapsed_and_eta(self.detail)
        header = (
            f"run {run.run_id}  {run.status}  {format_progress(run.tasks_terminal, run.tasks_total, run.progress)}"
            f"  elapsed {format_duration(elapsed)}  ETA {format_duration(eta)}\ntasks: {format_counts(run.outcomes)}"
        )
        parts: list[Any] = [header, outcome_bar(run.outcomes, width=40), *run_tables(self.detail)]
        if self.outcome.archive_path is not None:
            parts.append(f"archive: {self.outcome.archive_path}")
        parts.extend(f"report: {path}" for path in self.outcome.report_paths)
        return Group(*parts)


def read_run_screen(state: StateDatabase, run_id: str, outcome: Outcome, workspace: Workspace) -> RunScreen:
    return RunScreen(read_run(state, run_id, utc_now(), workspace.root), outcome)


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
    workspace = Workspace.from_settings(settings)
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
                return read_run_screen(state, run_id, outcome, workspace) if state_changed or mine else None

            def print_plain(screen: RunScreen, lines: list[Line]) -> None:
                for line in lines:
                    if line.get("run_id") == run_id:
                        write_plain(console, format_line(line))
                text = plain_run_line(screen.detail.run)
                if text.split("\t")[:3] != last_plain[0].split("\t")[:3]:
                    write_plain(console, text)
                    last_plain[0] = text

            first = read_run_screen(state, run_id, outcome, workspace)
            _follow(console, View(first, redraw, lambda screen: screen, print_plain, lambda: outcome.done), watch, stop)
        finally:
            watch.close()
    if not console.is_terminal:  # on a terminal, the last frame shows them
        if outcome.archive_path is not None:
            write_plain(console, f"archive\t{outcome.archive_path}")
        for path in outcome.report_paths:
            write_plain(console, f"report\t{path}")
    return 0


def follow_status(
    settings: Settings,
    console: Console,
    stop: threading.Event,
    statuses: list[str] | None = None,
    order: str = "attention",
    limit: int | None = None,
) -> int:
    """`status --follow`: the runs, redrawn on any run's event or a commit, until `stop`. On a terminal the
    table fits the screen, so failed and running runs (first in the default order) stay on it."""
    if limit is None and console.is_terminal:
        limit = max(1, console.height - TABLE_FRAME_LINES)

    def read(state: StateDatabase) -> StatusView:
        return select_runs(read_status(state, utc_now()), statuses, order, limit)

    def render(view: StatusView) -> Table:
        more = f" ({view.hidden} more not shown)" if view.hidden else ""
        return status_table(view, title=f"{len(view.runs)} runs{more}, {order} first")

    with state_reader(settings) as state:
        watch = ChangeWatch(settings)
        try:
            shown: dict[str, list[str]] = {}

            def redraw(state_changed: bool, lines: list[Line]) -> StatusView | None:
                if not state_changed and not any("run_id" in line for line in lines):
                    return None
                return read(state)

            def print_plain(view: StatusView, lines: list[Line]) -> None:
                for run in view.runs:
                    text = plain_run_line(run)
                    if shown.get(run.run_id) != text.split("\t")[:3]:
                        write_plain(console, text)
                        shown[run.run_id] = text.split("\t")[:3]

            _follow(console, View(read(state), redraw, render, print_plain, lambda: False), watch, stop)
        finally:
            watch.close()
    return 0
