"""`orchestrator console`: the full-screen terminal console (Textual), for a shell on the monitor's host.

It shows what the dashboard shows, from the same sources: the runs (failed and running first)
with their counts and the monitor's health; a run with its failed tasks first, workstreams, tool
health, a text timeline and its events. It has no polling loop of its own: a worker thread waits
on `live.ChangeWatch` (the event log and the state database's commits, as `status --follow`)
and the screen is read again only when something changed. It fits 80x24 (SSH): tables shrink,
long cells are cut, and everything below the header scrolls.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
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
from ..state.records import RUN_STATUSES, as_text, task_outcome
from ..timefmt import utc_now
from ..units import format_duration
from ..views.health import collect_health
from ..views.reader import read_run
from ..views.runs import RunDetail, RunLine
from ..web.dashboard.reads import read_runs_page
from ..workspace import Workspace
from .live import ChangeWatch
from .render import (
    OUTCOME_STYLES,
    failed_table,
    format_counts,
    outcome_bar,
    plural,
    run_header,
    run_tables,
    styled_status,
)

RUNS_SHOWN = 100  # the console lists the first runs in the chosen order; the filter finds the others
# Fixed widths (80 columns in all): the table measures no cell, which is most of a redraw's time.
RUN_COLUMNS = (("run", 16), ("status", 9), ("tasks", 19), ("done", 9), ("took", 6), ("name", 21))
TIMELINE_ROWS = 30
EVENTS_SHOWN = 12
RECENT_LINES = 2000  # event lines kept for the run view (the rest come from the run's spool or bag)
STATUS_FILTERS = ("", *RUN_STATUSES)
RUN_PARTS = ("run-failed", "run-tables", "run-timeline", "run-events")  # below the header, each its own widget
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


def timeline_text(rows: list[dict[str, Any]], now: datetime, width: int) -> RenderableType:
    """A text timeline: a row per task (failed first when they do not all fit), a bar from start to finish."""
    spans = []
    for row in rows:
        start, end = read_time(row["started_at"]), read_time(row["finished_at"])
        if start is not None:
            spans.append((row, start, end or (now if row["status"] == "RUNNING" else start)))
    if not spans:
        return Text("no task has started", "italic")
    spans.sort(key=lambda span: (task_outcome(as_text(span[0]["status"]) or "") != "failed", span[1]))
    shown = sorted(spans[:TIMELINE_ROWS], key=lambda span: span[1])
    first, last = min(s for _, s, _ in spans), max(e for _, _, e in spans)
    total = max((last - first).total_seconds(), 1e-3)
    label, cells = 18, max(10, width - 26)
    lines = Text(f"{'':{label}} 0{format_duration(total):>{cells}}\n", "dim")
    for row, start, end in shown:
        outcome = task_outcome(as_text(row["status"]) or "")
        left = int((start - first).total_seconds() / total * cells)
        length = max(1, round((end - start).total_seconds() / total * cells))
        lines.append(f"{str(row['task_id'])[-label:]:<{label}} ", "bold red" if outcome == "failed" else "")
        lines.append(" " * left + "█" * min(length, cells - left), OUTCOME_STYLES[outcome])
        lines.append(f" ↻{row['attempts']}\n" if (row["attempts"] or 0) > 1 else "\n")
    if len(spans) > len(shown):
        lines.append(f"{len(shown)} of {len(spans)} tasks shown, failed ones first", "dim")
    return lines


def _moving_parts(run: dict[str, Any]) -> dict[str, Any]:
    """What the runs table shows of a run, but its durations (which grow with the clock alone)."""
    return {key: value for key, value in run.items() if key not in ("age_seconds", "duration_seconds")}


class RunsScreen(Screen[None]):
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        Binding("slash", "search", "search"),
        Binding("s", "next_status", "status"),
        Binding("o", "order", "order"),
        Binding("escape", "clear", "clear", show=False),
        Binding("q", "app.quit", "quit"),
    ]

    def __init__(self, sources: Sources) -> None:
        super().__init__()
        self.sources = sources
        self.status = ""
        self.order = "attention"
        self._shown: object = None

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
            table.add_column(label, width=width)
        self.refresh_health()
        self.refresh_runs()
        table.focus()

    def refresh_health(self) -> None:
        self.query_one("#health", Static).update(health_line(collect_health(self.sources.settings, utc_now())))

    def refresh_runs(self) -> None:
        search = self.query_one("#search", Input).value.strip() or None
        sort = "attention" if self.order == "attention" else "created_at"
        wanted = RunFilter(status=self.status or None, search=search, sort=sort, limit=RUNS_SHOWN)
        page = read_runs_page(self.sources.state, wanted, utc_now())
        shown = (
            self.status,
            self.order,
            page["total"],
            page["by_status"],
            [_moving_parts(run) for run in page["runs"]],
        )
        if shown == self._shown:
            return  # a change elsewhere (another run's commit): redrawing 100 rows would show the same
        self._shown = shown
        counts = counts_line(page["by_status"], self.status)
        counts.append(f"   ({plural(page['total'], 'run')} shown by {self.order})", "dim")
        self.query_one("#counts", Static).update(counts)
        table = self.query_one("#runs", DataTable)
        cursor = table.cursor_row
        table.clear()
        for run in page["runs"]:
            line = RunLine(**run)
            table.add_row(
                line.run_id,
                styled_status(line.status),
                outcome_bar(line.outcomes, width=10),
                f"{line.tasks_terminal}/{line.tasks_total}",
                format_duration(line.duration_seconds),
                line.name or "",
                key=line.run_id,
            )
        if page["runs"]:
            table.move_cursor(row=min(cursor, len(page["runs"]) - 1))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.app.push_screen(RunScreen(self.sources, event.row_key.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.refresh_runs()
        self.query_one("#runs", DataTable).focus()

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.display = True
        search.focus()

    def action_clear(self) -> None:
        search = self.query_one("#search", Input)
        search.value, search.display = "", False
        self.refresh_runs()
        self.query_one("#runs", DataTable).focus()

    def action_next_status(self) -> None:
        self.status = STATUS_FILTERS[(STATUS_FILTERS.index(self.status) + 1) % len(STATUS_FILTERS)]
        self.refresh_runs()

    def action_order(self) -> None:
        self.order = "newest" if self.order == "attention" else "attention"
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

    def compose(self) -> ComposeResult:
        yield Static(id="run-header")
        with VerticalScroll(id="run-body"):
            for part in RUN_PARTS:
                yield Static(id=part)
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_run()
        self.query_one("#run-body", VerticalScroll).focus()

    def refresh_run(self) -> None:
        """Read the run again; each part is drawn again only when what it shows changed (a table of failures
        with their messages is most of a redraw's time)."""
        sources, now = self.sources, utc_now()
        detail = read_run(sources.state, self.run_id, now, sources.workspace.root)
        with translate_errors(sources.state.name), read_transaction(sources.state.engine) as connection:
            timeline = fetch_timeline(connection, sources.state.tables, self.run_id, TIMELINE_ROWS * 20)
        events = run_history(sources.workspace, self.run_id, self.app_lines(), set())[-EVENTS_SHOWN:]
        still = replace(detail, run=replace(detail.run, age_seconds=None, duration_seconds=None))
        wanted = {
            "run-header": (still.run, still.attempts),
            "run-failed": (still.failed_tasks, still.failed_total, still.run.outcomes),
            "run-tables": (still.workstreams, still.tools, still.errors),
            "run-timeline": (timeline, self.size.width),
            "run-events": events,
        }
        for part, data in wanted.items():
            if self._shown.get(part) != data:
                self._shown[part] = data
                self.query_one(f"#{part}", Static).update(self._draw(part, detail, timeline, events, now))
        self.app.sub_title = f"{self.run_id} {detail.run.status}"

    def _draw(
        self, part: str, detail: RunDetail, timeline: list[dict[str, Any]], events: list[Line], now: datetime
    ) -> RenderableType:
        if part == "run-header":
            header = Text(run_header(detail) + "\n")
            header.append(outcome_bar(detail.run.outcomes, width=40))
            return header
        if part == "run-failed":
            if detail.failed_tasks:
                return failed_table(detail)
            return Text(f"no failed task ({format_counts(detail.run.outcomes)})", "green")
        if part == "run-tables":
            return Group(*run_tables(detail, failed=False))
        if part == "run-timeline":
            return Group(Text("\ntimeline", "bold"), timeline_text(timeline, now, self.size.width))
        listed = Table("seq", "type", "data", title="events", expand=True)
        for line in events:
            data = " ".join(f"{key}={value}" for key, value in (line.get("data") or {}).items())
            listed.add_row(str(line.get("seq")), str(line.get("type")), data[:200])
        return listed

    def app_lines(self) -> list[Line]:
        app = self.app
        return list(app.recent_lines) if isinstance(app, ConsoleApp) else []


class ConsoleApp(App[None]):
    """The console; `watch` wakes it when the log or the database changed (None in tests that drive it)."""

    TITLE = "orchestrator console"
    CSS = """
    #health, #counts { height: 1; padding: 0 1; }
    #search { height: 3; }
    #run-header { height: auto; padding: 0 1; }
    #run-body Static { padding: 0 1; }
    """

    def __init__(self, sources: Sources, watch: ChangeWatch | None) -> None:
        super().__init__()
        self.sources = sources
        self._watch = watch
        self._stop = threading.Event()
        self.recent_lines: deque[Line] = deque(watch.history if watch else (), maxlen=RECENT_LINES)

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
        """Something happened: the screen on top reads again (the health too, on a health event)."""
        self.recent_lines.extend(lines)
        screen = self.screen
        if isinstance(screen, RunsScreen):
            if any(line.get("type") in HEALTH_TYPES for line in lines):
                screen.refresh_health()
            screen.refresh_runs()
        elif isinstance(screen, RunScreen) and (state_changed or any(_about(line, screen.run_id) for line in lines)):
            screen.refresh_run()


def _about(line: Line, run_id: str) -> bool:
    return line.get("run_id") == run_id


def run_console(settings: Settings, state: StateDatabase) -> int:
    """`orchestrator console` until the user quits."""
    watch = ChangeWatch(settings)
    try:
        ConsoleApp(Sources(settings, state, Workspace.from_settings(settings)), watch).run()
    finally:
        watch.close()
    return 0
