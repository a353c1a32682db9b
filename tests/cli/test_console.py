"""`orchestrator console`: driven by Textual's Pilot, and for real in a tmux session of 80x24."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from orchestrator_monitor.config import load_settings
from orchestrator_monitor.views.reader import state_reader
from orchestrator_monitor.workspace import Workspace
from support import REPO, Writer

textual = pytest.importorskip("textual")

from orchestrator_monitor.cli.console import ConsoleApp, RunScreen, Sources  # noqa: E402
from orchestrator_monitor.cli.live import ChangeWatch  # noqa: E402

ARTIFACTS = REPO / "test-artifacts"
MESSAGE = "pytest tests/: 3 tests failed"


def add_runs(workspace: Path) -> Writer:
    writer = Writer(workspace)
    for n in range(6):
        writer.add_run(f"ok-{n}", ["SUCCEEDED", "SUCCEEDED"])
        writer.sql("UPDATE runs SET status = 'COMPLETED', name = ? WHERE run_id = ?", (f"nightly #{n}", f"ok-{n}"))
    writer.add_run("bad-7", ["SUCCEEDED", "FAILED"])
    writer.sql("UPDATE runs SET status = 'FAILED', name = 'release candidate' WHERE run_id = 'bad-7'")
    writer.sql("UPDATE tasks SET tool = 'pytest', error_type = 'exit_code', error_message = ?, "
               "started_at = '2026-11-24T09:59:00Z' WHERE task_id = 'bad-7.t1'", (MESSAGE,))  # fmt: skip
    writer.add_run("going-8", ["SUCCEEDED", "RUNNING"])
    return writer


def screen_text(app: ConsoleApp) -> str:
    """What the terminal shows, as text (the SVG screenshot's text, with its non-breaking spaces undone)."""
    import html
    import re

    svg = app.export_screenshot()
    return html.unescape(" ".join(re.findall(r">([^<>]*)</text>", svg))).replace("\xa0", " ")


def test_pilot_filters_to_the_failed_run_and_opens_it_on_its_failed_task(workspace: Path) -> None:
    add_runs(workspace)
    settings = load_settings(workspace)

    async def drive() -> str:
        with state_reader(settings) as state:
            app = ConsoleApp(Sources(settings, state, Workspace.from_settings(settings)), watch=None)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.pause()
                assert "all 8" in screen_text(app) and "failed 1" in screen_text(app)
                for _ in range(4):  # all, pending, running, completed, failed
                    await pilot.press("s")
                await pilot.pause()
                assert "bad-7" in screen_text(app) and "ok-0" not in screen_text(app)
                await pilot.press("enter")
                await pilot.pause()
                assert isinstance(app.screen, RunScreen) and app.screen.run_id == "bad-7"
                text = screen_text(app)
                ARTIFACTS.mkdir(exist_ok=True)
                app.save_screenshot("console-run.svg", str(ARTIFACTS))
                await pilot.press("escape")
                await pilot.pause()
                assert not isinstance(app.screen, RunScreen)
                return text

    text = asyncio.run(drive())
    assert "1 failed task" in text and "bad-7.t1" in text and "exit_code" in text
    assert " ".join(MESSAGE.split()[:3]) in " ".join(text.split())  # the message, however the cell wrapped


def test_the_console_follows_the_database_without_a_loop_of_its_own(workspace: Path) -> None:
    writer = add_runs(workspace)
    settings = load_settings(workspace)

    async def drive() -> None:
        with state_reader(settings) as state:
            watch = ChangeWatch(settings)
            try:
                app = ConsoleApp(Sources(settings, state, Workspace.from_settings(settings)), watch=watch)
                async with app.run_test(size=(80, 24)) as pilot:
                    await pilot.pause()
                    assert "failed 1" in screen_text(app)
                    writer.sql("UPDATE tasks SET status = 'FAILED' WHERE task_id = 'going-8.t1'")
                    writer.sql("UPDATE runs SET status = 'FAILED' WHERE run_id = 'going-8'")  # the executor's own mark
                    deadline = time.monotonic() + 10
                    while "failed 2" not in screen_text(app) and time.monotonic() < deadline:
                        await pilot.pause(0.05)
                    assert "failed 2" in screen_text(app)
            finally:
                watch.close()

    asyncio.run(drive())


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_a_real_terminal_of_80_by_24_shows_the_console_cleanly(workspace: Path) -> None:
    add_runs(workspace)
    session = f"console-{time.monotonic_ns()}"
    command = f"{sys.executable} -m orchestrator_monitor.cli console --workspace {workspace}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", command], check=True)

    def screen() -> list[str]:
        out = subprocess.run(["tmux", "capture-pane", "-t", session, "-p"], capture_output=True, text=True, check=True)
        return out.stdout.splitlines()

    def wait_for(text: str) -> list[str]:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            lines = screen()
            if any(text in line for line in lines):
                return lines
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared:\n" + "\n".join(screen()))

    try:
        lines = wait_for("q quit")
        assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
        assert lines[2].split()[:3] == ["run", "status", "tasks"]  # the table's header on its own line
        assert lines[3].split()[0] == "bad-7"  # needs attention first: the failed run, then the running one
        assert "quit" in lines[-1] and not any("Traceback" in line for line in lines)
        subprocess.run(["tmux", "send-keys", "-t", session, "Enter"], check=True)
        lines = wait_for("1 failed task")
        assert lines[0].startswith(" run bad-7  FAILED") and all(len(line) <= 80 for line in lines)
        assert any("bad-7.t1" in line for line in lines) and any("exit_code" in line for line in lines)
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "console-tmux.txt").write_text("\n".join(lines) + "\n")
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False, capture_output=True)


@asynccontextmanager
async def console(workspace: Path) -> AsyncIterator[tuple[ConsoleApp, Any]]:
    """The console on the workspace at 80x24, driven by the test (no watch thread), once it has drawn."""
    settings = load_settings(workspace)
    with state_reader(settings) as state:
        app = ConsoleApp(Sources(settings, state, Workspace.from_settings(settings)), watch=None)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            yield app, pilot


async def refreshed(app: ConsoleApp, pilot: Any) -> None:
    """Until what the console heard is on the screen (a refresh may wait a moment after the last one)."""
    while app.refresh_pending:
        await pilot.pause(0.02)
    await pilot.pause()


def table_rows(app: ConsoleApp, table_id: str) -> list[list[str]]:
    from textual.widgets import DataTable

    table = app.screen.query_one(f"#{table_id}", DataTable)
    return [[str(cell) for cell in table.get_row(row.key)] for row in table.ordered_rows]


def test_an_event_updates_rows_in_place_the_cursor_stays_on_its_run_and_the_filter_holds(workspace: Path) -> None:
    writer = add_runs(workspace)

    async def drive() -> None:
        async with console(workspace) as (app, pilot):
            assert [row[0] for row in table_rows(app, "runs")][:2] == ["bad-7", "going-8"]  # attention first
            await pilot.press("down")  # on going-8
            writer.sql("UPDATE tasks SET status = 'SUCCEEDED', finished_at = '2026-11-24T10:05:00Z' "
                       "WHERE task_id = 'going-8.t1'")  # fmt: skip
            app.changed(True, [])
            await refreshed(app, pilot)
            going = next(row for row in table_rows(app, "runs") if row[0] == "going-8")
            assert going[3] == "2/2"  # its count changed where it stands
            writer.add_run("worse-9", ["FAILED"])
            writer.sql("UPDATE runs SET status = 'FAILED' WHERE run_id = 'worse-9'")
            app.changed(True, [])
            await refreshed(app, pilot)
            rows = [row[0] for row in table_rows(app, "runs")]
            assert rows[:3] == ["worse-9", "bad-7", "going-8"] and len(rows) == 9
            assert app.screen.query_one("#runs").cursor_row == 2  # still on going-8, not on bad-7
            for _ in range(4):  # to "failed"
                await pilot.press("s")
            await pilot.pause()
            assert [row[0] for row in table_rows(app, "runs")] == ["worse-9", "bad-7"]
            writer.sql("UPDATE runs SET status = 'FAILED' WHERE run_id = 'ok-3'")
            writer.sql("UPDATE runs SET status = 'COMPLETED' WHERE run_id = 'worse-9'")
            app.changed(True, [])
            await refreshed(app, pilot)
            assert sorted(row[0] for row in table_rows(app, "runs")) == ["bad-7", "ok-3"]
            assert "failed 2" in screen_text(app)

    asyncio.run(drive())


def test_the_runs_list_holds_one_page_of_the_terminal_and_pages_with_brackets(workspace: Path) -> None:
    writer = Writer(workspace)
    for n in range(45):
        writer.add_run(f"r-{n:02d}", ["SUCCEEDED"])
        writer.sql("UPDATE runs SET status = 'COMPLETED', created_at = ? WHERE run_id = ?",
                   (f"2026-11-24T10:{n:02d}:00Z", f"r-{n:02d}"))  # fmt: skip

    async def drive() -> None:
        async with console(workspace) as (app, pilot):
            first = [row[0] for row in table_rows(app, "runs")]
            assert first[0] == "r-44" and len(first) == 20 and "runs 1-20 of 45 by attention" in screen_text(app)
            await pilot.press("right_square_bracket", "right_square_bracket")
            await pilot.pause()
            assert [row[0] for row in table_rows(app, "runs")] == [f"r-{n:02d}" for n in range(4, -1, -1)]
            assert "runs 41-45 of 45" in screen_text(app)
            await pilot.press("left_square_bracket")
            await pilot.pause()
            assert table_rows(app, "runs")[0][0] == "r-24"

    asyncio.run(drive())


def test_the_run_view_adds_a_task_that_fails_to_its_failed_tasks(workspace: Path) -> None:
    writer = add_runs(workspace)

    async def drive() -> None:
        async with console(workspace) as (app, pilot):
            app.push_screen(RunScreen(app.sources, "going-8"))
            await pilot.pause()
            assert table_rows(app, "failed") == [] and "no failed task" in screen_text(app)
            writer.sql("UPDATE tasks SET status = 'FAILED', error_type = 'timeout', error_message = 'too long' "
                       "WHERE task_id = 'going-8.t1'")  # fmt: skip
            app.changed(False, [{"type": "TASK_FAILED", "run_id": "going-8", "seq": 99}])
            await refreshed(app, pilot)
            assert [row[0] for row in table_rows(app, "failed")] == ["going-8.t1"]
            assert "1 failed task" in screen_text(app) and "timeout" in screen_text(app)
            app.changed(False, [{"type": "TASK_FAILED", "run_id": "ok-1", "seq": 100}])  # another run's
            await refreshed(app, pilot)
            assert [row[0] for row in table_rows(app, "events")] == ["99"]  # its own events only

    asyncio.run(drive())
