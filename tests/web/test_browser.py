"""The dashboard in a real headless Chromium (Debian's, driven by Playwright), served by a real daemon process."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import REPO, DaemonProcess, Writer

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FAILED_RGB = "rgb(213, 94, 0)"  # OUTCOME_COLOURS["failed"], #D55E00
LIVE_UPDATE_MS = 2000  # the bound: a run finishing updates the open page within 2 s, no reload

pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file() and shutil.which("chromium") is None, reason="Debian's chromium is not installed"
)


@pytest.fixture
def page() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 900})
        finally:
            browser.close()


def test_runs_page_lists_runs_and_updates_live_when_one_finishes(
    simulated: tuple[Path, list[str]], start_daemon, page
) -> None:
    workspace, run_ids = simulated
    writer = Writer(workspace)
    writer.add_run("live-1", ["SUCCEEDED", "RUNNING"])
    daemon: DaemonProcess = start_daemon(workspace)
    page.goto(f"http://127.0.0.1:{daemon.port}/")
    rows = page.locator("#runs tbody tr")
    sync_api.expect(rows).to_have_count(len(run_ids) + 1)
    for run_id in run_ids:
        sync_api.expect(page.locator(f"#runs tr[data-run-id='{run_id}']")).to_be_visible()
    live_row = page.locator("#runs tr[data-run-id='live-1']")
    sync_api.expect(live_row).to_have_attribute("data-status", "RUNNING")
    sync_api.expect(page.locator("#live")).to_have_text("live")

    writer.sql("UPDATE tasks SET status = 'SUCCEEDED' WHERE task_id = 'live-1.t1'")
    finished = time.monotonic()
    sync_api.expect(live_row).to_have_attribute("data-status", "COMPLETED", timeout=LIVE_UPDATE_MS)
    assert time.monotonic() - finished < LIVE_UPDATE_MS / 1000
    assert writer.status("live-1") == "COMPLETED"  # marked by the daemon, shown without a reload
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-runs.png"), full_page=True)


def test_run_page_shows_tool_health_tasks_and_timeline(simulated: tuple[Path, list[str]], start_daemon, page) -> None:
    workspace, _ = simulated
    daemon: DaemonProcess = start_daemon(workspace)
    page.goto(f"http://127.0.0.1:{daemon.port}/runs/sim-0")
    tools = page.locator("#tools tbody tr")
    sync_api.expect(tools.first).to_be_visible()
    assert {tools.nth(n).locator("td").first.inner_text() for n in range(tools.count())} >= {"lint", "test"}
    sync_api.expect(page.locator("#tasks tbody tr")).to_have_count(15)
    sync_api.expect(page.locator("#timeline svg g.task")).to_have_count(15)
    page.locator("#task-filters select[name=status]").select_option("SUCCEEDED")
    sync_api.expect(page.locator("#tasks tbody tr td:nth-child(4)").first).to_have_text("SUCCEEDED")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-run.png"), full_page=True)


def add_failing_run(writer: Writer, run_id: str, statuses: list[str], *, running: bool = False) -> None:
    """A run of one workstream whose tasks overlap in time, each failed one with a type and a message."""
    writer.sql("INSERT INTO runs (run_id, name, status, started_at) VALUES (?, ?, 'RUNNING', ?)",
               (run_id, f"nightly {run_id}", "2026-11-24T10:00:00Z"))  # fmt: skip
    writer.sql("INSERT INTO workstreams (workstream_id, run_id, name, status) VALUES (?, ?, 'build', ?)",
               (f"{run_id}.w", run_id, "RUNNING" if running else "FAILED"))  # fmt: skip
    for n, status in enumerate(statuses):
        failed = status == "FAILED"
        writer.sql(
            "INSERT INTO tasks (task_id, run_id, workstream_id, tool, status, attempts, error_type, error_message, "
            "started_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (f"{run_id}.t{n}", run_id, f"{run_id}.w", "pytest" if failed else "lint", status, 2 if failed else 1,
             "exit_code" if failed else None, f"tests/test_{n}.py: 3 tests failed" if failed else None,
             f"2026-11-24T10:00:{n:02d}Z", None if status == "RUNNING" else f"2026-11-24T10:01:{30 + n:02d}Z"),
        )  # fmt: skip


def failed_share(bar: object) -> tuple[float, str]:
    """The failed segment's share of its bar's drawn width, and its colour."""
    whole = bar.bounding_box()
    part = bar.locator("[data-outcome=failed]")
    return part.bounding_box()["width"] / whole["width"], part.evaluate("e => getComputedStyle(e).backgroundColor")


def test_a_failed_run_shows_failure_in_its_bar_and_opens_with_its_failed_task(
    workspace: Path, start_daemon, page
) -> None:
    writer = Writer(workspace)
    add_failing_run(writer, "all-fail", ["FAILED"] * 5)
    daemon: DaemonProcess = start_daemon(workspace)
    page.goto(f"http://127.0.0.1:{daemon.port}/")
    row = page.locator("#runs tr[data-run-id='all-fail']")
    sync_api.expect(row).to_have_attribute("data-status", "FAILED")
    share, colour = failed_share(row.locator(".bar"))
    assert share > 0.95 and colour == FAILED_RGB  # the whole bar is failure, not a green "done"
    sync_api.expect(row).to_contain_text("5 failed")

    page.goto(f"http://127.0.0.1:{daemon.port}/runs/all-fail")
    first = page.locator("#failed tbody tr[data-task='all-fail.t4']")
    sync_api.expect(first).to_contain_text("tests/test_4.py: 3 tests failed")
    sync_api.expect(first).to_contain_text("exit_code")
    box = first.bounding_box()
    assert box is not None and box["y"] + box["height"] <= 900  # seen without scrolling at 1400x900
    sync_api.expect(page.locator("#failures-title")).to_have_text("What failed: 5 tasks")
    sync_api.expect(page).to_have_title("all-fail · FAILED · orchestrator")
    share, colour = failed_share(page.locator("#summary .bar"))
    assert share > 0.95 and colour == FAILED_RGB


def test_index_counts_move_live_when_a_run_fails(workspace: Path, start_daemon, page) -> None:
    writer = Writer(workspace)
    add_failing_run(writer, "fine", ["SUCCEEDED", "SUCCEEDED"])
    add_failing_run(writer, "going", ["RUNNING"], running=True)
    daemon: DaemonProcess = start_daemon(workspace)
    page.goto(f"http://127.0.0.1:{daemon.port}/")
    failed_count = page.locator("#counts button[data-status='FAILED'] .n")
    sync_api.expect(page.locator("#counts button[data-status='RUNNING'] .n")).to_have_text("1")
    sync_api.expect(failed_count).to_have_count(0)
    sync_api.expect(page.locator("#health")).to_contain_text("Monitor healthy")

    writer.sql("UPDATE workstreams SET status = 'FAILED' WHERE run_id = 'going'")
    writer.sql("UPDATE tasks SET status = 'FAILED', error_type = 'oom', finished_at = '2026-11-24T10:02:00Z' "
               "WHERE task_id = 'going.t0'")  # fmt: skip
    sync_api.expect(failed_count).to_have_text("1", timeout=LIVE_UPDATE_MS)
    sync_api.expect(page.locator("#counts button[data-status='RUNNING']")).to_have_count(0)
    assert writer.status("going") == "FAILED"


def test_a_partial_runs_timeline_draws_its_failed_task_and_its_report_names_it(
    workspace: Path, start_daemon, page
) -> None:
    writer = Writer(workspace)
    add_failing_run(writer, "part", ["SUCCEEDED", "FAILED", "SUCCEEDED", "SUCCEEDED", "SKIPPED"])
    (workspace / "runs" / "part" / "logs").mkdir(parents=True)
    (workspace / "runs" / "part" / "logs" / "part.t1.log").write_text("attempt 2: pytest failed\n")
    daemon: DaemonProcess = start_daemon(workspace)
    page.goto(f"http://127.0.0.1:{daemon.port}/runs/part")
    sync_api.expect(page.locator("#run-status")).to_have_text("PARTIAL")
    task = page.locator("#timeline svg g.task[data-task='part.t1']")
    sync_api.expect(task).to_be_visible()
    bar = task.locator("rect")
    assert bar.get_attribute("fill") == "#D55E00" and float(bar.get_attribute("width")) >= 3
    drawn = bar.bounding_box()
    assert drawn is not None and drawn["width"] >= 3 and drawn["height"] >= 8  # really on screen, not covered
    # Every bar's place read in one go: a live update may redraw the timeline between two reads.
    rows = page.locator("#timeline svg g.task rect").evaluate_all(
        "rects => rects.map(r => [r.closest('g.task').dataset.task, r.getBoundingClientRect().y,"
        " r.getBoundingClientRect().height])"
    )
    failed = next((y, height) for task_id, y, height in rows if task_id == "part.t1")
    others = [y for task_id, y, _ in rows if task_id != "part.t1"]
    assert others and all(abs(y - failed[0]) >= failed[1] for y in others)  # a row of its own
    sync_api.expect(page.locator("#live")).to_have_text("final", timeout=30_000)  # archived and reported
    sync_api.expect(page.locator("#archive")).to_contain_text("archived to")
    page.locator("#verify").click()
    sync_api.expect(page.locator("#verify-result")).to_contain_text("valid: ")
    sync_api.expect(page.locator("#events tbody")).to_contain_text("REPORT_GENERATED")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-run-partial.png"), full_page=True)

    page.goto((workspace / "reports" / "part.html").as_uri())
    row = page.locator("#failures tr[data-task='part.t1']")
    sync_api.expect(row).to_contain_text("tests/test_1.py: 3 tests failed")
    sync_api.expect(row.locator("a")).to_have_attribute("href", "../runs/part/logs/part.t1.log")
    assert page.locator("svg.timeline g.task[data-task='part.t1'] rect").bounding_box()["width"] >= 3
    page.screenshot(path=str(ARTIFACTS / "report-partial.png"), full_page=True)
