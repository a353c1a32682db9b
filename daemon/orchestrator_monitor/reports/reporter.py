"""One report pass for one run: read its rows, compute, render, write atomically, record, announce.

The reports are rebuilt from the state database and the published bag every time, so writing
them again is harmless; `REPORT_GENERATED` has the once-per-run id. A failure gives
`REPORT_FAILED` and, from a command, an `ESCALATION` (trigger `report_generation_failure`; in the
daemon the supervisor turns REPORT_FAILED into one, once per incident). Once the run is
archived and reported, its event spool is dropped: the bag holds the events.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select

from ..durable import replace_files
from ..errors import BadInput, MonitorError, ProblemFound
from ..events.once import Unrecorded
from ..events.sinks.spool import remove_run_events
from ..events.types import EventType, Publish
from ..ids import task_log_path, validate_run_id
from ..ledger.runs import Ledger
from ..state.access import StateDatabase
from ..state.engine import read_transaction, translate_errors
from ..state.queries import fetch_run, fetch_workstreams
from ..state.records import RUN_TERMINAL
from ..workspace import Workspace
from .drawing import timeline_svg, tool_bars
from .numbers import ArchiveFacts, TaskRow, metrics, summary
from .page import render_page

logger = logging.getLogger(__name__)

ESCALATION_TRIGGER = "report_generation_failure"


class ReportFailure(MonitorError):
    """Reports could not be written (REPORT_FAILED was published)."""

    exit_code = 1


@dataclass(frozen=True)
class Reporting:
    workspace: Workspace
    state: StateDatabase
    publish: Publish
    flush_events: Callable[[], None]  # the spool is removed only once REPORT_GENERATED is written there
    ledger: Ledger
    read_archive: Callable[[str], ArchiveFacts]  # the run's published bag; the pipeline reads it (reports never do)
    escalate: bool = True  # False in the daemon: its supervisor escalates REPORT_FAILED once per incident
    unrecorded: Unrecorded = field(default_factory=Unrecorded)  # REPORT_GENERATED out, its record not written yet


def report_paths(workspace: Workspace, run_id: str) -> list[Path]:
    folder = workspace.reports_dir
    return [folder / f"{run_id}_summary.json", folder / f"{run_id}_metrics.json", folder / f"{run_id}.html"]


def report_run(ctx: Reporting, run_id: str, now: datetime) -> list[Path]:
    """Write the run's reports and announce them; bad input and non-terminal runs raise before any event."""
    validate_run_id(run_id)
    run, workstream_rows, task_rows = _read_rows(ctx, run_id)
    try:
        paths = write_reports(ctx, run, workstream_rows, task_rows, now)
    except Exception as err:
        detail = f"reports of run {run_id} failed: {type(err).__name__}: {err}"
        logger.exception("%s", detail)
        ctx.publish(EventType.REPORT_FAILED, {"reason": type(err).__name__, "detail": detail}, run_id=run_id)
        if ctx.escalate:
            escalation = {"trigger": ESCALATION_TRIGGER, "severity": "error", "detail": detail}
            ctx.publish(EventType.ESCALATION, escalation, run_id=run_id)
        raise ReportFailure(detail) from None

    def announce() -> None:
        ctx.publish(EventType.REPORT_GENERATED, {"paths": [str(p) for p in paths]}, run_id=run_id)
        ctx.flush_events()  # written before it is recorded: a crash repeats the event (same id), never loses it

    ctx.unrecorded.announce_then_record(run_id, announce, lambda: ctx.ledger.reported(run_id))
    if (ctx.workspace.archive_root / run_id).exists():
        remove_run_events(ctx.workspace.monitor_dir, run_id)
    return paths


def write_reports(
    ctx: Reporting,
    run: dict[str, Any],
    workstream_rows: list[dict[str, Any]],
    task_rows: list[TaskRow],
    now: datetime,
) -> list[Path]:
    run_id = run["run_id"]
    archive = ctx.read_archive(run_id)
    summary_doc = summary(run, workstream_rows, task_rows, archive, now)
    metrics_doc = metrics(run_id, task_rows, archive, now)
    logs = {}
    for failed in summary_doc["errors"]["failed_tasks"]:
        log = task_log_path(ctx.workspace.root, run_id, run.get("run_dir"), failed["task_id"])
        if log is not None and log.is_file():
            logs[failed["task_id"]] = os.path.relpath(log, ctx.workspace.reports_dir)
    context = {
        "summary": summary_doc,
        "metrics": metrics_doc,
        "timeline": timeline_svg(workstream_rows, task_rows, now),
        "tools": tool_bars(metrics_doc["tools"]),
        "logs": logs,
    }
    page, warning = render_page(context, ctx.workspace.root)
    if warning is not None:
        logger.warning("run %s: %s", run_id, warning)
        ctx.publish(EventType.WARNING, {"what": "report template", "detail": warning}, run_id=run_id)
    paths = report_paths(ctx.workspace, run_id)
    ctx.workspace.reports_dir.mkdir(parents=True, exist_ok=True)
    option = orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE
    replace_files(
        {
            paths[0]: orjson.dumps(summary_doc, option=option),
            paths[1]: orjson.dumps(metrics_doc, option=option),
            paths[2]: page.encode(),
        }
    )
    return paths


def _read_rows(ctx: Reporting, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[TaskRow]]:
    """The run, its workstreams and its tasks, in one read transaction; the run's status is the true
    outcome (the monitor's PARTIAL where the executor could only store `failed`)."""
    state = ctx.state
    tasks = state.tables.tasks
    task_columns = (
        tasks.c.workstream_id,
        tasks.c.tool,
        tasks.c.status,
        tasks.c.error_type,
        tasks.c.attempts,
        tasks.c.started_at,
        tasks.c.finished_at,
        tasks.c.task_id,
        tasks.c.error_message,
    )
    with translate_errors(state.name), read_transaction(state.engine) as connection:
        run = fetch_run(connection, state.tables, run_id)
        if run is None:
            raise BadInput(f"unknown run: {run_id}")
        workstream_rows = fetch_workstreams(connection, state.tables, run_id)
        task_rows = [TaskRow(*row) for row in connection.execute(select(*task_columns).where(tasks.c.run_id == run_id))]
    if run["status"] not in RUN_TERMINAL:
        raise ProblemFound(f"run {run_id} is {run['status']}, not terminal: reports are written once it has finished")
    run["status"] = state.mapping.true_status(run["status"], ctx.ledger.decision(run_id))
    return run, workstream_rows, task_rows
