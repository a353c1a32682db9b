"""Printing the read views: rich tables on a terminal, plain lines when piped, JSON on request."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..state.records import OUTCOMES
from ..units import format_duration
from ..views.runs import FailedTask, RunDetail, RunLine, StatusView, ToolView, WorkstreamView

_STATUS_STYLES = {
    "COMPLETED": "green",
    "SUCCEEDED": "green",
    "FAILED": "red",
    "PARTIAL": "yellow",
    "CANCELLED": "magenta",
    "RUNNING": "cyan",
}
# The terminal's bar colours, one per outcome of `state.records.OUTCOMES` (the web's, in ANSI's palette).
OUTCOME_STYLES = {
    "failed": "red",
    "cancelled": "magenta",
    "skipped": "bright_black",
    "succeeded": "green",
    "running": "blue",
    "waiting": "grey30",
}
BAR_WIDTH = 20
MESSAGE_CHARS = 200  # of an error message in a table; `--json` has it whole


def write_json(document: Any, stream: IO[str]) -> None:
    """Dataclass views to indented JSON; orjson serialises dataclasses natively."""
    stream.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")


def write_plain(console: Console, line: str) -> None:
    """A line as it is, for pipes: rich would expand the tabs that `cut` and `awk` rely on."""
    console.file.write(line + "\n")


def format_progress(done: int, total: int, progress: float | None) -> str:
    return f"{done}/{total} {'-' if progress is None else f'{progress:.0%}'}"


def outcome_bar(outcomes: dict[str, int], width: int = BAR_WIDTH) -> Text:
    """A bar split by outcome, failures first, with the failed count after it: a failed run never looks green.

    Every outcome that has tasks gets at least one cell, so a single failure among thousands shows."""
    total = sum(outcomes.values())
    bar = Text()
    if total:
        present = [outcome for outcome in OUTCOMES if outcomes.get(outcome)]
        cells = {outcome: max(1, round(outcomes[outcome] * width / total)) for outcome in present}
        largest = max(present, key=lambda outcome: cells[outcome])
        cells[largest] = max(1, cells[largest] + width - sum(cells.values()))
        for outcome in present:
            bar.append("█" * cells[outcome], style=OUTCOME_STYLES[outcome])
    else:
        bar.append("·" * width, style=OUTCOME_STYLES["waiting"])
    if outcomes.get("failed"):
        bar.append(f" {outcomes['failed']} failed", style="bold red")
    return bar


def format_counts(outcomes: dict[str, int]) -> str:
    """ "2 failed, 5 succeeded": the outcomes that have tasks, failures first."""
    return ", ".join(f"{count} {outcome}" for outcome, count in outcomes.items() if count) or "no tasks"


def format_finish(line: RunLine) -> str:
    """When a finished run finished (its ISO time, to the second); "-" while it runs."""
    return (line.finished_at or "-")[:19].replace("T", " ") if line.terminal else "-"


def styled_status(status: str | None) -> Text:
    return Text(status or "-", style=_STATUS_STYLES.get(status or "", ""))


def status_table(view: StatusView, title: str | None = None) -> Table:
    count = len(view.runs)
    table = Table("run", "status", "tasks", "done", "duration", "finished", "name", title=title or plural(count, "run"))
    for line in view.runs:
        table.add_row(
            line.run_id,
            styled_status(line.status),
            outcome_bar(line.outcomes),
            format_progress(line.tasks_terminal, line.tasks_total, line.progress),
            format_duration(line.duration_seconds),
            format_finish(line),
            line.name or "",
        )
    return table


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def print_status(view: StatusView, console: Console) -> None:
    if console.is_terminal:
        console.print(status_table(view))
    else:
        for line in view.runs:
            write_plain(console, plain_run_line(line))


def plain_run_line(line: RunLine) -> str:
    return "\t".join(
        (
            line.run_id,
            line.status,
            format_progress(line.tasks_terminal, line.tasks_total, line.progress),
            format_duration(line.duration_seconds),
            line.name or "",
            format_counts(line.outcomes),
        )
    )


def run_header(detail: RunDetail) -> str:
    run = detail.run
    attempts = detail.attempts
    return (
        f"run {run.run_id}  {run.status}  {format_progress(run.tasks_terminal, run.tasks_total, run.progress)}"
        f"  duration {format_duration(run.duration_seconds)}  finished {format_finish(run)}\n"
        f"tasks: {format_counts(run.outcomes)}\n"
        f"attempts: {attempts.total} total, {attempts.retried_tasks} tasks retried, at most {attempts.max}"
    )


def print_run(detail: RunDetail, console: Console) -> None:
    header = run_header(detail)
    if not console.is_terminal:
        _print_run_plain(detail, header, console)
        return
    console.print(header, highlight=False)
    console.print(outcome_bar(detail.run.outcomes, width=40))
    for table in run_tables(detail):
        console.print(table)


def short_message(message: str | None) -> str:
    """An error message on one line, cut to `MESSAGE_CHARS`: a traceback's first line is its gist."""
    text = " ".join((message or "").split())
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"


def failed_title(detail: RunDetail) -> str:
    shown, total = len(detail.failed_tasks), detail.failed_total
    return plural(total, "failed task") + (f" (the latest {shown} shown)" if shown < total else "")


FAILED_COLUMNS = ("task", "tool", "attempts", "error", "message", "log")
WORKSTREAM_COLUMNS = ("workstream", "name", "status", "tasks", "done")
TOOL_COLUMNS = ("tool", "tasks", "succeeded", "failed", "skipped", "active", "success", "attempts")
ERROR_COLUMNS = ("error type", "count")


def failed_cells(task: FailedTask) -> tuple[Any, ...]:
    return (
        task.task_id,
        task.tool or "",
        str(task.attempts),
        Text(task.error_type or "-", style="red"),
        short_message(task.error_message),
        task.log or "",
    )


def workstream_cells(ws: WorkstreamView, bar_width: int = BAR_WIDTH) -> tuple[Any, ...]:
    return (
        ws.workstream_id or "(none)",
        ws.name or "",
        styled_status(ws.status),
        outcome_bar(ws.outcomes, width=bar_width),
        format_progress(ws.tasks_terminal, ws.tasks_total, ws.progress),
    )


def tool_cells(tool: ToolView) -> tuple[Any, ...]:
    return (
        tool.tool or "(none)",
        str(tool.tasks),
        str(tool.succeeded),
        Text(str(tool.failed), style="red" if tool.failed else ""),
        str(tool.skipped + tool.cancelled),
        str(tool.active),
        "-" if tool.success_rate is None else f"{tool.success_rate:.0%}",
        str(tool.attempts),
    )


def error_cells(detail: RunDetail) -> list[tuple[Any, ...]]:
    return [(error_type, str(count)) for error_type, count in detail.errors.items()]


def failed_table(detail: RunDetail) -> Table:
    table = Table(title=failed_title(detail), title_style="bold red")
    for column in FAILED_COLUMNS:
        table.add_column(column, overflow="fold")  # a task id or a path is read whole, if on two lines
    for task in detail.failed_tasks:
        table.add_row(*failed_cells(task))
    return table


def run_tables(detail: RunDetail, failed: bool = True) -> list[Table]:
    """The run's failed tasks (first, when any and `failed`), workstreams, tool health and error counts, as
    `monitor` and its live view show them."""
    workstreams = Table(*WORKSTREAM_COLUMNS, title="workstreams")
    for ws in detail.workstreams:
        workstreams.add_row(*workstream_cells(ws))
    tools = Table(*TOOL_COLUMNS, title="tool health")
    for tool in detail.tools:
        tools.add_row(*tool_cells(tool))
    tables = [failed_table(detail)] if failed and detail.failed_tasks else []
    tables += [workstreams, tools]
    if detail.errors:
        errors = Table(*ERROR_COLUMNS, title="errors")
        for cells in error_cells(detail):
            errors.add_row(*cells)
        tables.append(errors)
    return tables


def _print_run_plain(detail: RunDetail, header: str, console: Console) -> None:
    lines = [header]
    for task in detail.failed_tasks:
        lines.append(
            f"failed\t{task.task_id}\t{task.tool or '-'}\tattempts {task.attempts}\t{task.error_type or '-'}"
            f"\t{short_message(task.error_message)}\t{task.log or '-'}"
        )
    for ws in detail.workstreams:
        progress = format_progress(ws.tasks_terminal, ws.tasks_total, ws.progress)
        lines.append(f"workstream\t{ws.workstream_id or '(none)'}\t{ws.status or '-'}\t{progress}")
    for tool in detail.tools:
        rate = "-" if tool.success_rate is None else f"{tool.success_rate:.0%}"
        lines.append(
            f"tool\t{tool.tool or '(none)'}\ttasks {tool.tasks}\tfailed {tool.failed}\tsuccess {rate}"
            f"\tattempts {tool.attempts}"
        )
    lines.extend(f"error\t{error_type}\t{count}" for error_type, count in detail.errors.items())
    for line in lines:
        write_plain(console, line)


def print_warnings(warnings: list[str], console: Console) -> None:
    for warning in warnings:
        console.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)


@contextmanager
def status_screen(console: Console) -> Iterator[Callable[[StatusView], None]]:
    """The demo's screen: a table redrawn on every update, or when piped one line per run whenever its status
    or progress changes."""
    if console.is_terminal:
        from rich.live import Live  # not at the top: `status` and `monitor` print no live view

        with Live(console=console, auto_refresh=False) as live:
            yield lambda view: live.update(status_table(view), refresh=True)
        return
    last: dict[str, tuple[str, int]] = {}
    started = time.monotonic()

    def update(view: StatusView) -> None:
        for line in view.runs:
            key = (line.status, line.tasks_terminal)
            if last.get(line.run_id) != key:
                last[line.run_id] = key
                elapsed = time.monotonic() - started
                write_plain(console, f"{elapsed:6.1f}s\t{plain_run_line(line)}")

    yield update
