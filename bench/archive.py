"""Benchmark of archival: a bag of a ~1 GiB run beside `tar -cf` and `cp -a` + `sha256sum`, all made durable.

Issue #5. A tree of about 1 GiB (4,000 files of 4-64 KiB, 300 of 1-4 MiB, 3 of 64-128 MiB)
is archived in rounds that rotate three ways of writing it out, each timed until its data is
durable:
  (a) our archival (`archive_run`: copy + SHA-256 in one read, fdatasync per file overlapped
      with the copying, tag files, rename, fsync of the archive root),
  (b) `tar -cf` of the same tree, then `sync`,
  (c) `cp -a` of the tree, then `sha256sum` of every copied file, then `sync`.
The page cache is dropped before each (when root) so that each reads the tree from disk.
Medians in MB/s (of the tree's bytes) and the ratios against the goals: archival >= 0.7x
(b), and faster than (c). Then the reports of a run of 100,000 tasks, timed (goal < 1 s).

    .venv/bin/python bench/archive.py                  # ~1 GiB, 3 rounds
    .venv/bin/python bench/archive.py --scale 0.1 --rounds 1
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from orchestrator_monitor.archive.archiver import archive_run, fetch_terminal_run
from orchestrator_monitor.cli.main import main as cli_main
from orchestrator_monitor.config import Settings, load_settings
from orchestrator_monitor.demo.simulator import bulk_populate
from orchestrator_monitor.finish.pipeline import open_pipeline
from orchestrator_monitor.reports.reporter import report_run
from orchestrator_monitor.timefmt import utc_now

MIB = 1 << 20


def make_tree(root: Path, scale: float, rng: random.Random) -> int:
    """Thousands of small files, hundreds of medium ones, a few large; returns the total bytes."""
    total = 0
    block = os.urandom(8 * MIB)
    plan = [
        (int(4000 * scale), 4 << 10, 64 << 10),
        (int(300 * scale), MIB, 4 * MIB),
        (3, int(64 * MIB * scale), int(128 * MIB * scale)),
    ]
    for kind, (count, low, high) in zip(("small", "medium", "large"), plan, strict=True):
        for n in range(count):
            folder = root / kind / f"d{n // 200:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            size = rng.randint(low, high)
            with (folder / f"{kind}-{n:05d}.bin").open("wb") as handle:
                left = size
                while left:
                    start = rng.randrange(0, MIB)
                    piece = block[start : start + min(left, 7 * MIB)]
                    handle.write(piece)
                    left -= len(piece)
            total += size
    return total


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    if os.geteuid() == 0:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")


def timed(action: Callable[[], None]) -> float:
    drop_caches()
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="tree size factor (1.0: about 1 GiB)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to work (default: a temporary folder in /var/tmp)"
    )
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-archive-", dir=args.dir or "/var/tmp"))
    try:
        run(base, args.scale, args.rounds)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run(base: Path, scale: float, rounds: int) -> None:
    workspace = base / "ws"
    assert cli_main(["init", "--workspace", str(workspace)]) == 0
    tree = workspace / "runs" / "template"
    total = make_tree(tree, scale, random.Random(5))
    print(f"tree: {sum(1 for _ in tree.rglob('*') if _.is_file())} files, {total / MIB:.0f} MiB in {base}")
    settings = load_settings(workspace, overrides=["archive.reserve_bytes=0", "events.sinks="])
    out = base / "out"
    results: dict[str, list[float]] = {"archive": [], "tar+sync": [], "cp+sha256sum+sync": []}
    for number in range(rounds):
        run_id = f"bench-{number}"
        os.rename(tree, workspace / "runs" / run_id)
        tree = workspace / "runs" / run_id
        bulk_sql(workspace, run_id)

        actions = {
            "archive": partial(archive_once, settings, run_id),
            "tar+sync": partial(tar_once, tree, out),
            "cp+sha256sum+sync": partial(cp_sha_once, tree, out),
        }
        for name, action in actions.items():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            seconds = timed(action)
            results[name].append(seconds)
            print(f"round {number + 1}: {name:<18} {seconds:7.2f} s  {total / MIB / seconds:7.0f} MB/s", flush=True)
        shutil.rmtree(out, ignore_errors=True)
    medians = {name: total / MIB / statistics.median(times) for name, times in results.items()}
    print("\nmedian MB/s (MiB of the tree per second, durable):")
    for name, rate in medians.items():
        print(f"  {name:<18} {rate:7.0f}")
    tar_ratio = medians["archive"] / medians["tar+sync"]
    cp_ratio = medians["archive"] / medians["cp+sha256sum+sync"]
    print(f"archive / tar+sync          = {tar_ratio:.2f}x  (goal >= 0.7x: {'met' if tar_ratio >= 0.7 else 'NOT met'})")
    print(f"archive / cp+sha256sum+sync = {cp_ratio:.2f}x  (goal > 1x: {'met' if cp_ratio > 1 else 'NOT met'})")
    time_reports(base)


def archive_once(settings: Settings, run_id: str) -> None:
    with open_pipeline(settings, threading.Event()) as pipeline:
        archive_run(pipeline.archival, fetch_terminal_run(pipeline.archival, run_id))


def tar_once(tree: Path, out: Path) -> None:
    subprocess.run(["tar", "-cf", str(out / "tree.tar"), "-C", str(tree), "."], check=True)
    subprocess.run(["sync"], check=True)


def cp_sha_once(tree: Path, out: Path) -> None:
    subprocess.run(["cp", "-a", str(tree), str(out / "copy")], check=True)
    files = [str(p) for p in (out / "copy").rglob("*") if p.is_file()]
    with open(os.devnull, "w") as sink:
        for start in range(0, len(files), 500):
            subprocess.run(["sha256sum", *files[start : start + 500]], check=True, stdout=sink)
    subprocess.run(["sync"], check=True)


def bulk_sql(workspace: Path, run_id: str) -> None:
    connection = sqlite3.connect(workspace / ".state" / "orchestration.db")
    connection.execute("INSERT INTO runs (run_id, status) VALUES (?, 'COMPLETED')", (run_id,))
    connection.commit()
    connection.close()


def time_reports(base: Path) -> None:
    workspace = base / "reports-ws"
    assert cli_main(["init", "--workspace", str(workspace)]) == 0
    bulk_populate(workspace / ".state" / "orchestration.db", runs=1, tasks_per_run=100_000, open_runs=0)
    settings = load_settings(workspace, overrides=["events.sinks="])
    times = []
    with open_pipeline(settings, threading.Event()) as pipeline:
        for _ in range(5):
            started = time.perf_counter()
            report_run(pipeline.reporting, "run-000000", utc_now())
            times.append(time.perf_counter() - started)
    median = statistics.median(times)
    verdict = "met" if median < 1 else "NOT met"
    print(f"reports of a run of 100,000 tasks: median {median:.3f} s of 5 (goal < 1 s: {verdict})")


if __name__ == "__main__":
    main()
