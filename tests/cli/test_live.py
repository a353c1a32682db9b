"""`monitor --follow` and `status --follow`: through rich's recording console, and as a piped process."""

from __future__ import annotations

import io
import threading
from pathlib import Path

from orchestrator_monitor.cli.live import follow_run, follow_status
from orchestrator_monitor.config import load_settings
from rich.console import Console
from support import DaemonProcess, EventLog, Writer, run_process

FAST_ARCHIVE = "archive.quiet_seconds=0"


def recording_console() -> Console:
    return Console(record=True, force_terminal=True, width=160, file=io.StringIO(), color_system=None)


def test_monitor_follow_redraws_on_events_and_ends_archived_and_reported(workspace: Path, start_daemon) -> None:
    writer = Writer(workspace)
    writer.add_run("tv-1", ["SUCCEEDED", "FAILED", "RUNNING"], workstreams=("RUNNING",))
    start_daemon(workspace, FAST_ARCHIVE)
    console = recording_console()
    stop = threading.Event()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(follow_run(load_settings(workspace), "tv-1", console, stop)))
    thread.start()
    writer.sql("UPDATE tasks SET status = 'SUCCEEDED' WHERE task_id = 'tv-1.t2'")
    writer.sql("UPDATE workstreams SET status = 'PARTIAL' WHERE run_id = 'tv-1'")
    thread.join(30)
    stop.set()
    assert result == [0], "monitor --follow did not end by itself once the run was archived and reported"
    text = console.export_text()
    for wanted in ("tool health", "1 failed task", "elapsed", "PARTIAL"):
        assert wanted in text, wanted
    assert f"archive: {workspace / '.archive' / 'tv-1'}" in text
    assert f"report: {workspace / 'reports' / 'tv-1_summary.json'}" in text


def test_monitor_follow_piped_prints_plain_lines_and_ends(workspace: Path, start_daemon) -> None:
    writer = Writer(workspace)
    writer.add_run("tv-2", ["SUCCEEDED"])
    daemon: DaemonProcess = start_daemon(workspace, FAST_ARCHIVE)
    daemon.log.wait_for(lambda log: bool(log.events("REPORT_GENERATED", "tv-2")), what="tv-2 reported")
    result = run_process("monitor", "--workspace", str(workspace), "--run", "tv-2", "--follow", timeout=30)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split("\t")[:3] == ["tv-2", "COMPLETED", "1/1 100%"]
    assert f"archive\t{workspace / '.archive' / 'tv-2'}" in lines
    assert "\x1b[" not in result.out  # no terminal control codes in a pipe


def test_follow_and_json_together_are_refused(workspace: Path) -> None:
    result = run_process("status", "--workspace", str(workspace), "--json", "--follow")
    assert result.code == 2 and "not allowed with" in result.err


def test_status_follow_shows_a_new_run_without_polling_the_data(workspace: Path) -> None:
    """No daemon: the executor's commit alone (inotify on .state/) wakes the view."""
    writer = Writer(workspace)
    out = io.StringIO()
    console = Console(file=out, width=160)  # not a terminal: one plain line per change
    stop = threading.Event()
    thread = threading.Thread(target=follow_status, args=(load_settings(workspace), console, stop))
    thread.start()
    try:
        writer.add_run("tv-3", ["RUNNING"])
        EventLog(workspace).wait_for(lambda _: "tv-3\tRUNNING" in out.getvalue(), timeout=10, what="tv-3 shown")
        writer.sql("UPDATE tasks SET status = 'SUCCEEDED' WHERE run_id = 'tv-3'")
        EventLog(workspace).wait_for(lambda _: "tv-3\tRUNNING\t1/1" in out.getvalue(), timeout=10, what="redrawn")
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


def test_status_follow_fits_the_screen_and_keeps_failed_and_running_runs_on_it(workspace: Path) -> None:
    writer = Writer(workspace)
    writer.add_run("old-fail", ["FAILED"])
    writer.sql("UPDATE runs SET status = 'FAILED', created_at = '2026-11-01T00:00:00Z' WHERE run_id = 'old-fail'")
    for n in range(30):
        writer.add_run(f"done-{n:02d}", ["SUCCEEDED"])
        writer.sql("UPDATE runs SET status = 'COMPLETED', created_at = ? WHERE run_id = ?",
                   (f"2026-11-02T00:00:{n:02d}Z", f"done-{n:02d}"))  # fmt: skip
    writer.add_run("old-going", ["RUNNING"])
    writer.sql("UPDATE runs SET created_at = '2026-11-01T00:00:01Z' WHERE run_id = 'old-going'")
    console = Console(record=True, force_terminal=True, width=120, height=16, file=io.StringIO(), color_system=None)
    stop = threading.Event()
    stop.set()  # the first screen only
    assert follow_status(load_settings(workspace), console, stop) == 0
    text = console.export_text()
    shown = [line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│")]
    assert shown[:2] == ["old-fail", "old-going"] and len(set(shown)) == 16 - 6  # (rich prints the last frame again)
    assert "22 more not shown" in text and "attention first" in text
    assert "█" in text and "1 failed" in text
