"""The view computations alone: plain rows in, numbers out, no database and no clock."""

from __future__ import annotations

from datetime import UTC, datetime

from orchestrator_monitor.views.runs import MAX_WARNINGS, build_run_detail, build_status_view, select_runs

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


def run_row(run_id: str = "r1", status: str = "RUNNING", created_at: object = "2026-11-24 11:00:00") -> dict:
    return {"run_id": run_id, "name": None, "status": status, "created_at": created_at, "started_at": None,
            "finished_at": None}  # fmt: skip


def group(ws: str | None, tool: str | None, status: str, tasks: int, attempts: int | None = None,
          error_type: str | None = None, retried: int = 0) -> dict:  # fmt: skip
    attempts = tasks if attempts is None else attempts
    return {"workstream_id": ws, "tool": tool, "status": status, "error_type": error_type, "tasks": tasks,
            "attempts": attempts, "max_attempts": 1 + (retried > 0), "retried": retried}  # fmt: skip


def test_progress_counts_only_terminal_tasks_and_age_comes_from_created_at() -> None:
    view = build_status_view([run_row()], {"r1": {"SUCCEEDED": 2, "SKIPPED": 1, "RUNNING": 1}}, NOW)
    line = view.runs[0]
    assert (line.tasks_total, line.tasks_terminal, line.progress) == (4, 3, 0.75)
    assert line.age_seconds == 3600
    assert view.warnings == []


def test_a_run_without_tasks_has_no_progress_rather_than_zero() -> None:
    line = build_status_view([run_row()], {}, NOW).runs[0]
    assert (line.tasks_total, line.progress) == (0, None)


def test_warnings_are_distinct_and_bounded() -> None:
    rows = [run_row(f"r{n}", status="ODD") for n in range(3)] + [run_row(f"x{n}", status=f"ODD{n}") for n in range(40)]
    view = build_status_view(rows, {}, NOW)
    assert len(view.warnings) == MAX_WARNINGS + 1
    assert view.warnings[-1] == f"... and {43 - MAX_WARNINGS} more warnings"


def test_tool_health_success_rate_attempts_and_errors() -> None:
    workstreams = [{"workstream_id": "w1", "name": "one", "status": "RUNNING"}]
    groups = [
        group("w1", "lint", "SUCCEEDED", 3),
        group("w1", "lint", "FAILED", 1, attempts=3, error_type="timeout", retried=1),
        group("w1", "test", "FAILED", 2, error_type="exit_code"),
        group("w1", "test", "RUNNING", 1),
        group("w1", "deploy", "SKIPPED", 2),
    ]
    detail = build_run_detail(run_row(), workstreams, groups, NOW)
    tools = {tool.tool: tool for tool in detail.tools}
    assert tools["lint"].success_rate == 0.75
    assert tools["test"].success_rate == 0.0
    assert tools["deploy"].success_rate is None  # nothing succeeded or failed: no rate, not 0 %
    assert (tools["test"].active, tools["lint"].attempts, tools["lint"].retried_tasks) == (1, 6, 1)
    assert detail.errors == {"exit_code": 2, "timeout": 1}
    assert (detail.attempts.total, detail.attempts.retried_tasks, detail.attempts.max) == (11, 1, 2)
    assert detail.workstreams[0].tasks_terminal == 8


def test_tasks_of_missing_or_no_workstream_are_shown_not_lost() -> None:
    groups = [
        group("w1", "lint", "SUCCEEDED", 1),
        group("gone", "lint", "SUCCEEDED", 2),
        group(None, None, "PENDING", 4),
    ]
    detail = build_run_detail(run_row(), [{"workstream_id": "w1", "name": "one", "status": "COMPLETED"}], groups, NOW)
    assert [(ws.workstream_id, ws.tasks_total) for ws in detail.workstreams] == [("w1", 1), (None, 4), ("gone", 2)]
    assert detail.warnings == ["2 tasks reference workstream 'gone', which does not exist"]
    assert detail.run.tasks_total == 7


def test_outcomes_split_the_tasks_failures_first() -> None:
    line = build_status_view([run_row()], {"r1": {"FAILED": 2, "SUCCEEDED": 3, "QUEUED": 1, "ODD": 1}}, NOW).runs[0]
    assert list(line.outcomes) == ["failed", "cancelled", "skipped", "succeeded", "running", "waiting"]
    assert line.outcomes == {"failed": 2, "cancelled": 0, "skipped": 0, "succeeded": 3, "running": 0, "waiting": 2}


def test_a_finished_run_has_a_fixed_duration_and_a_running_one_grows_to_now() -> None:
    done = {**run_row("d", "FAILED"), "started_at": "2026-11-24 11:00:00", "finished_at": "2026-11-24 11:10:00"}
    going = {**run_row("g"), "started_at": "2026-11-24 11:30:00"}
    lines = build_status_view([done, going], {}, NOW).runs
    assert [line.duration_seconds for line in lines] == [600, 1800]


def test_select_runs_filters_orders_by_attention_and_limits() -> None:
    rows = [run_row("ok-old", "COMPLETED"), run_row("run-old"), run_row("bad", "FAILED"), run_row("run-new")]
    view = build_status_view(rows, {}, NOW)
    assert [r.run_id for r in select_runs(view, order="attention").runs] == ["bad", "run-new", "run-old", "ok-old"]
    assert [r.run_id for r in select_runs(view, order="newest", limit=2).runs] == ["run-new", "bad"]
    picked = select_runs(view, statuses=["RUNNING"], limit=1)
    assert [r.run_id for r in picked.runs] == ["run-old"] and picked.hidden == 3


def test_failed_tasks_are_named_with_their_messages() -> None:
    failed = [{"task_id": "t9", "workstream_id": "w1", "name": None, "tool": "pytest", "attempts": 2,
               "error_type": "exit_code", "error_message": "3 tests failed",
               "finished_at": "2026-11-24 11:59:00"}]  # fmt: skip
    detail = build_run_detail(run_row(), [], [group("w1", "pytest", "FAILED", 4, error_type="exit_code")], NOW, failed)
    assert detail.failed_total == 4 and detail.failed_tasks[0].task_id == "t9"
    assert (detail.failed_tasks[0].error_message, detail.failed_tasks[0].log) == ("3 tests failed", None)
