"""What the dashboard's API answers, read in one short read-only transaction per request.

Built on the same views as `orchestrator status` and `monitor` (`views/runs.py`), so the web
and the terminal never disagree about a run's progress or its tool health. Files a run
page links to (reports, the archive's manifest) are found on disk by fixed names, never
by a name from the request.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from ...errors import BadInput
from ...ids import validate_run_id
from ...state import pages, queries
from ...state.access import StateDatabase
from ...state.engine import read_transaction, translate_errors
from ...views.reader import fetch_run_rows
from ...views.runs import build_run_detail, build_status_view
from ...workspace import Workspace

TIMELINE_LIMIT = 500
ARCHIVAL_ROWS_LIMIT = 20


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


def read_runs_page(state: StateDatabase, wanted: pages.RunFilter, now: datetime) -> dict[str, Any]:
    """`/api/runs`: one page of runs with their progress, the total, and runs by status."""
    tables = state.tables
    with translate_errors(state.name), read_transaction(state.engine) as connection:
        rows, total = pages.fetch_runs_page(connection, tables, wanted)
        counts = pages.fetch_task_counts_for(connection, tables, [row["run_id"] for row in rows])
        by_status = pages.fetch_status_totals(connection, tables)
    view = build_status_view(rows, counts, now)
    return {
        "runs": [asdict(line) for line in view.runs],
        "total": total,
        "limit": wanted.limit,
        "offset": wanted.offset,
        "by_status": by_status,
        "warnings": view.warnings,
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
        timeline = pages.fetch_timeline(connection, tables, run_id, TIMELINE_LIMIT)
        archival = pages.fetch_archival(connection, tables, run_id, ARCHIVAL_ROWS_LIMIT)
    detail = build_run_detail(*rows, now)
    files = {link: path for link, path in run_files(workspace, run_id).items() if path.is_file()}
    return {
        **asdict(detail),
        "tasks": {"rows": task_rows, "total": task_total, "limit": wanted.limit, "offset": wanted.offset},
        "timeline": timeline,
        "archival": archival,
        "files": {link: f"/runs/{run_id}/files/{link}" for link in files},
    }


def run_exists(state: StateDatabase, run_id: str) -> bool:
    validate_run_id(run_id)
    with translate_errors(state.name), read_transaction(state.engine) as connection:
        return queries.fetch_run(connection, state.tables, run_id) is not None
