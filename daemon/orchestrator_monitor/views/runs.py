"""What `status` and `monitor` show, computed from plain rows: no database, no clock.

Statuses outside the spec's lists are shown as they are, counted as not terminal, and
named once in `warnings`; unreadable timestamps likewise. A view never fails on bad data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..ids import run_dir_problem
from ..state.records import RUN_STATUSES, RUN_TERMINAL, TASK_STATUSES, TASK_TERMINAL, as_text
from ..timefmt import parse_timestamp

MAX_WARNINGS = 20


@dataclass(frozen=True, slots=True)
class RunLine:
    run_id: str
    name: str | None
    status: str
    terminal: bool
    tasks_total: int
    tasks_terminal: int
    progress: float | None
    tasks: dict[str, int]
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    age_seconds: float | None


@dataclass(frozen=True, slots=True)
class WorkstreamView:
    workstream_id: str | None
    name: str | None
    status: str | None
    tasks_total: int
    tasks_terminal: int
    progress: float | None
    tasks: dict[str, int]


@dataclass(frozen=True, slots=True)
class ToolView:
    tool: str | None
    tasks: int
    succeeded: int
    failed: int
    skipped: int
    cancelled: int
    active: int
    success_rate: float | None
    attempts: int
    retried_tasks: int


@dataclass(frozen=True, slots=True)
class Attempts:
    total: int
    retried_tasks: int
    max: int


@dataclass(frozen=True, slots=True)
class RunDetail:
    run: RunLine
    workstreams: list[WorkstreamView]
    tools: list[ToolView]
    errors: dict[str, int]
    attempts: Attempts
    warnings: list[str]


@dataclass(frozen=True, slots=True)
class StatusView:
    runs: list[RunLine]
    warnings: list[str]


@dataclass
class _Warnings:
    """Distinct warnings in order of first sight, at most `MAX_WARNINGS` spelled out."""

    seen: dict[str, None] = field(default_factory=dict)

    def add(self, message: str) -> None:
        self.seen.setdefault(message, None)

    def as_list(self) -> list[str]:
        messages = list(self.seen)
        if len(messages) <= MAX_WARNINGS:
            return messages
        return [*messages[:MAX_WARNINGS], f"... and {len(messages) - MAX_WARNINGS} more warnings"]


def _terminal_count(counts: Mapping[str, int], warnings: _Warnings) -> int:
    for status in counts:
        if status not in TASK_STATUSES:
            warnings.add(f"task status {status!r} is not a known status (counted as not terminal)")
    return sum(count for status, count in counts.items() if status in TASK_TERMINAL)


def _progress(done: int, total: int) -> float | None:
    return done / total if total else None


def _age_seconds(row: Mapping[str, Any], now: datetime, warnings: _Warnings) -> float | None:
    for column in ("created_at", "started_at"):
        value = row.get(column)
        if value is None:
            continue
        moment = parse_timestamp(value)
        if moment is None:
            warnings.add(f"run {row['run_id']}: unreadable {column} {value!r}")
            continue
        return max(0.0, (now - moment).total_seconds())
    return None


def _run_line(row: Mapping[str, Any], counts: Mapping[str, int], now: datetime, warnings: _Warnings) -> RunLine:
    status = as_text(row["status"]) or ""
    if status not in RUN_STATUSES:
        warnings.add(f"run {row['run_id']}: status {status!r} is not a known status (counted as not terminal)")
    run_dir = as_text(row.get("run_dir"))
    if run_dir is not None and run_dir_problem(run_dir) is not None:
        warnings.add(f"run {row['run_id']}: run_dir {run_dir!r} leaves the workspace: the run is never archived")
    total = sum(counts.values())
    done = _terminal_count(counts, warnings)
    return RunLine(
        run_id=row["run_id"],
        name=as_text(row.get("name")),
        status=status,
        terminal=status in RUN_TERMINAL,
        tasks_total=total,
        tasks_terminal=done,
        progress=_progress(done, total),
        tasks=dict(sorted(counts.items())),
        created_at=as_text(row.get("created_at")),
        started_at=as_text(row.get("started_at")),
        finished_at=as_text(row.get("finished_at")),
        age_seconds=_age_seconds(row, now, warnings),
    )


def build_status_view(
    run_rows: Iterable[Mapping[str, Any]], task_counts: Mapping[str, Mapping[str, int]], now: datetime
) -> StatusView:
    """One line per run: status, progress and age."""
    warnings = _Warnings()
    lines = [_run_line(row, task_counts.get(row["run_id"], {}), now, warnings) for row in run_rows]
    run_ids = {line.run_id for line in lines}
    for run_id in task_counts:
        if run_id not in run_ids:
            warnings.add(f"tasks reference run {run_id!r}, which does not exist")
    return StatusView(runs=lines, warnings=warnings.as_list())


def build_run_detail(
    run_row: Mapping[str, Any],
    workstream_rows: Iterable[Mapping[str, Any]],
    task_groups: Iterable[Mapping[str, Any]],
    now: datetime,
) -> RunDetail:
    """One run: its workstreams, tool health, error counts and attempts."""
    warnings = _Warnings()
    groups = list(task_groups)
    run_counts: dict[str, int] = {}
    by_workstream: dict[str | None, dict[str, int]] = {}
    by_tool: dict[str | None, list[Mapping[str, Any]]] = {}
    errors: dict[str, int] = {}
    for group in groups:
        status, count = group["status"], group["tasks"]
        run_counts[status] = run_counts.get(status, 0) + count
        ws_counts = by_workstream.setdefault(group["workstream_id"], {})
        ws_counts[status] = ws_counts.get(status, 0) + count
        by_tool.setdefault(group["tool"], []).append(group)
        if group["error_type"] is not None:
            errors[group["error_type"]] = errors.get(group["error_type"], 0) + count

    workstreams = []
    for ws in workstream_rows:
        if ws["status"] not in RUN_STATUSES:
            warnings.add(f"workstream {ws['workstream_id']}: status {ws['status']!r} is not a known status")
        workstreams.append(_workstream_view(ws, by_workstream.pop(ws["workstream_id"], {}), warnings))
    for orphan_id, counts in sorted(by_workstream.items(), key=lambda item: item[0] or ""):
        if orphan_id is not None:
            warnings.add(f"{sum(counts.values())} tasks reference workstream {orphan_id!r}, which does not exist")
        workstreams.append(
            _workstream_view({"workstream_id": orphan_id, "name": None, "status": None}, counts, warnings)
        )

    return RunDetail(
        run=_run_line(run_row, run_counts, now, warnings),
        workstreams=workstreams,
        tools=[_tool_view(tool, rows) for tool, rows in sorted(by_tool.items(), key=lambda item: item[0] or "")],
        errors=dict(sorted(errors.items(), key=lambda item: (-item[1], item[0]))),
        attempts=Attempts(
            total=sum(group["attempts"] for group in groups),
            retried_tasks=sum(group["retried"] for group in groups),
            max=max((group["max_attempts"] for group in groups), default=0),
        ),
        warnings=warnings.as_list(),
    )


def _workstream_view(row: Mapping[str, Any], counts: Mapping[str, int], warnings: _Warnings) -> WorkstreamView:
    total = sum(counts.values())
    done = _terminal_count(counts, warnings)
    return WorkstreamView(
        workstream_id=row["workstream_id"],
        name=row["name"],
        status=row["status"],
        tasks_total=total,
        tasks_terminal=done,
        progress=_progress(done, total),
        tasks=dict(sorted(counts.items())),
    )


def _tool_view(tool: str | None, groups: list[Mapping[str, Any]]) -> ToolView:
    def count(status: str) -> int:
        return sum(group["tasks"] for group in groups if group["status"] == status)

    succeeded, failed = count("SUCCEEDED"), count("FAILED")
    skipped, cancelled = count("SKIPPED"), count("CANCELLED")
    total = sum(group["tasks"] for group in groups)
    return ToolView(
        tool=tool,
        tasks=total,
        succeeded=succeeded,
        failed=failed,
        skipped=skipped,
        cancelled=cancelled,
        active=total - succeeded - failed - skipped - cancelled,
        success_rate=succeeded / (succeeded + failed) if succeeded + failed else None,
        attempts=sum(group["attempts"] for group in groups),
        retried_tasks=sum(group["retried"] for group in groups),
    )
