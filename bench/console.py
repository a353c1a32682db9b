"""Benchmark of `orchestrator console`'s refresh after an event, at 10,000 runs / 1,000,000 tasks (issue #15).

Goal: p99 under 100 ms from the change's arrival (`ConsoleApp.changed`, what the watch thread
calls) to the screen drawn again, for the runs list and for a run of 1,000 tasks. Before each
refresh (outside the time) a task of the first run listed, or of the big run, changes from
SUCCEEDED to SKIPPED or back, so that every refresh has something new to draw; "unchanged"
refreshes (a commit to another run) are timed too. It uses a copy of the workspace
`bench/detect.py` builds and caches, in Textual's headless mode at 80x24.

    .venv/bin/python bench/console.py [--refreshes N]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dashboard
import detect
from orchestrator_monitor.cli.console import ConsoleApp, RunScreen, Sources
from orchestrator_monitor.config import load_settings
from orchestrator_monitor.views.reader import state_reader
from orchestrator_monitor.workspace import Workspace
from textual.coordinate import Coordinate
from textual.widgets import DataTable

GOAL_P99_MS = 100.0


def toggle_task(database: Path, run_id: str, n: int) -> None:
    """A task of the run goes SUCCEEDED -> SKIPPED or back (both terminal: the run's counts change)."""
    with sqlite3.connect(database, isolation_level=None) as connection:
        connection.execute(
            "UPDATE tasks SET status = ? WHERE task_id = (SELECT task_id FROM tasks WHERE run_id = ? AND status IN "
            "('SUCCEEDED', 'SKIPPED') ORDER BY task_id LIMIT 1)",
            ("SKIPPED" if n % 2 == 0 else "SUCCEEDED", run_id),
        )


async def measure(workspace: Path, refreshes: int) -> dict[str, list[float]]:
    settings = load_settings(workspace)
    database = workspace / detect.STATE_DB
    results: dict[str, list[float]] = {}
    with state_reader(settings) as state:
        app = ConsoleApp(Sources(settings, state, Workspace.from_settings(settings)), watch=None)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            first = str(app.screen.query_one("#runs", DataTable).coordinate_to_cell_key(Coordinate(0, 0)).row_key.value)
            for label, run_id in (("runs list", first), ("run of 1,000 tasks", dashboard.BIG_RUN)):
                if label.startswith("run of"):
                    app.push_screen(RunScreen(app.sources, run_id))
                    await pilot.pause()
                for kind in ("changed", "unchanged"):
                    timed = results.setdefault(f"{label}, {kind}", [])
                    for n in range(refreshes):
                        if kind == "changed":
                            toggle_task(database, run_id, n)
                        started = time.perf_counter()
                        app.changed(True, [])
                        await pilot.pause()  # until the screen has been drawn again
                        timed.append(time.perf_counter() - started)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--refreshes", type=int, default=200, help="refreshes per screen (default 200)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "orchestrator-bench")
    args = parser.parse_args(argv)
    template = detect.prepare_workspace(args.workdir.absolute(), dashboard.REFERENCE, 10_000, 100, 1500, rebuild=False)
    scratch = Path(tempfile.mkdtemp(prefix="console-", dir=args.workdir))
    try:
        workspace = detect.fresh_copy(template, scratch / "ws", [], run_dirs=False, schema=dashboard.REFERENCE)
        dashboard.add_big_run(workspace / detect.STATE_DB)
        results = asyncio.run(measure(workspace, args.refreshes))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{'ms':<34} {'n':>6} {'p50':>9} {'p90':>9} {'p99':>9} {'max':>9}")
    for label, values in results.items():
        print(dashboard.row(label, values))
    for label, values in results.items():
        p99 = detect.percentiles(values)["p99"] * 1000
        print(f"goal: {label} p99 {p99:.1f} ms < {GOAL_P99_MS:.0f} ms: {'met' if p99 < GOAL_P99_MS else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
