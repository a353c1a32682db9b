"""What the dashboard's API answers, read in one short read-only transaction per request.

Built on the same views as `orchestrator status` and `monitor` (`views/runs.py`), so the web
and the terminal never disagree about a run's progress or its tool health. Files a run
page links to (reports, the archive's manifest) are found on disk by fixed names, never
by a name from the request.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ...errors import BadInput
from ...events.log import Line, run_history
from ...events.types import LOG_TYPE
from ...ids import validate_run_id
from ...reports.drawing import Drawing, timeline_svg
from ...reports.numbers import TaskRow
from ...state import pages, queries
from ...state.access import StateDatabase
from ...state.engine import read_transaction, translate_errors
from ...state.records import as_text
from ...views.reader import fetch_run_rows, run_detail, task_log
from ...views.runs import StatusView, build_status_view
from ...workspace import Workspace
from .hub import EventHub

TIMELINE_LIMIT = 2000  # tasks read for a timeline, which draws at most `drawing.MAX_ROWS` of them
ARCHIVAL_ROWS_LIMIT = 20
RUN_EVENTS_LIMIT = 200


class UnknownRun(BadInput):
    """The run id is well formed but names no run (404, where a malformed one is 400)."""


def run_files(workspace: Workspace, run_id: str) -> dict[str, Path]:
    """The run's reports and archive manifest by their link name; only these can be served."""
    return {
        "summary.json": workspace.reports_dir / f"{run_id}_summary.json",
        "metrics.json": workspace.reports_dir / f"{run_id}_metrics.json",
        "report.html": workspace.reports_dir / f"{run_id}.html",
        "manifest-sha256.txt": workspace.archive_root / run_id / "manifest-sha256.txt",
        "bag-info.txt": workspace.archive_root / run_id / "bag-info.txt",
    }


@dataclass(frozen=True)
class RunsPage:
    """A page of runs as views (the console draws these; `/api/runs` turns them into JSON)."""

    view: StatusView
    total: int
    by_status: dict[str, int]


def read_runs_lines(state: StateDatabase, wanted: pages.RunFilter, now: datetime) -> RunsPage:
    """One page of runs with their progress, the total, and runs by status, in one read transaction."""
    tables = state.tables
    with translate_errors(state.name), read_transaction(state.engine) as connection:
        rows, total = pages.fetch_runs_page(connection, tables, wanted)
        counts = pages.fetch_task_counts_for(connection, tables, [row["run_id"] for row in rows])
        by_status = pages.fetch_status_totals(connection, tables)
    return RunsPage(build_status_view(rows, counts, now), total, by_status)


def read_runs_page(state: StateDatabase, wanted: pages.RunFilter, now: datetime) -> dict[str, Any]:
    """`/api/runs`: one page of runs with their progress, the total, and runs by status."""
    page = read_runs_lines(state, wanted, now)
    return {
        "runs": [asdict(line) for line in page.view.runs],
        "total": page.total,
        "limit": wanted.limit,
        "offset": wanted.offset,
        "by_status": page.by_status,
        "warnings": page.view.warnings,
    }


def read_run_page(
    state: StateDatabase, workspace: Workspace, run_id: str, wanted: pages.TaskFilter, now: datetime
) -> dict[str, Any]:
    """`/api/runs/<id>`: the run's detail (as `monitor --json`), a page of tasks, timeline, archive, files."""
    validate_run_id(run_id)
    tables = state.tables
    with translate_errors(state.name), read_transaction(state.engine) as connection:
        rows = fetch_run_rows(connection, tables, run_id)
        if rows is None:
            raise UnknownRun(f"unknown run: {run_id}")
        task_rows, task_total = pages.fetch_tasks_page(connection, tables, run_id, wanted)
        archival = pages.fetch_archival(connection, tables, run_id, ARCHIVAL_ROWS_LIMIT)
    detail = run_detail(rows, now, workspace.root)
    files = {link: path for link, path in run_files(workspace, run_id).items() if path.is_file()}
    return {
        **asdict(detail),
        "tasks": {"rows": task_rows, "total": task_total, "limit": wanted.limit, "offset": wanted.offset},
        "archival": archival,
        "files": {link: f"/runs/{run_id}/files/{link}" for link in files},
    }


def read_task_log(state: StateDatabase, workspace: Workspace, run_id: str, task_id: str) -> Path | None:
    """The task's log file (see `views.reader.task_log`), None for an unknown run or a task without one."""
    validate_run_id(run_id)
    with translate_errors(state.name), read_transaction(state.engine) as connection:
        run_row = queries.fetch_run(connection, state.tables, run_id)
    return None if run_row is None else task_log(workspace.root, run_row, task_id)


def read_timeline(state: StateDatabase, run_id: str, now: datetime) -> Drawing:
    """The run's task timeline, drawn as the report draws it (`reports/drawing.py`)."""
    validate_run_id(run_id)
    with translate_errors(state.name), read_transaction(state.engine) as connection:
        if queries.fetch_run(connection, state.tables, run_id) is None:
            raise UnknownRun(f"unknown run: {run_id}")
        workstreams = queries.fetch_workstreams(connection, state.tables, run_id)
        rows = pages.fetch_timeline(connection, state.tables, run_id, TIMELINE_LIMIT)
    tasks = [
        TaskRow(
            workstream_id=as_text(row["workstream_id"]),
            tool=as_text(row["tool"]),
            status=as_text(row["status"]) or "",
            error_type=as_text(row["error_type"]),
            attempts=int(row["attempts"] or 0),
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            task_id=str(row["task_id"]),
            error_message=as_text(row["error_message"]),
        )
        for row in rows
    ]
    return timeline_svg(workstreams, tasks, now)


def read_run_events(workspace: Workspace, hub: EventHub, run_id: str) -> list[Line]:
    """The run's latest events (`RUN_EVENTS_LIMIT`): its spool or its bag's copy, and the hub's recent ones."""
    validate_run_id(run_id)
    recent = [event.to_json() for event in hub.recent(run_id)]
    lines = [line for line in run_history(workspace, run_id, recent, set()) if line.get("type") != LOG_TYPE]
    return lines[-RUN_EVENTS_LIMIT:]


def run_exists(state: StateDatabase, run_id: str) -> bool:
    validate_run_id(run_id)
    with translate_errors(state.name), read_transaction(state.engine) as connection:
        return queries.fetch_run(connection, state.tables, run_id) is not None
