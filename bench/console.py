"""Benchmark of `orchestrator console`'s refresh after an event, at 10,000 runs / 1,000,000 tasks (issue #15).

Goal: p99 under 100 ms from the change's arrival (`ConsoleApp.changed`, what the watch thread
calls) to the screen drawn again, for the runs list and for a run of 1,000 tasks. It uses the
workspace `bench/detect.py` builds and caches, read-only, in Textual's headless mode at 80x24.

    .venv/bin/python bench/console.py [--refreshes N]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
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

GOAL_P99_MS = 100.0


async def measure(workspace: Path, refreshes: int) -> dict[str, list[float]]:
    settings = load_settings(workspace)
    results: dict[str, list[float]] = {"runs list": [], "run of 1,000 tasks": []}
    with state_reader(settings) as state:
        app = ConsoleApp(Sources(settings, state, Workspace.from_settings(settings)), watch=None)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            for label in results:
                if label.startswith("run of"):
                    app.push_screen(RunScreen(app.sources, dashboard.BIG_RUN))
                    await pilot.pause()
                for _ in range(refreshes):
                    started = time.perf_counter()
                    app.changed(True, [])
                    await pilot.pause()  # until the screen has been drawn again
                    results[label].append(time.perf_counter() - started)
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
