"""The numbers of a run's reports, from its rows: a pure function, no I/O.

`summary` and `metrics` are the documents of `reports/<run_id>_summary.json` and
`_metrics.json`; `schema/report-summary.schema.json` and `report-metrics.schema.json` describe
them. Times are read with `datetime.fromisoformat` first (a C call; a run of 100,000 tasks
has 200,000 of them) and the spec's other shapes after; an unreadable time leaves its task
out of the durations, never fails the report.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..timefmt import format_timestamp, parse_timestamp

SUMMARY_SCHEMA = "orchestrator-monitor/report-summary/1"
METRICS_SCHEMA = "orchestrator-monitor/report-metrics/1"
NO_TOOL = "(none)"
NO_WORKSTREAM = "(none)"
PERCENTILES = (50, 90, 95, 99)
FAILED_TASKS_LISTED = 50
ERROR_MESSAGE_CHARS = 500


@dataclass(frozen=True, slots=True)
class TaskRow:
    workstream_id: str | None
    tool: str | None
    status: str
    error_type: str | None
    attempts: int
    started_at: object
    finished_at: object
    task_id: str
    error_message: str | None


@dataclass(frozen=True)
class ArchiveFacts:
    path: str | None
    files: int
    bytes: int
    manifest_sha256: str | None


def read_time(value: object) -> datetime | None:
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return parse_timestamp(value)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return parse_timestamp(value)


def _text_time(value: object) -> str | None:
    moment = read_time(value)
    return format_timestamp(moment) if moment is not None else None


def by_status(statuses: Iterable[str]) -> dict[str, Any]:
    counts = Counter(statuses)
    return {"total": sum(counts.values()), "by_status": dict(sorted(counts.items()))}


def summary(
    run: Mapping[str, Any],
    workstreams: Sequence[Mapping[str, Any]],
    tasks: list[TaskRow],
    archive: ArchiveFacts,
    now: datetime,
) -> dict[str, Any]:
    started, finished = read_time(run.get("started_at")), read_time(run.get("finished_at"))
    per_workstream: defaultdict[str | None, list[str]] = defaultdict(list)
    errors_by_tool: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for task in tasks:
        per_workstream[task.workstream_id].append(task.status)
        if task.error_type is not None or task.status == "FAILED":
            errors_by_tool[task.tool or NO_TOOL][task.error_type or "unknown"] += 1
    by_type: Counter[str] = Counter()
    for counts in errors_by_tool.values():
        by_type.update(counts)
    # The latest failures by their finish time as written (ISO text sorts by time), without parsing 100,000 times.
    failed = heapq.nlargest(
        FAILED_TASKS_LISTED,
        (task for task in tasks if task.status == "FAILED"),
        key=lambda task: (task.finished_at is not None, str(task.finished_at)),
    )
    return {
        "schema": SUMMARY_SCHEMA,
        "run_id": run["run_id"],
        "name": run.get("name"),
        "status": run["status"],
        "created_at": _text_time(run.get("created_at")),
        "started_at": format_timestamp(started) if started else None,
        "finished_at": format_timestamp(finished) if finished else None,
        "duration_seconds": round((finished - started).total_seconds(), 6) if started and finished else None,
        "generated_at": format_timestamp(now),
        "tasks": by_status(task.status for task in tasks),
        "workstreams": [
            {
                "workstream_id": ws["workstream_id"],
                "name": ws.get("name"),
                "status": ws["status"],
                "tasks": by_status(per_workstream.get(ws["workstream_id"], [])),
            }
            for ws in workstreams
        ],
        "errors": {
            "total": sum(by_type.values()),
            "by_tool": {tool: dict(sorted(c.items())) for tool, c in sorted(errors_by_tool.items())},
            "by_type": dict(sorted(by_type.items())),
            "failed_tasks": [_failed_task(task) for task in failed],
        },
        "archive": {
            "path": archive.path,
            "archived": archive.path is not None,
            "manifest_sha256": archive.manifest_sha256,
        },
    }


def _failed_task(task: TaskRow) -> dict[str, Any]:
    message = task.error_message
    return {
        "task_id": str(task.task_id),
        "workstream_id": task.workstream_id,
        "tool": task.tool,
        "attempts": task.attempts or 0,
        "error_type": task.error_type,
        "error_message": message[:ERROR_MESSAGE_CHARS] if isinstance(message, str) else None,
        "finished_at": _text_time(task.finished_at),
    }


def durations(tasks: Iterable[TaskRow]) -> list[float]:
    """Seconds from start to finish of every task with both times readable, sorted."""
    found = []
    for task in tasks:
        if task.started_at is None or task.finished_at is None:
            continue
        start, end = read_time(task.started_at), read_time(task.finished_at)
        if start is not None and end is not None:
            found.append((end - start).total_seconds())
    return sorted(found)


def percentile(ordered: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def metrics(run_id: str, tasks: list[TaskRow], archive: ArchiveFacts, now: datetime) -> dict[str, Any]:
    ordered = durations(tasks)
    tools: defaultdict[str, Counter[str]] = defaultdict(Counter)
    attempts = [task.attempts or 0 for task in tasks]
    for task in tasks:
        tools[task.tool or NO_TOOL][task.status] += 1
    return {
        "schema": METRICS_SCHEMA,
        "run_id": run_id,
        "generated_at": format_timestamp(now),
        "task_duration_seconds": {
            "count": len(ordered),
            "min": ordered[0] if ordered else None,
            "max": ordered[-1] if ordered else None,
            "mean": round(sum(ordered) / len(ordered), 6) if ordered else None,
            **{f"p{p}": percentile(ordered, p) for p in PERCENTILES},
        },
        "tools": {tool: _tool_rates(counts) for tool, counts in sorted(tools.items())},
        "attempts": {
            "total": sum(attempts),
            "mean": round(sum(attempts) / len(attempts), 6) if attempts else None,
            "max": max(attempts, default=0),
            "retried_tasks": sum(1 for a in attempts if a > 1),
        },
        "archive": {"files": archive.files, "bytes": archive.bytes},
    }


def _tool_rates(counts: Counter[str]) -> dict[str, Any]:
    finished = counts["SUCCEEDED"] + counts["FAILED"]
    return {
        "tasks": sum(counts.values()),
        "succeeded": counts["SUCCEEDED"],
        "failed": counts["FAILED"],
        "skipped": counts["SKIPPED"],
        "cancelled": counts["CANCELLED"],
        "success_rate": round(counts["SUCCEEDED"] / finished, 6) if finished else None,
    }
