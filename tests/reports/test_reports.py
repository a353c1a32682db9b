"""Reports: the numbers, the schemas, the page and its fallback, the events, and the time for a large run."""

from __future__ import annotations

import time
from pathlib import Path

from archive_support import add_terminal_run, assert_reports_valid
from orchestrator_monitor.demo.simulator import bulk_populate
from orchestrator_monitor.reports.numbers import percentile
from support import EventLog


def test_report_numbers_and_schemas(workspace: Path, cli) -> None:
    add_terminal_run(workspace, "rep", status="PARTIAL", tasks=4)
    result = cli("report", "--run", "rep", "--workspace", str(workspace))
    assert result.code == 0, result.err
    names = ("rep_summary.json", "rep_metrics.json", "rep.html")
    assert result.out.split() == [str(workspace / "reports" / name) for name in names]
    docs = assert_reports_valid(workspace, "rep")
    summary, metrics = docs["summary"], docs["metrics"]
    assert summary["tasks"] == {"total": 4, "by_status": {"FAILED": 1, "SUCCEEDED": 3}}
    assert summary["duration_seconds"] == 300.0
    assert summary["errors"] == {"total": 1, "by_tool": {"test": {"timeout": 1}}, "by_type": {"timeout": 1}}
    assert summary["archive"] == {"path": None, "archived": False, "manifest_sha256": None}
    assert metrics["tools"]["test"]["success_rate"] == 0.5 and metrics["tools"]["lint"]["success_rate"] == 1.0
    assert metrics["task_duration_seconds"]["count"] == 4 and metrics["task_duration_seconds"]["p50"] == 60.5
    assert metrics["attempts"] == {"total": 5, "mean": 1.25, "max": 2, "retried_tasks": 1}
    page = (workspace / "reports" / "rep.html").read_text()
    assert "<svg" in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert [e["id"] for e in EventLog(workspace).events("REPORT_GENERATED")] == ["rep:REPORT_GENERATED"]


def test_a_broken_or_missing_template_gives_the_generic_page_and_a_warning(workspace: Path, cli) -> None:
    add_terminal_run(workspace, "tpl")
    templates = workspace / "config" / "templates"
    templates.mkdir(parents=True)
    (templates / "report.html.j2").write_text("{% for x in %}broken")
    assert cli("report", "--run", "tpl", "--workspace", str(workspace)).code == 0
    assert_reports_valid(workspace, "tpl")
    assert "Generic report" in (workspace / "reports" / "tpl.html").read_text()
    warnings = EventLog(workspace).events("WARNING")
    assert warnings[-1]["data"]["what"] == "report template" and "TemplateSyntaxError" in warnings[-1]["data"]["detail"]
    (templates / "report.html.j2").write_text("<!DOCTYPE html>{{ summary.run_id }} {{ no_such_name.x }}")
    assert cli("report", "--run", "tpl", "--workspace", str(workspace)).code == 0
    assert "Generic report" in (workspace / "reports" / "tpl.html").read_text()
    (templates / "report.html.j2").write_text("<!DOCTYPE html>custom {{ summary.run_id }}")
    assert cli("report", "--run", "tpl", "--workspace", str(workspace)).code == 0
    assert (workspace / "reports" / "tpl.html").read_text() == "<!DOCTYPE html>custom tpl"


def test_nearest_rank_percentiles() -> None:
    ordered = [float(n) for n in range(1, 101)]
    assert [percentile(ordered, p) for p in (50, 90, 99, 100)] == [50.0, 90.0, 99.0, 100.0]
    assert percentile([], 50) is None and percentile([7.0], 99) == 7.0


def test_reports_of_a_run_of_100000_tasks_take_under_a_second(workspace: Path, cli) -> None:
    bulk_populate(workspace / ".state" / "orchestration.db", runs=1, tasks_per_run=100_000, open_runs=0)
    run_id = "run-000000"
    started = time.perf_counter()
    assert cli("report", "--run", run_id, "--workspace", str(workspace)).code == 0
    elapsed = time.perf_counter() - started
    docs = assert_reports_valid(workspace, run_id)
    assert docs["summary"]["tasks"]["total"] == 100_000
    assert elapsed < 3.0, f"{elapsed:.2f} s (goal 1 s; bench/archive.py measures it)"
    assert len((workspace / "reports" / f"{run_id}.html").read_bytes()) < 2_000_000


def test_a_report_that_cannot_be_written_fails_with_an_escalation(workspace: Path, cli) -> None:
    add_terminal_run(workspace, "nowhere")
    (workspace / "reports").rmdir()
    (workspace / "reports").write_text("a file where the reports folder should be")
    result = cli("report", "--run", "nowhere", "--workspace", str(workspace))
    assert result.code == 1 and "reports of run nowhere failed" in result.err
    log = EventLog(workspace)
    assert log.events("REPORT_FAILED")[0]["run_id"] == "nowhere"
    assert log.events("ESCALATION")[0]["data"]["trigger"] == "report_generation_failure"
    assert not log.events("REPORT_GENERATED")
