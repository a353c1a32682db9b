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

from ..views.runs import RunDetail, RunLine, StatusView

_STATUS_STYLES = {
    "COMPLETED": "green",
    "SUCCEEDED": "green",
    "FAILED": "red",
    "PARTIAL": "yellow",
    "CANCELLED": "magenta",
    "RUNNING": "cyan",
}


def write_json(document: Any, stream: IO[str]) -> None:
    """Dataclass views to indented JSON; orjson serialises dataclasses natively."""
    stream.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")


def write_plain(console: Console, line: str) -> None:
    """A line as it is, for pipes: rich would expand the tabs that `cut` and `awk` rely on."""
    console.file.write(line + "\n")


def format_age(seconds: float | None) -> str:
    """Compact ages for a table column: 42s, 3m05s, 2h10m, 4d03h."""
    if seconds is None:
        return "-"
    total = int(seconds)
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    if total < 86400:
        return f"{total // 3600}h{total % 3600 // 60:02d}m"
    return f"{total // 86400}d{total % 86400 // 3600:02d}h"


def format_progress(done: int, total: int, progress: float | None) -> str:
    return f"{done}/{total} {'-' if progress is None else f'{progress:.0%}'}"


def _styled(status: str | None) -> Text:
    return Text(status or "-", style=_STATUS_STYLES.get(status or "", ""))


def status_table(view: StatusView) -> Table:
    table = Table("run", "status", "progress", "age", "name", title=f"{len(view.runs)} runs")
    for line in view.runs:
        table.add_row(
            line.run_id,
            _styled(line.status),
            format_progress(line.tasks_terminal, line.tasks_total, line.progress),
            format_age(line.age_seconds),
            line.name or "",
        )
    return table


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
            format_age(line.age_seconds),
            line.name or "",
        )
    )


def print_run(detail: RunDetail, console: Console) -> None:
    run = detail.run
    counts = ", ".join(f"{status} {count}" for status, count in run.tasks.items()) or "no tasks"
    attempts = detail.attempts
    header = (
        f"run {run.run_id}  {run.status}  {format_progress(run.tasks_terminal, run.tasks_total, run.progress)}"
        f"  age {format_age(run.age_seconds)}\ntasks: {counts}\n"
        f"attempts: {attempts.total} total, {attempts.retried_tasks} tasks retried, at most {attempts.max}"
    )
    if not console.is_terminal:
        _print_run_plain(detail, header, console)
        return
    console.print(header, highlight=False)
    for table in run_tables(detail):
        console.print(table)


def run_tables(detail: RunDetail) -> list[Table]:
    """The run's workstreams, tool health and (when any) error counts, as `monitor` and its live view show them."""
    workstreams = Table("workstream", "name", "status", "progress", "tasks", title="workstreams")
    for ws in detail.workstreams:
        workstreams.add_row(
            ws.workstream_id or "(none)",
            ws.name or "",
            _styled(ws.status),
            format_progress(ws.tasks_terminal, ws.tasks_total, ws.progress),
            ", ".join(f"{status} {count}" for status, count in ws.tasks.items()),
        )
    tools = Table(
        "tool", "tasks", "succeeded", "failed", "skipped", "active", "success", "attempts", title="tool health"
    )
    for tool in detail.tools:
        tools.add_row(
            tool.tool or "(none)",
            str(tool.tasks),
            str(tool.succeeded),
            Text(str(tool.failed), style="red" if tool.failed else ""),
            str(tool.skipped + tool.cancelled),
            str(tool.active),
            "-" if tool.success_rate is None else f"{tool.success_rate:.0%}",
            str(tool.attempts),
        )
    tables = [workstreams, tools]
    if detail.errors:
        errors = Table("error type", "count", title="errors")
        for error_type, count in detail.errors.items():
            errors.add_row(error_type, str(count))
        tables.append(errors)
    return tables


def _print_run_plain(detail: RunDetail, header: str, console: Console) -> None:
    lines = [header]
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
