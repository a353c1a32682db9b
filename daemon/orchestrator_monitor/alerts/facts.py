"""An event's alert facts: its own data, and for a finished run its name and failed tasks from the state database.

`RUN_COMPLETED` says only the status and the task counts; which task failed, with what tool,
error type and message, is in the executor's tasks table, read here in one short transaction
(the alert sink's thread, never the bus's).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..events.types import Event, EventType
from ..state.engine import read_transaction
from ..state.pages import TaskFilter, fetch_tasks_page
from ..state.queries import fetch_run
from ..state.tables import StateTables
from .rules import AlertFacts

logger = logging.getLogger(__name__)

FAILED_TASKS_READ = 20  # an alert names the first; rules match the tools and error types of these
RunDetails = Callable[[str], tuple[str | None, list[dict[str, Any]]]]  # run id -> (name, failed tasks)

_STATUS_KEY = {EventType.RUN_COMPLETED: "status", EventType.RUN_STATUS_CHANGED: "to"}
_SUMMARIES: dict[EventType, str] = {
    EventType.RUN_COMPLETED: "run {run_id} ended {status}",
    EventType.RUN_STATUS_CHANGED: "run {run_id} is {status}",
    EventType.RUN_STALLED: "run {run_id} made no progress for {idle_s} s",
    EventType.RUN_REOPENED: "run {run_id} changed after its mark",
    EventType.ARCHIVE_FAILED: "archiving run {run_id} failed: {reason}",
    EventType.ARCHIVE_CORRUPT: "the archive of run {run_id} no longer matches its manifest",
    EventType.OFFLOAD_FAILED: "offloading run {run_id} to {target} failed: {reason}",
    EventType.REPORT_FAILED: "the report of run {run_id} failed: {reason}",
    EventType.SAFE_MODE_ENTERED: "safe mode {reason} entered",
    EventType.SAFE_MODE_EXITED: "safe mode {reason} left",
    EventType.ESCALATION: "escalation: {trigger}",
    EventType.HEALTH_CHANGED: "health check {check}: {to}",
    EventType.WARNING: "warning: {what}",
}


def state_run_details(engine: Engine, tables: StateTables) -> RunDetails:
    """Read a run's name and failed tasks; nothing when the database cannot be read (the alert still goes)."""

    def read(run_id: str) -> tuple[str | None, list[dict[str, Any]]]:
        try:
            with read_transaction(engine) as connection:
                run = fetch_run(connection, tables, run_id)
                tasks, _ = fetch_tasks_page(
                    connection, tables, run_id, TaskFilter(status="FAILED", limit=FAILED_TASKS_READ)
                )
        except SQLAlchemyError as err:
            logger.warning("the failed tasks of run %s cannot be read for its alert: %s", run_id, type(err).__name__)
            return None, []
        name = run.get("name") if run else None
        return (str(name) if name else None), tasks

    return read


def event_facts(event: Event, details: RunDetails | None) -> AlertFacts:
    data = event.data
    status = _STATUS_KEY.get(event.type)
    status = data.get(status) if status else None
    run_name: str | None = None
    failed_tasks: list[dict[str, Any]] = []
    if event.run_id is not None and details is not None and event.type is EventType.RUN_COMPLETED:
        run_name, failed_tasks = details(event.run_id)
    words = {"run_id": event.run_id, "status": status, **{k: v for k, v in data.items() if k != "status"}}
    return AlertFacts(
        event_type=str(event.type),
        time=event.time,
        key=event.run_id if event.run_id is not None else event.id,
        run_id=event.run_id,
        run_name=run_name,
        status=None if status is None else str(status),
        safe_mode=str(data["reason"]) if event.type.startswith("SAFE_MODE_") else None,
        severity=str(data.get("severity") or _severity(event.type, status)),
        summary=_SUMMARIES.get(event.type, str(event.type)).format_map(_Blank(words)),
        detail=str(data.get("detail") or ""),
        failed_tasks=tuple(failed_tasks),
        tasks=dict(data.get("tasks") or {}),
    )


def _severity(type: EventType, status: object) -> str:
    """An ESCALATION's own severity; else `error` for a FAILED run, `warning` for another end or trouble."""
    if status == "FAILED":
        return "error"
    if type in (EventType.RUN_COMPLETED, EventType.SAFE_MODE_ENTERED) or type.endswith("_FAILED"):
        return "warning"
    return "info"


class _Blank(dict[str, Any]):
    """`str.format_map` words: a key the event lacks shows as `?`."""

    def __missing__(self, key: str) -> str:
        return "?"


def sample_facts(rule_events: list[str], time: str) -> AlertFacts:
    """A made-up FAILED run for `orchestrator alerts test`: every field a template may use, marked as a test."""
    return AlertFacts(
        event_type=rule_events[0],
        time=time,
        key="test-run",
        run_id="test-run",
        run_name="a test alert from orchestrator alerts test",
        status="FAILED",
        severity="error",
        summary="run test-run ended FAILED (a test alert: no run failed)",
        failed_tasks=(
            {"task_id": "t1", "name": "build", "tool": "make", "error_type": "ExitCode", "error_message": "exit 2"},
        ),
        tasks={"SUCCEEDED": 1, "FAILED": 1},
    )
