"""How the daemon's full reconciliation and its memory grow with a workspace's history.

No issue names this figure yet; it is here because a daemon that runs for months sees the
executor's `runs` table grow (10,000 runs a day is a million in a hundred days, unless the
executor prunes). For each size it builds (once, cached under --workdir) a state database of
N finished runs with T tasks each and a ledger where all of them are done (the baseline),
then, in a fresh process per size, starts a `Detector` on it and times three full
reconciliation passes, reading the process's peak RSS. Beside each size it prints the period
the detection job gives the full pass (`RECONCILE_COST_FACTOR` times its duration, at least
`completion.reconcile_seconds`) and the share of a core that costs. The smallest size is the
baseline (the workspace size of bench/detect.py).

    .venv/bin/python bench/history.py                           # 10k, 100k runs
    .venv/bin/python bench/history.py --sizes 10000 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from orchestrator_monitor.config import CompletionSettings
from orchestrator_monitor.detect.detector import Detector
from orchestrator_monitor.detect.job import RECONCILE_COST_FACTOR
from orchestrator_monitor.ledger.runs import Ledger
from orchestrator_monitor.ledger.store import sqlite_store
from orchestrator_monitor.state.engine import create_sqlite_database, open_engine
from orchestrator_monitor.state.mapping import built_in
from orchestrator_monitor.state.tables import build_tables

TASKS_BY_SIZE = {10_000: 10, 100_000: 10}  # larger sizes: 2 tasks per run, to keep the build short


def build(directory: Path, runs: int, tasks: int) -> None:
    """A state database of `runs` finished runs and a ledger that has all of them done."""
    if (directory / "ready").exists():
        return
    directory.mkdir(parents=True, exist_ok=True)
    create_sqlite_database(directory / "state.db", busy_timeout_seconds=5)
    with sqlite3.connect(directory / "state.db") as connection:
        stamp = "2026-01-01T00:00:00Z"
        connection.executemany(
            "INSERT INTO runs (run_id, status, created_at, updated_at, finished_at) VALUES (?, 'COMPLETED', ?, ?, ?)",
            ((f"run-{n:07d}", stamp, stamp, stamp) for n in range(runs)),
        )
        connection.executemany(
            "INSERT INTO tasks (task_id, run_id, status, attempts) VALUES (?, ?, 'SUCCEEDED', 1)",
            ((f"run-{n:07d}.{t}", f"run-{n:07d}") for n in range(runs) for t in range(tasks)),
        )
    store = sqlite_store(directory / "monitor.db", busy_timeout_seconds=5)
    Ledger(store).take_baseline({f"run-{n:07d}": "COMPLETED" for n in range(runs)})
    store.dispose()
    (directory / "ready").touch()


def peak_rss_mb() -> float:
    """This process's VmHWM: `ru_maxrss` would count the parent, whose RSS after a build (the
    baseline of every run in memory) a child started by vfork + exec inherits as its maximum."""
    status = Path("/proc/self/status").read_text(encoding="utf-8")
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024


def measure(directory: Path) -> dict[str, float]:
    """In this process: start a detector on the copy at `directory`, time three full passes."""
    engine = open_engine(f"sqlite:///{directory / 'state.db'}", busy_timeout_seconds=5, readonly=False)
    connection = engine.connect()
    store = sqlite_store(directory / "monitor.db", busy_timeout_seconds=5)
    ledger = Ledger(store)
    detector = Detector(
        ledger=ledger,
        publish=lambda *args, **kwargs: 0,
        flush=lambda: None,
        handoff=lambda *args: None,  # type: ignore[arg-type]
        settle_seconds=0,
        stall_after_seconds=3600,
        connection=lambda: connection,
        tables=build_tables(built_in("reference"), "archival_log"),
    )
    started = time.perf_counter()
    detector.start()
    start_seconds = time.perf_counter() - started
    passes = []
    for n in range(3):
        began = time.perf_counter()
        detector.run_reconcile_iteration(now=datetime.now(UTC), mono=float(n))
        passes.append(time.perf_counter() - began)
    connection.close()
    store.dispose()
    return {
        "start_s": start_seconds,
        "reconcile_s": statistics.median(passes),
        "rss_mb": peak_rss_mb(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/orchestrator-bench/history"))
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return 0
    configured = CompletionSettings().reconcile_seconds
    rule = f"max({configured:.0f} s, {RECONCILE_COST_FACTOR:.0f} x its duration)"
    print(f"python {sys.version.split()[0]}; the full pass's period = {rule}")
    columns = ("runs", "tasks", "detector start", "full pass", "peak RSS", "period", "core share")
    print(" ".join(f"{name:>{width}}" for name, width in zip(columns, (10, 9, 15, 10, 9, 8, 11), strict=True)))
    baseline = None
    for runs in sorted(args.sizes):
        tasks = TASKS_BY_SIZE.get(runs, 2)
        directory = args.workdir / f"{runs}x{tasks}"
        build(directory, runs, tasks)
        child = subprocess.run(
            [sys.executable, __file__, "--measure", str(directory)], capture_output=True, text=True, check=True
        )
        result = json.loads(child.stdout)
        period = max(configured, RECONCILE_COST_FACTOR * result["reconcile_s"])
        share = 100 * result["reconcile_s"] / period
        baseline = baseline or result
        print(
            f"{runs:>10,} {runs * tasks:>9,} {result['start_s']:>13.2f} s {result['reconcile_s']:>8.2f} s "
            f"{result['rss_mb']:>6.0f} MB {period:>6.0f} s {share:>9.1f} %   (the smallest's pass "
            f"x{result['reconcile_s'] / baseline['reconcile_s']:.0f}, RSS x{result['rss_mb'] / baseline['rss_mb']:.1f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
