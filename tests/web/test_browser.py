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
LIVE_UPDATE_MS = 2000  # the bound: a run finishing updates the open page within 2 s, no reload

pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file() and shutil.which("chromium") is None, reason="Debian's chromium is not installed"
)


@pytest.fixture
def page() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 1000})
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
    sync_api.expect(page.locator("#timeline .lane")).to_have_count(15)
    page.locator("#task-filters select[name=status]").select_option("SUCCEEDED")
    sync_api.expect(page.locator("#tasks tbody tr td:nth-child(4)").first).to_have_text("SUCCEEDED")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-run.png"), full_page=True)
