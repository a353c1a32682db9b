"""What `status`, `monitor` and the dashboard show, computed from plain rows: no database, no clock.

Failures come first: every count of tasks is also split by outcome (`OUTCOMES`, failed first)
so that a bar can show what went wrong, and a run's detail names its failed tasks with their
messages, not only how many there were.

Statuses outside the spec's lists are shown as they are, counted as not terminal, and
named once in `warnings`; unreadable timestamps likewise. A view never fails on bad data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..ids import run_dir_problem
from ..state.records import (
    OUTCOMES,
    RUN_STATUSES,
    RUN_TERMINAL,
    TASK_STATUSES,
    TASK_TERMINAL,
    as_text,
    task_outcome,
)
from ..timefmt import parse_timestamp

MAX_WARNINGS = 20
# Runs that need someone's attention first, then the ones still moving, then the rest.
ATTENTION_RANKS = {"FAILED": 0, "PARTIAL": 0, "RUNNING": 1, "PENDING": 1}


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
    outcomes: dict[str, int]
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    age_seconds: float | None
    duration_seconds: float | None  # started (else created) to finished, or to now while it is not terminal


@dataclass(frozen=True, slots=True)
class WorkstreamView:
    workstream_id: str | None
    name: str | None
    status: str | None
    tasks_total: int
    tasks_terminal: int
    progress: float | None
    tasks: dict[str, int]
    outcomes: dict[str, int]


@dataclass(frozen=True, slots=True)
class FailedTask:
    """A failed task as an operator needs it: where, which tool, how often tried, and why."""

    task_id: str
    workstream_id: str | None
    name: str | None
    tool: str | None
    attempts: int
    error_type: str | None
    error_message: str | None
    finished_at: str | None
    log: str | None = None  # the task's log file, relative to the workspace, when the run directory has one


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
    failed_tasks: list[FailedTask]  # the most recent failures first; `failed_total` says how many in all
    failed_total: int
    workstreams: list[WorkstreamView]
    tools: list[ToolView]
    errors: dict[str, int]
    attempts: Attempts
    warnings: list[str]


@dataclass(frozen=True, slots=True)
class StatusView:
    runs: list[RunLine]
    warnings: list[str]
    hidden: int = 0  # runs left out by `select_runs` (a filter or a limit)


RUN_ORDERS = ("attention", "newest", "oldest")


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


def outcome_counts(tasks: Mapping[str, int]) -> dict[str, int]:
    """Tasks by outcome, in `OUTCOMES` order; an unknown status counts as waiting (it is not terminal)."""
    counts = dict.fromkeys(OUTCOMES, 0)
    for status, count in tasks.items():
        counts[task_outcome(status)] += count
    return counts


def attention_rank(status: str) -> int:
    """0 failed or partial, 1 still moving, 2 the rest: the "needs attention" order of runs."""
    return ATTENTION_RANKS.get(status, 2)


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


def _duration_seconds(row: Mapping[str, Any], terminal: bool, now: datetime) -> float | None:
    start = parse_timestamp(row.get("started_at") or row.get("created_at") or "")
    if start is None:
        return None
    end = parse_timestamp(row.get("finished_at") or "") if terminal else now
    return None if end is None else max(0.0, (end - start).total_seconds())


def _run_line(row: Mapping[str, Any], counts: Mapping[str, int], now: datetime, warnings: _Warnings) -> RunLine:
    status = as_text(row["status"]) or ""
    if status not in RUN_STATUSES:
        warnings.add(f"run {row['run_id']}: status {status!r} is not a known status (counted as not terminal)")
    run_dir = as_text(row.get("run_dir"))
    if run_dir is not None and run_dir_problem(run_dir) is not None:
        warnings.add(f"run {row['run_id']}: run_dir {run_dir!r} leaves the workspace: the run is never archived")
    total = sum(counts.values())
    done = _terminal_count(counts, warnings)
    terminal = status in RUN_TERMINAL
    return RunLine(
        run_id=row["run_id"],
        name=as_text(row.get("name")),
        status=status,
        terminal=terminal,
        tasks_total=total,
        tasks_terminal=done,
        progress=_progress(done, total),
        tasks=dict(sorted(counts.items())),
        outcomes=outcome_counts(counts),
        created_at=as_text(row.get("created_at")),
        started_at=as_text(row.get("started_at")),
        finished_at=as_text(row.get("finished_at")),
        age_seconds=_age_seconds(row, now, warnings),
        duration_seconds=_duration_seconds(row, terminal, now),
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


def select_runs(
    view: StatusView, statuses: Iterable[str] | None = None, order: str = "oldest", limit: int | None = None
) -> StatusView:
    """The runs of `statuses` (all when None), in `order` (`RUN_ORDERS`: "attention" is failed and partial,
    then running and pending, newest first within each), at most `limit` of them."""
    if order not in RUN_ORDERS:
        raise ValueError(f"unknown order {order!r}")
    wanted = None if statuses is None else frozenset(statuses)
    runs = [line for line in view.runs if wanted is None or line.status in wanted]
    if order != "oldest":
        runs.reverse()  # read in order of creation
    if order == "attention":
        runs.sort(key=lambda line: attention_rank(line.status))
    shown = runs if limit is None else runs[:limit]
    return StatusView(runs=shown, warnings=view.warnings, hidden=view.hidden + len(view.runs) - len(shown))


def build_run_detail(
    run_row: Mapping[str, Any],
    workstream_rows: Iterable[Mapping[str, Any]],
    task_groups: Iterable[Mapping[str, Any]],
    now: datetime,
    failed_rows: Iterable[Mapping[str, Any]] = (),
) -> RunDetail:
    """One run: its failed tasks (`failed_rows`, newest first), workstreams, tool health, errors, attempts."""
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
        failed_tasks=[_failed_task(row) for row in failed_rows],
        failed_total=run_counts.get("FAILED", 0),
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
        outcomes=outcome_counts(counts),
    )


def _failed_task(row: Mapping[str, Any]) -> FailedTask:
    return FailedTask(
        task_id=str(row["task_id"]),
        workstream_id=as_text(row.get("workstream_id")),
        name=as_text(row.get("name")),
        tool=as_text(row.get("tool")),
        attempts=int(row.get("attempts") or 0),
        error_type=as_text(row.get("error_type")),
        error_message=as_text(row.get("error_message")),
        finished_at=as_text(row.get("finished_at")),
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
