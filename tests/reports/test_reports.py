"""Reports: the numbers, the schemas, the page and its fallback, the events, and the time for a large run."""

from __future__ import annotations

import re
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

from archive_support import add_terminal_run, assert_reports_valid
from orchestrator_monitor.demo.simulator import bulk_populate
from orchestrator_monitor.reports.drawing import OUTCOME_COLOURS
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
    assert summary["errors"]["by_tool"] == {"test": {"timeout": 1}} and summary["errors"]["by_type"] == {"timeout": 1}
    assert [t["task_id"] for t in summary["errors"]["failed_tasks"]] == ["rep.t1"]
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


def test_reports_of_a_run_of_100000_tasks_are_complete_and_the_page_stays_small(workspace: Path, cli) -> None:
    # How long it takes is bench/archive.py's to measure (goal 1 s), not a test's.
    bulk_populate(workspace / ".state" / "orchestration.db", runs=1, tasks_per_run=100_000, open_runs=0)
    run_id = "run-000000"
    assert cli("report", "--run", run_id, "--workspace", str(workspace)).code == 0
    docs = assert_reports_valid(workspace, run_id)
    assert docs["summary"]["tasks"]["total"] == 100_000
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


SVG = "{http://www.w3.org/2000/svg}"


def timeline_of(page: str) -> ET.Element:
    found = re.search(r'<svg[^>]*class="timeline".*?</svg>', page, re.S)
    assert found is not None, "the report has no timeline drawing"
    return ET.fromstring(found.group(0))


def test_the_report_opens_with_the_failed_task_and_its_bar_is_drawn_uncovered(workspace: Path, cli) -> None:
    run_dir = add_terminal_run(workspace, "part", status="PARTIAL", tasks=6)
    with sqlite3.connect(workspace / ".state" / "orchestration.db") as db:
        db.execute("UPDATE tasks SET error_message = 'pytest: 3 tests failed <b>' WHERE task_id = 'part.t1'")
    (run_dir / "logs").mkdir()
    (run_dir / "logs" / "part.t1.log").write_text("attempt 2: failed\n")
    assert cli("report", "--run", "part", "--workspace", str(workspace)).code == 0
    page = (workspace / "reports" / "part.html").read_text()

    failures = page.index('id="failures"')
    assert failures < page.index("Task timeline") and failures < page.index("<h2>Summary")
    row = re.search(r'<tr class="failed-task" data-task="part.t1">.*?</tr>', page, re.S)
    assert row is not None
    assert "timeout" in row.group(0) and "pytest: 3 tests failed &lt;b&gt;" in row.group(0)
    assert 'href="../runs/part/logs/part.t1.log"' in row.group(0)
    assert 'class="badge PARTIAL"' in page

    svg = timeline_of(page)
    rows = {g.get("data-task"): g for g in svg.iter(f"{SVG}g") if g.get("data-task")}
    assert set(rows) == {f"part.t{n}" for n in range(6)}  # one row per task, none painted over another
    bar = rows["part.t1"].find(f"{SVG}rect")
    assert bar is not None and bar.get("fill") == OUTCOME_COLOURS["failed"] and float(bar.get("width")) >= 3
    others = [g.find(f"{SVG}rect") for task, g in rows.items() if task != "part.t1"]
    assert all(other.get("y") != bar.get("y") for other in others)
    assert "".join(rows["part.t1"].itertext()).startswith("part.t1 · tool test · FAILED · attempts 2")
    assert rows["part.t1"].find(f"{SVG}text[@class='retries']").text == "↻2"
    assert any(text.text and text.text.startswith("+") for text in svg.iter(f"{SVG}text"))  # a time axis


def test_a_large_timeline_keeps_every_failed_task_and_says_how_many_it_drew() -> None:
    from datetime import UTC, datetime

    from orchestrator_monitor.reports.drawing import MAX_ROWS, timeline_svg
    from orchestrator_monitor.reports.numbers import TaskRow

    def task(n: int, status: str) -> TaskRow:
        start = f"2026-11-24T10:{n // 60 % 60:02d}:{n % 60:02d}Z"
        return TaskRow("w", "lint", status, None, 1, start, start.replace("T10", "T11"), f"t{n}", None)

    tasks = [task(n, "SUCCEEDED") for n in range(2000)] + [task(2000 + n, "FAILED") for n in range(3)]
    drawing = timeline_svg([{"workstream_id": "w", "name": "build"}], tasks, datetime(2026, 11, 24, 12, tzinfo=UTC))
    svg = ET.fromstring(drawing.svg)
    drawn = {g.get("data-task"): g.get("data-status") for g in svg.iter(f"{SVG}g") if g.get("data-task")}
    assert (drawing.drawn, drawing.total, len(drawn)) == (MAX_ROWS, 2003, MAX_ROWS)
    assert [t for t, status in drawn.items() if status == "FAILED"] == ["t2000", "t2001", "t2002"]
