"""`orchestrator console`: the full-screen terminal console (Textual), for a shell on the monitor's host.

It shows what the dashboard shows, from the same sources: the runs (failed and running first)
with their counts and the monitor's health; a run with its failed tasks first, workstreams, tool
health, a text timeline and its events. It has no polling loop of its own: a worker thread waits
on `live.ChangeWatch` (the event log and the state database's commits, as `status --follow`)
and the screen is read again only when something changed, once for a burst of changes (see
`MIN_REFRESH_GAP`); a table then changes only the rows and cells that differ (`table_sync`), and
the runs list holds one page of the terminal's height, not every run. It fits 80x24 (SSH):
columns have fixed widths, long cells are cut, and the run view scrolls below its header.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from ..config import Settings
from ..events.log import Line, run_history
from ..reports.numbers import read_time
from ..state.access import StateDatabase
from ..state.engine import read_transaction, translate_errors
from ..state.pages import RunFilter, fetch_timeline
from ..state.records import RUN_STATUSES
from ..timefmt import utc_now
from ..units import format_duration
from ..views.health import collect_health
from ..views.reader import read_run
from ..views.runs import RunLine
from ..web.dashboard.reads import read_runs_lines
from ..workspace import Workspace
from .live import ChangeWatch
from .render import (
    error_cells,
    failed_cells,
    failed_title,
    format_counts,
    outcome_bar,
    plural,
    run_header,
    styled_status,
    tool_cells,
    workstream_cells,
)
from .table_sync import sync_table
from .text_timeline import timeline_rows

# Fixed widths (80 columns in all): the table measures no cell, which is most of a redraw's time.
RUN_COLUMNS = (("run", 16), ("status", 9), ("tasks", 19), ("done", 9), ("took", 6), ("name", 21))
TIMELINE_ROWS = 30
EVENTS_SHOWN = 12
RECENT_LINES = 2000  # event lines kept for the run view (the rest come from the run's spool or bag)
STATUS_FILTERS = ("", *RUN_STATUSES)
BAR_CELLS = 16
# The run view's tables, in order, with fixed widths (0: what the terminal's width leaves); columns after that
# one (a failed task's log) are seen on terminals wider than 80 columns.
RUN_TABLES: dict[str, tuple[tuple[str, int], ...]] = {
    "failed": (("task", 16), ("tool", 8), ("attempts", 3), ("error", 10), ("message", 0), ("log", 40)),
    "workstreams": (("workstream", 16), ("name", 14), ("status", 9), ("tasks", BAR_CELLS), ("done", 0)),
    "tools": (
        ("tool", 10), ("tasks", 5), ("succeeded", 9), ("failed", 6), ("skipped", 7), ("active", 6),
        ("success", 7), ("attempts", 0),
    ),
    "errors": (("error type", 24), ("count", 0)),
    "timeline": (("task", 18), ("tries", 3), ("bar", 0)),
    "events": (("seq", 7), ("type", 20), ("data", 0)),
}  # fmt: skip
RUN_VIEW_MARGIN = 6  # the view's padding and scroll bar, and the table's padding


def flexible_width(columns: tuple[tuple[str, int], ...], width: int) -> int:
    """What a terminal `width` wide leaves to the column of width 0, after those up to it (and their padding)."""
    used = 0
    for _, column in columns:
        if not column:
            break
        used += column + 2
    return max(8, width - used - 2 - RUN_VIEW_MARGIN)


# A change after a quiet moment is drawn at once; those that follow within this many seconds are drawn together
# when it is over: a stream of commits (a run finishing every 0.1 s) is read and drawn 5 times a second, not 20,
# and the console takes that much less CPU from the daemon beside it.
MIN_REFRESH_GAP = 0.2
HEALTH_TYPES = frozenset({"HEALTH_CHANGED", "SAFE_MODE_ENTERED", "SAFE_MODE_EXITED", "ESCALATION", "MONITOR_STARTED"})


@dataclass(frozen=True)
class Sources:
    settings: Settings
    state: StateDatabase
    workspace: Workspace


def health_line(report: dict[str, Any]) -> Text:
    failing = [name for name, check in report["checks"].items() if check["status"] != "ok"]
    parts = [f"failing: {', '.join(failing)}"] if failing else []
    parts += [f"safe mode: {', '.join(report['safe_modes'])}"] if report["safe_modes"] else []
    parts += [f"escalated: {', '.join(report['escalations'])}"] if report["escalations"] else []
    word = "healthy" if report["healthy"] else "UNHEALTHY"
    return Text(
        f"monitor {word}" + (f" - {'; '.join(parts)}" if parts else ""), "green" if report["healthy"] else "bold red"
    )


def counts_line(by_status: dict[str, int], wanted: str) -> Text:
    line = Text(f"all {sum(by_status.values())}", "reverse" if not wanted else "")
    for status in RUN_STATUSES:
        if by_status.get(status):
            line.append("  ")
            line.append(f"{status.lower()} {by_status[status]}", "reverse" if wanted == status else "")
    return line


def page_size(height: int) -> int:
    """Runs per page: what the table shows at this terminal height (health, counts, header and footer aside)."""
    return max(5, height - 4)


def page_label(offset: int, shown: int, total: int) -> str:
    return f"runs {offset + 1}-{offset + shown} of {total:,}" if shown else f"no run of {total:,}"


def run_row(line: RunLine) -> tuple[Any, ...]:
    """A run's cells in the runs table; the first is its key."""
    return (
        line.run_id,
        styled_status(line.status),
        outcome_bar(line.outcomes, width=10),
        f"{line.tasks_terminal}/{line.tasks_total}",
        format_duration(line.duration_seconds),
        line.name or "",
    )


class RunsScreen(Screen[None]):
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        Binding("slash", "search", "search"),
        Binding("s", "next_status", "status"),
        Binding("o", "order", "order"),
        Binding("left_square_bracket", "page(-1)", "page"),
        Binding("right_square_bracket", "page(1)", "page"),
        Binding("escape", "clear", "clear", show=False),
        Binding("q", "app.quit", "quit"),
    ]

    def __init__(self, sources: Sources) -> None:
        super().__init__()
        self.sources = sources
        self.status = ""
        self.order = "attention"
        self.first = 0
        self._counts: Text | None = None
        self._health, self._page, self._top = Text(), "", Text()
        self._rows: list[tuple[Any, ...]] = []  # what the table shows

    def compose(self) -> ComposeResult:
        yield Static(id="health")
        yield Static(id="counts")
        yield Input(placeholder="run id or name (Enter: search, Esc: clear)", id="search")
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#search", Input).display = False
        table = self.query_one("#runs", DataTable)
        for label, width in RUN_COLUMNS:
            table.add_column(label, width=width, key=label)
        table.focus()  # its rows come with `on_screen_resume`, which also follows the first showing

    def refresh_health(self) -> None:
        self._health = health_line(collect_health(self.sources.settings, utc_now()))
        self._draw_top()

    def _draw_top(self) -> None:
        """The health, then which runs the page shows (the counts line has no room left at 80 columns)."""
        top = self._health + Text(f"   {self._page}", "dim")
        if top != self._top:
            self._top = top
            self.query_one("#health", Static).update(top, layout=False)  # one line high, whatever it says

    def refresh_runs(self) -> None:
        """Read the page of runs the table shows and change only the rows and cells that differ."""
        search = self.query_one("#search", Input).value.strip() or None
        sort = "attention" if self.order == "attention" else "created_at"
        size = page_size(self.app.size.height)
        wanted = RunFilter(status=self.status or None, search=search, sort=sort, limit=size, offset=self.first)
        page = read_runs_lines(self.sources.state, wanted, utc_now())
        if self.first and not page.view.runs and page.total:  # the page emptied (runs left the filter): go back
            self.first = max(0, (page.total - 1) // size * size)
            self.refresh_runs()
            return
        counts = counts_line(page.by_status, self.status)
        self._page = f"{page_label(self.first, len(page.view.runs), page.total)} by {self.order}"
        self._draw_top()
        if counts != self._counts:
            self._counts = counts
            self.query_one("#counts", Static).update(counts, layout=False)  # one line high, whatever it says
        rows = [run_row(line) for line in page.view.runs]
        sync_table(self.query_one("#runs", DataTable), self._rows, rows)
        self._rows = rows

    def on_resize(self) -> None:
        self.refresh_runs()

    def on_screen_resume(self) -> None:
        """Shown, first or back from a run: what changed meanwhile (a health change too) was not drawn here."""
        self.refresh_health()
        self.refresh_runs()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.app.push_screen(RunScreen(self.sources, event.row_key.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.first = 0
        self.refresh_runs()
        self.query_one("#runs", DataTable).focus()

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.display = True
        search.focus()

    def action_clear(self) -> None:
        search = self.query_one("#search", Input)
        search.value, search.display = "", False
        self.first = 0
        self.refresh_runs()
        self.query_one("#runs", DataTable).focus()

    def action_next_status(self) -> None:
        self.status = STATUS_FILTERS[(STATUS_FILTERS.index(self.status) + 1) % len(STATUS_FILTERS)]
        self.first = 0
        self.refresh_runs()

    def action_order(self) -> None:
        self.order = "newest" if self.order == "attention" else "attention"
        self.first = 0
        self.refresh_runs()

    def action_page(self, step: int) -> None:
        self.first = max(0, self.first + step * page_size(self.app.size.height))
        self.refresh_runs()


class RunScreen(Screen[None]):
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        Binding("escape,backspace", "app.pop_screen", "back"),
        Binding("q", "app.quit", "quit"),
    ]

    def __init__(self, sources: Sources, run_id: str) -> None:
        super().__init__()
        self.sources = sources
        self.run_id = run_id
        self._shown: dict[str, object] = {}
        self._rows: dict[str, list[tuple[Any, ...]]] = {}  # what each table shows
        self._bar_cells = 10

    def compose(self) -> ComposeResult:
        yield Static(id="run-header")
        with VerticalScroll(id="run-body"):
            for name in RUN_TABLES:
                yield Static(id=f"{name}-title", classes="title")
                yield DataTable(id=name, cursor_type="none", show_cursor=False)
        yield Footer()

    def on_mount(self) -> None:
        width = self.app.size.width
        self._bar_cells = flexible_width(RUN_TABLES["timeline"], width)
        for name, columns in RUN_TABLES.items():
            table = self.query_one(f"#{name}", DataTable)
            table.can_focus = False
            for label, column_width in columns:
                table.add_column(label, width=column_width or flexible_width(columns, width), key=label)
        self.refresh_run()
        self.query_one("#run-body", VerticalScroll).focus()

    def refresh_run(self) -> None:
        """Read the run again; the tables change only the rows and cells that differ, and a text part is drawn
        again only when it changed (drawing a whole table of failures with their messages was most of a
        refresh's time)."""
        sources, now = self.sources, utc_now()
        detail = read_run(sources.state, self.run_id, now, sources.workspace.root)
        with translate_errors(sources.state.name), read_transaction(sources.state.engine) as connection:
            timeline = fetch_timeline(connection, sources.state.tables, self.run_id, TIMELINE_ROWS * 2)
        events = run_history(sources.workspace, self.run_id, self.app_lines(), set())[-EVENTS_SHOWN:]
        header = Text(run_header(detail) + "\n")
        header.append(outcome_bar(detail.run.outcomes, width=40))
        failed = (
            Text(failed_title(detail), "bold red")
            if detail.failed_tasks
            else Text(f"no failed task ({format_counts(detail.run.outcomes)})", "green")
        )
        self._put("run-header", header)
        self._put("failed-title", failed)
        self._put("workstreams-title", Text("workstreams", "bold"))
        self._put("tools-title", Text("tool health", "bold"))
        self._put("errors-title", Text("errors" if detail.errors else "", "bold"))
        self._put("events-title", Text("events", "bold"))
        span = (read_time(detail.run.started_at or detail.run.created_at), read_time(detail.run.finished_at))
        scale, bars = timeline_rows(timeline, span, now, TIMELINE_ROWS, self._bar_cells)
        self._put("timeline-title", timeline_title(scale, len(bars), detail.run.tasks_total))
        rows = {
            "failed": [failed_cells(task) for task in detail.failed_tasks],
            "workstreams": [workstream_cells(ws, bar_width=BAR_CELLS) for ws in detail.workstreams],
            "tools": [tool_cells(tool) for tool in detail.tools],
            "errors": error_cells(detail),
            "timeline": bars,
            "events": [event_cells(line) for line in events],
        }
        for name, wanted in rows.items():
            table = self.query_one(f"#{name}", DataTable)
            sync_table(table, self._rows.get(name, []), wanted)
            self._rows[name] = wanted
            table.display = bool(wanted)
        self.app.sub_title = f"{self.run_id} {detail.run.status}"

    def _put(self, part: str, content: Text) -> None:
        """Text drawn again only when it shows something else, and laid out again only when its height changes
        (a layout of the whole screen was a third of a refresh's time)."""
        old = self._shown.get(part)
        if old == content:
            return
        self._shown[part] = content
        widget = self.query_one(f"#{part}", Static)
        width, console = widget.content_size.width, self.app.console
        height = len(content.wrap(console, width)) if width > 0 else -1
        same = isinstance(old, Text) and height == len(old.wrap(console, width))
        widget.update(content, layout=not same)

    def app_lines(self) -> list[Line]:
        app = self.app
        return list(app.recent_lines) if isinstance(app, ConsoleApp) else []


def timeline_title(scale: str, shown: int, total: int) -> Text:
    if not shown:
        return Text.assemble(("timeline ", "bold"), ("no task has started", "italic"))
    note = f" ({shown} of {plural(total, 'task')}, failed ones first)" if shown < total else ""
    return Text.assemble(("timeline", "bold"), (f"  0 to {scale}{note}", "dim"))


def event_cells(line: Line) -> tuple[Any, ...]:
    data = " ".join(f"{key}={value}" for key, value in (line.get("data") or {}).items())
    return (str(line.get("seq")), str(line.get("type")), data[:200])


class ConsoleApp(App[None]):
    """The console; `watch` wakes it when the log or the database changed (None in tests that drive it)."""

    TITLE = "orchestrator console"
    CSS = """
    #health, #counts { height: 1; padding: 0 1; }
    #search { height: 3; }
    #runs { height: 1fr; }
    #run-header { height: auto; padding: 0 1; }
    #run-body Static { padding: 0 1; }
    #run-body .title { margin-top: 1; }
    #run-body DataTable { height: auto; overflow-x: hidden; scrollbar-size-horizontal: 0; padding: 0 1; }
    """

    def __init__(self, sources: Sources, watch: ChangeWatch | None) -> None:
        super().__init__()
        self.sources = sources
        self._watch = watch
        self._stop = threading.Event()
        self.recent_lines: deque[Line] = deque(watch.history if watch else (), maxlen=RECENT_LINES)
        self._pending: Pending | None = None
        self._last_refresh = 0.0

    def on_mount(self) -> None:
        self.push_screen(RunsScreen(self.sources))
        if self._watch is not None:
            self.run_worker(self._follow, thread=True, exclusive=True)

    def on_unmount(self) -> None:
        self._stop.set()

    def _follow(self) -> None:
        assert self._watch is not None
        while (change := self._watch.wait(self._stop)) is not None:
            self.call_from_thread(self.changed, *change)

    def changed(self, state_changed: bool, lines: list[Line]) -> None:
        """Something happened: noted, and the screen on top reads again once for all that came meanwhile."""
        self.recent_lines.extend(lines)
        if self._pending is None:
            self._pending = Pending()
            wait = self._last_refresh + MIN_REFRESH_GAP - time.monotonic()
            if wait > 0:  # one was drawn a moment ago: what comes until then is drawn once, then
                self.set_timer(wait, self._refresh)
            else:
                self.call_later(self._refresh)
        self._pending.add(state_changed, lines)

    @property
    def refresh_pending(self) -> bool:
        """Changes have been heard that the screen does not show yet."""
        return self._pending is not None

    def _refresh(self) -> None:
        self._last_refresh = time.monotonic()
        pending, self._pending = self._pending or Pending(), None
        screen = self.screen
        if isinstance(screen, RunsScreen):
            if pending.health:
                screen.refresh_health()
            screen.refresh_runs()
        elif isinstance(screen, RunScreen) and (pending.state or screen.run_id in pending.runs):
            screen.refresh_run()


@dataclass
class Pending:
    """What the changes heard since the last refresh concern: a burst of them is read once, not once each."""

    state: bool = False
    health: bool = False
    runs: set[str] = field(default_factory=set)

    def add(self, state_changed: bool, lines: list[Line]) -> None:
        self.state = self.state or state_changed
        self.health = self.health or any(line.get("type") in HEALTH_TYPES for line in lines)
        self.runs.update(str(line["run_id"]) for line in lines if line.get("run_id"))


def run_console(settings: Settings, state: StateDatabase) -> int:
    """`orchestrator console` until the user quits."""
    watch = ChangeWatch(settings)
    try:
        ConsoleApp(Sources(settings, state, Workspace.from_settings(settings)), watch).run()
    finally:
        watch.close()
    return 0
