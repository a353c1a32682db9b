"""Soak: steady load on a real daemon for N minutes; RSS, descriptors, threads and CPU sampled into a CSV and a PNG.

Issue #13, deliver 3. Goal over 30 minutes of steady load (the default: 40 minutes, the first 10 a
warm-up): RSS slope under 1 MB/hour, no growth in open file descriptors or threads.

What it does:

1. `orchestrator init` in a scratch workspace (`--workdir`), then `orchestrator daemon` as a real
   process (`--set events.sinks=`, the dashboard on a free port, everything else the defaults),
   scraped as an operator's Prometheus and load balancer would: `/metrics` and `/healthz` every
   `--scrape-seconds` (default 15; 0: the dashboard off, nothing scraped), with the allocator the
   systemd unit gives it (its `PYTHONMALLOC`, `LD_PRELOAD` and `MALLOC_*` settings; `--allocator default`:
   Python's and glibc's defaults);
   Before it starts, `--history` runs (default 20,000, 10 tasks each) are written into the state
   database as already finished, as a workspace some months old holds them: the daemon takes them
   as its baseline, its full passes read them, and the database's page caches are full from the
   warm-up on, so a slope measures the daemon and not caches filling with a new database;
2. the chaos runner's executor (`chaos_support.Workload`, plain SQL on its own thread) at a steady
   rate: a run starts every `--run-every-ms` (default 300 ms; a Poisson stream) and ends about a
   second later: 1 to 20 tasks, a few small artifacts under awkward names, a fifth ended by the
   executor itself, a few reopened by a retry after the mark. No faults;
3. every `--interval` seconds (default 10) samples the daemon from /proc: VmRSS, open
   descriptors (/proc/PID/fd), threads, CPU (utime + stime over the interval, % of one core),
   with the runs ended, archived and reported so far, into `soak.csv`;
4. at the end stops the executor, waits for the daemon to catch up (at most a minute), stops it
   (SIGTERM), draws `soak.png` (matplotlib, imported only then: `pip install -e '.[bench]'`) and
   prints each series' least-squares slope per hour after the warm-up
   (`--warmup-minutes`, default `WARMUP_MINUTES`, at most half the run), beside the goals. The
   warm-up is twice the daemon's longest in-memory window: it holds what it needs of each run
   completed in the last 5 minutes (`CHEAP_WATCH_SECONDS`, `LATE_WRITE_WATCH_SECONDS`), so it
   holds a steady number of them from the fifth minute on, but only from the second window on
   are they allocated among the blocks of runs being freed; until then the pages they pin still
   grow (bench/jemalloc_bins.py, `--slab-census`), and a slope from the fifth minute (printed too,
   for reference) measures that (README, "Reliability"). Descriptors and threads "grow" when the
   lowest value of the last third exceeds the lowest of the middle third (after the warm-up):
   descriptors an archival holds for a moment are spikes, a pool filling up lifts the floor once
   and early, a leak lifts it again and again.

    .venv/bin/python bench/soak.py                     # 40 minutes: 10 of warm-up, 30 measured
    .venv/bin/python bench/soak.py --quick             # 2 minutes
    .venv/bin/python bench/soak.py --minutes 5 --out /tmp/soak
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import os
import random
import shlex
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from chaos_support import (
    Daemon,
    LogTail,
    Workload,
    WorkloadConfig,
    clean_environment,
    free_port,
    init_workspace,
    process_sample,
    tail_of,
)
from orchestrator_monitor.detect.completions import CHEAP_WATCH_SECONDS
from orchestrator_monitor.detect.detector import LATE_WRITE_WATCH_SECONDS

GOAL_RSS_MB_PER_HOUR = 1.0
MEASURED_MINUTES = 30.0  # the soak
WINDOW_MINUTES = max(CHEAP_WATCH_SECONDS, LATE_WRITE_WATCH_SECONDS) / 60  # the daemon's longest in-memory window
WARMUP_MINUTES = 2 * WINDOW_MINUTES
T = TypeVar("T")
UNIT = Path(__file__).resolve().parent.parent / "systemd" / "orchestrator-monitor.service"
MEMTRACE = Path(__file__).resolve().parent / "memtrace"  # its sitecustomize.py traces the daemon
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CATCH_UP_SECONDS = 60.0
COLUMNS = (
    "elapsed_s",
    "rss_mb",
    "rss_anon_mb",
    "fds",
    "threads",
    "cpu_percent",
    "runs_ended",
    "runs_archived",
    "runs_reported",
)
SERIES: tuple[tuple[str, str, str], ...] = (
    ("rss_mb", "RSS (MB)", "MB"),
    ("rss_anon_mb", "RSS heap (MB)", "MB"),
    ("fds", "open descriptors", ""),
    ("threads", "threads", ""),
    ("cpu_percent", "CPU (% of a core)", "%"),
)
INSTALL_HINT = "matplotlib is not installed, so no PNG: .venv/bin/pip install -e '.[bench]' (or pip install matplotlib)"


@dataclass(frozen=True)
class Row:
    elapsed_s: float
    rss_mb: float
    rss_anon_mb: float
    fds: int
    threads: int
    cpu_percent: float
    runs_ended: int
    runs_archived: int
    runs_reported: int

    def values(self) -> tuple[float | int, ...]:
        return tuple(getattr(self, name) for name in COLUMNS)


def is_allocator_setting(name: str) -> bool:
    return name in ("PYTHONMALLOC", "LD_PRELOAD") or name.startswith("MALLOC_")


def unit_allocator_settings() -> dict[str, str]:
    """The allocator settings (`PYTHONMALLOC`, `LD_PRELOAD`, `MALLOC_*`) of the systemd unit's `Environment=` lines."""
    found: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        if line.startswith("Environment="):
            for item in shlex.split(line.removeprefix("Environment=")):
                name, _, value = item.partition("=")
                if is_allocator_setting(name):
                    found[name] = value
    return found


def write_history(workspace: Path, runs: int, tasks: int = 10) -> None:
    """`runs` finished runs of `tasks` tasks each in the state database, written before the daemon's first start."""
    stamp = "2026-01-01T00:00:00.000000Z"
    with sqlite3.connect(workspace / ".state" / "orchestration.db") as connection:
        connection.executemany(
            "INSERT INTO runs (run_id, name, status, created_at, started_at, finished_at, updated_at)"
            " VALUES (?, 'history', 'COMPLETED', ?, ?, ?, ?)",
            ((f"history-{n:07d}", stamp, stamp, stamp, stamp) for n in range(runs)),
        )
        connection.executemany(
            "INSERT INTO tasks (task_id, run_id, name, status, attempts, updated_at)"
            " VALUES (?, ?, 'step', 'SUCCEEDED', 1, ?)",
            ((f"history-{n:07d}.{t}", f"history-{n:07d}", stamp) for n in range(runs) for t in range(tasks)),
        )


class Scraper:
    """GETs /metrics and /healthz every `every` seconds on a thread of its own, as Prometheus would."""

    PATHS = ("/metrics", "/healthz")

    def __init__(self, port: int, every: float) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.every = every
        self.counts = {"scrapes": 0, "failed": 0}
        self.last_error = ""
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self.stop.set()
        self._thread.join(self.every + 10)

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            for path in self.PATHS:
                try:
                    with urllib.request.urlopen(self.base + path, timeout=10) as answer:
                        answer.read()
                    self.counts["scrapes"] += 1
                except OSError as err:  # /healthz answers 503 while a check fails: counted, said at the end
                    self.counts["failed"] += 1
                    self.last_error = f"{path}: {err}"


def slope_per_hour(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per hour; None with fewer than two points."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread * 3600


def median_slope_per_hour(points: Sequence[tuple[float, float]]) -> float | None:
    """Theil-Sen: the median of the slopes between every two points, per hour. An archival burst that lifts
    a few samples near either end tilts the least-squares line; it barely moves this."""
    slopes = [(y2 - y1) / (x2 - x1) for (x1, y1), (x2, y2) in itertools.combinations(points, 2) if x2 != x1]
    return statistics.median(slopes) * 3600 if slopes else None


def slope_error_per_hour(points: Sequence[tuple[float, float]]) -> float | None:
    """The least-squares slope's standard error, per hour: how far apart two soaks' slopes must be to differ."""
    slope = slope_per_hour(points)
    if slope is None or len(points) < 3:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    residuals = sum((y - mean_y - slope / 3600 * (x - mean_x)) ** 2 for x, y in points)
    return math.sqrt(residuals / (n - 2) / sum((x - mean_x) ** 2 for x, _ in points)) * 3600


def thirds(values: Sequence[T]) -> tuple[Sequence[T], Sequence[T], Sequence[T]]:
    """First, middle and last third (the middle one takes what does not divide); at least three values."""
    third = len(values) // 3
    return values[:third], values[third:-third], values[-third:]


def grows(values: Sequence[float]) -> bool:
    """The floor rose: the lowest value of the last third above the lowest of the middle third.

    A leak lifts the floor again and again; an archival in progress when a sample is taken only adds
    a spike; a pool filling to its size lifts it once, early (the state database's pool reaches its
    five connections 6 to 9 minutes in, when passes first overlap), so the first third is not the
    reference."""
    if len(values) < 3:
        return False
    _, middle, last = thirds(values)
    return min(last) > min(middle)


def rss_by_thirds(rows: Sequence[Row]) -> str:
    """The RSS slope in each third: an allocator's pages settle (slopes falling to zero), a leak does not."""
    if len(rows) < 6:
        return "-"
    slopes = (slope_per_hour([(row.elapsed_s, row.rss_mb) for row in part]) for part in thirds(rows))
    return ", ".join("-" if slope is None else f"{slope:+.2f}" for slope in slopes) + " MB/hour"


class Sampler:
    """Samples the daemon every `interval` seconds on a thread of its own, into `rows`."""

    def __init__(self, daemon: Daemon, tail: LogTail, workload: Workload, interval: float, csv_path: Path) -> None:
        self.daemon = daemon
        self.csv_path = csv_path
        self.tail = tail
        self.workload = workload
        self.interval = interval
        self.rows: list[Row] = []
        self.stop = threading.Event()
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> None:
        self.started = time.monotonic()
        self._thread.start()

    def join(self) -> None:
        self.stop.set()
        self._thread.join(self.interval + 5)

    def _run(self) -> None:
        pid = self.daemon.pid
        if pid is None:
            return
        with self.csv_path.open("w", newline="") as handle:  # row by row: a soak cut short keeps its samples
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            previous = process_sample(pid)
            previous_at = time.monotonic()
            while not self.stop.wait(self.interval - (time.monotonic() - previous_at) % self.interval):
                sample = process_sample(pid)
                now = time.monotonic()
                if sample is None or previous is None:
                    return
                self.tail.poll()
                cpu = (sample.cpu_ticks - previous.cpu_ticks) / CLOCK_TICKS / (now - previous_at) * 100
                row = Row(
                    round(now - self.started, 1),
                    round(sample.rss_bytes / 1e6, 2),
                    round(sample.anon_bytes / 1e6, 2),
                    sample.fds,
                    sample.threads,
                    round(cpu, 2),
                    self.workload.counts["runs ended"],
                    self.tail.count("RUN_ARCHIVED"),
                    self.tail.count("REPORT_GENERATED"),
                )
                self.rows.append(row)
                writer.writerow(row.values())
                handle.flush()
                previous, previous_at = sample, now


def draw(rows: Sequence[Row], warmup_s: float, path: Path) -> bool:
    """soak.png: one panel per series over minutes, the warm-up shaded; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    minutes = [row.elapsed_s / 60 for row in rows]
    figure, axes = plt.subplots(len(SERIES), 1, figsize=(10, 9), sharex=True)
    for axis, (name, title, _) in zip(axes, SERIES, strict=True):
        axis.plot(minutes, [getattr(row, name) for row in rows], marker=".", linewidth=1)
        axis.set_ylabel(title)
        axis.axvspan(0, warmup_s / 60, color="0.9", label="warm-up")
        axis.grid(True, alpha=0.3)
    axes[0].set_title("orchestrator daemon under steady load (bench/soak.py)")
    axes[-1].set_xlabel("minutes")
    axes[0].legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--minutes",
        type=float,
        help=f"how long the load lasts (default {WARMUP_MINUTES + MEASURED_MINUTES:g}: the warm-up, then "
        f"{MEASURED_MINUTES:g} measured; --quick 2)",
    )
    parser.add_argument("--quick", action="store_true", help="2 minutes")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument(
        "--warmup-minutes",
        type=float,
        help=f"left out of the slopes (default {WARMUP_MINUTES:g}, twice the daemon's longest in-memory window; "
        "at most half the run)",
    )
    parser.add_argument("--run-every-ms", type=float, default=300.0, help="mean gap between runs (default 300 ms)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--allocator", choices=("unit", "default"), default="unit", help="the unit's allocator settings, or none"
    )
    parser.add_argument("--history", type=int, default=20_000, help="finished runs in the database before the start")
    parser.add_argument(
        "--scrape-seconds", type=float, default=15.0, help="/metrics and /healthz every this often (0: dashboard off)"
    )
    parser.add_argument("--out", type=Path, help="where soak.csv and soak.png go (default bench/out/soak-<time>)")
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()), help="where the workspace goes (%(default)s)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the workspace")
    parser.add_argument(
        "--tracemalloc",
        type=float,
        metavar="MINUTES",
        help="trace the daemon's allocations (slower, more memory) with a snapshot every MINUTES, and print "
        "the lines whose memory grew most between the first snapshot after the warm-up and the last",
    )
    parser.add_argument(
        "--memory-detail",
        action="store_true",
        help="also sample SQLite's own heap and Python's allocated blocks inside the daemon (memory.csv), "
        "and print their slopes",
    )
    parser.add_argument(
        "--slab-census",
        type=int,
        metavar="BYTES",
        help="(implies --memory-detail) every 5 minutes list the Python objects in the sparse slabs of jemalloc's "
        "BYTES size class (trace/slabs-<seconds>.txt): what keeps a page that short-lived blocks filled",
    )
    args = parser.parse_args(argv)
    args.memory_detail = args.memory_detail or bool(args.slab_census)
    if args.minutes is None:
        args.minutes = 2.0 if args.quick else WARMUP_MINUTES + MEASURED_MINUTES
    if args.warmup_minutes is None:
        args.warmup_minutes = min(WARMUP_MINUTES, args.minutes / 2)
    if args.out is None:
        args.out = Path(__file__).resolve().parent / "out" / time.strftime("soak-%Y%m%d-%H%M%S")
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    allocator = unit_allocator_settings() if args.allocator == "unit" else {}
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` of the soak stops its daemon too (the `finally` below)
    print(
        f"bench/soak.py: {args.minutes:g} minutes, a run every {args.run_every_ms:.0f} ms, samples every "
        f"{args.interval:g} s, warm-up {args.warmup_minutes:g} minutes, {args.history:,} runs of history, "
        f"allocator: {' '.join(f'{k}={v}' for k, v in allocator.items()) or 'the defaults'}; "
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs",
        flush=True,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="soak-", dir=args.workdir)).absolute()
    workspace = root / "ws"
    init_workspace(workspace)
    write_history(workspace, args.history)
    tail = LogTail(workspace / "logs")
    env = {k: v for k, v in clean_environment().items() if not is_allocator_setting(k)}
    env.update(allocator)
    if args.tracemalloc or args.memory_detail:
        (args.out / "trace").mkdir(exist_ok=True)
        # before any PYTHONPATH of the caller's (a worktree's daemon/, soaked with this venv)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(MEMTRACE), env.get("PYTHONPATH"))))
        env["MEMTRACE_DIR"] = str(args.out / "trace")
    if args.slab_census:
        env["MEMTRACE_SLABS"] = str(args.slab_census)
    if args.tracemalloc:
        env["MEMTRACE_EVERY"] = str(args.tracemalloc * 60)
    port = free_port()
    served = ["dashboard.enabled=true", f"dashboard.port={port}"] if args.scrape_seconds > 0 else []
    daemon = Daemon(workspace, tail, settings=served, stderr_dir=root, cwd=root, env=env)
    scraper = Scraper(port, args.scrape_seconds) if served else None
    config = WorkloadConfig(
        runs_per_second=1000 / args.run_every_ms,
        max_active=25,
        max_tasks=20,
        max_workstreams=3,
        max_files=4,
        max_file_bytes=64 << 10,
        budget_bytes=1 << 40,
        executor_ends_share=0.2,
        cancel_share=0.02,
        retry_share=0.05,
        task_seconds=0.5,
    )
    workload = Workload(workspace, random.Random(args.seed), config, prefix=f"s{args.seed}")
    try:
        daemon.start()
        sampler = Sampler(daemon, tail, workload, args.interval, args.out / "soak.csv")
        sampler.start()
        if scraper is not None:
            scraper.start()
        workload.start()
        end = time.monotonic() + args.minutes * 60
        next_note = time.monotonic() + 60
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            if daemon.died() is not None:
                print(f"the daemon died: {tail_of(root / 'daemon-000.err')}", file=sys.stderr)
                return 1
            if time.monotonic() >= next_note and sampler.rows:
                next_note += 60
                row = sampler.rows[-1]
                print(
                    f"   [{row.elapsed_s / 60:4.1f} min] RSS {row.rss_mb:.1f} MB, {row.fds} fds, "
                    f"{row.threads} threads, CPU {row.cpu_percent:.1f}%, runs ended {row.runs_ended}, "
                    f"archived {row.runs_archived}",
                    flush=True,
                )
        sampler.join()
        if scraper is not None:
            scraper.join()
        workload.stop_creating()
        workload.wait_drained(CATCH_UP_SECONDS)
        caught_up = tail.wait_for(
            lambda: tail.count("REPORT_GENERATED") >= workload.counts["runs ended"], CATCH_UP_SECONDS, 0.5
        )
        lifetime = daemon.stop()
        workload.stop()
    finally:
        if daemon.pid is not None:
            daemon.kill()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    report(sampler.rows, args, workload, caught_up, lifetime.code if lifetime else None)
    if scraper is not None:
        failed = f", {scraper.counts['failed']} failed (last: {scraper.last_error})" if scraper.counts["failed"] else ""
        answers = scraper.counts["scrapes"]
        print(f"   scraped /metrics and /healthz every {args.scrape_seconds:g} s: {answers} answers{failed}")
    if args.tracemalloc or args.memory_detail:
        report_inside(args.out / "trace" / "memory.csv", args.warmup_minutes * 60)
    if args.tracemalloc:
        report_growth(args.out / "trace", args.warmup_minutes * 60)
    return 0


def report_inside(path: Path, warmup_s: float) -> None:
    """Slopes of what the daemon sampled inside itself: SQLite's heap and Python's allocated blocks."""
    with path.open() as handle:
        points = [(float(r["elapsed_s"]), r) for r in csv.DictReader(handle) if float(r["elapsed_s"]) >= warmup_s]
    if len(points) < 2:
        print(f"\n== inside the daemon: {len(points)} samples after the warm-up in {path}, too few")
        return
    print(f"\n== inside the daemon, after the warm-up ({path})")
    for column, title, scale, unit in (
        ("rss_anon_bytes", "RssAnon", 1e6, "MB"),
        ("sqlite_bytes", "SQLite heap", 1e6, "MB"),
        ("python_blocks", "Python blocks", 1e3, "k"),
        ("malloc_used_bytes", "malloc in use", 1e6, "MB"),
        ("malloc_free_bytes", "malloc free held", 1e6, "MB"),
        ("malloc_mmap_bytes", "malloc mmapped", 1e6, "MB"),
        ("pymalloc_arenas", "pymalloc arenas", 1, ""),
        ("pymalloc_arenas_highwater", "  their highwater", 1, ""),
        ("pymalloc_used_bytes", "pymalloc in use", 1e6, "MB"),
        ("anon_heap_bytes", "anon: glibc heap", 1e6, "MB"),
        ("anon_glibc_arenas_bytes", "anon: glibc arenas", 1e6, "MB"),
        ("anon_stacks_bytes", "anon: thread stacks", 1e6, "MB"),
        ("anon_other_bytes", "anon: the rest", 1e6, "MB"),
        ("jemalloc_allocated_bytes", "jemalloc allocated", 1e6, "MB"),
        ("jemalloc_active_bytes", "jemalloc active", 1e6, "MB"),
        ("jemalloc_resident_bytes", "jemalloc resident", 1e6, "MB"),
        ("jemalloc_metadata_bytes", "jemalloc metadata", 1e6, "MB"),
    ):
        if column not in points[0][1] or all(float(row[column]) <= 0 for _, row in points):
            continue  # not sampled by this daemon, or not this allocator's (glibc's counts under jemalloc)
        series = [(at, float(row[column]) / scale) for at, row in points]
        slope = slope_per_hour(series)
        shown = "-" if slope is None else f"{slope:+.2f} {unit}/hour"
        print(f"   {title:<20} {series[0][1]:>9.2f} -> {series[-1][1]:>9.2f} {unit}, slope {shown}")


def report_growth(folder: Path, warmup_s: float, top: int = 15) -> None:
    """The allocation sites whose live memory grew most between two of the daemon's snapshots."""
    snapshots = sorted(folder.glob("snap-*.trace"))
    after = [path for path in snapshots if int(path.stem.split("-")[1]) >= warmup_s] or snapshots
    if len(after) < 2:
        print(f"\n== tracemalloc: {len(snapshots)} snapshots in {folder}, too few to compare")
        return
    first, last = (
        tracemalloc.Snapshot.load(str(path)).filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        for path in (after[0], after[-1])
    )
    span = (int(after[-1].stem.split("-")[1]) - int(after[0].stem.split("-")[1])) / 3600
    print(f"\n== tracemalloc: {after[0].name} -> {after[-1].name} ({span * 60:.0f} minutes)")
    total = sum(stat.size for stat in last.statistics("filename")) - sum(
        stat.size for stat in first.statistics("filename")
    )
    print(f"   traced Python memory: {total / 1e6:+.2f} MB ({total / 1e6 / max(span, 1e-9):+.2f} MB/hour)")
    for stat in last.compare_to(first, "traceback")[:top]:
        print(f"   {stat.size_diff / 1e3:+10.1f} kB {stat.count_diff:+8d} blocks, now {stat.size / 1e3:.1f} kB")
        for line in stat.traceback.format(limit=4, most_recent_first=True)[::2]:
            print(f"        {line.strip()}")


def report(
    rows: Sequence[Row], args: argparse.Namespace, workload: Workload, caught_up: bool, code: int | None
) -> None:
    csv_path, png_path = args.out / "soak.csv", args.out / "soak.png"
    warmup_s = args.warmup_minutes * 60
    measured = [row for row in rows if row.elapsed_s >= warmup_s]
    drawn = draw(rows, warmup_s, png_path)
    ended = workload.counts["runs ended"]
    span = (measured[-1].elapsed_s - measured[0].elapsed_s) / 60 if len(measured) > 1 else 0.0
    print(f"\n== soak: {len(rows)} samples, {len(measured)} after the warm-up ({span:.1f} minutes measured)")
    print(
        f"   runs ended {ended} ({ended / max(1e-9, args.minutes * 60):.2f}/s), the daemon "
        f"{'caught up (every run reported)' if caught_up else 'had NOT caught up a minute after the load'}; "
        f"SIGTERM exit {code}; executor transactions retried {workload.counts['transactions retried']}"
    )
    print(f"   {'series':<20} {'first':>9} {'last':>9} {'min':>9} {'max':>9} {'slope/hour':>12}  verdict")
    verdicts = []
    for name, title, unit in SERIES:
        values = [float(getattr(row, name)) for row in measured]
        if not values:
            continue
        slope = slope_per_hour([(row.elapsed_s, float(getattr(row, name))) for row in measured])
        shown = "-" if slope is None else f"{slope:+.2f}{unit}"
        if name == "rss_mb":
            ok = slope is not None and slope < GOAL_RSS_MB_PER_HOUR
            verdict = f"goal < {GOAL_RSS_MB_PER_HOUR:g} MB/hour: {'met' if ok else 'MISSED'}"
        elif name in ("fds", "threads"):
            ok = not grows(values)
            verdict = f"goal no growth: {'met' if ok else 'MISSED (the floor rose)'}"
        else:
            ok, verdict = True, "(for reference)"
        verdicts.append(ok)
        print(
            f"   {title:<20} {values[0]:>9.2f} {values[-1]:>9.2f} {min(values):>9.2f} {max(values):>9.2f} "
            f"{shown:>12}  {verdict}"
        )
    print(f"   RSS slope by thirds of the measured time: {rss_by_thirds(measured)} (settling, or steady growth)")
    if args.warmup_minutes > WINDOW_MINUTES:
        first = [(row.elapsed_s, row.rss_mb) for row in rows if row.elapsed_s >= WINDOW_MINUTES * 60]
        early = slope_per_hour(first)
        print(
            f"   RSS slope from minute {WINDOW_MINUTES:g}, the second window's settling included (for reference): "
            + ("-" if early is None else f"{early:+.2f} MB/hour")
        )
    rss = [(row.elapsed_s, row.rss_mb) for row in measured]
    median, error = median_slope_per_hour(rss), slope_error_per_hour(rss)
    if median is not None and error is not None:
        print(
            f"   RSS slope, the median of every two samples' (Theil-Sen): {median:+.2f} MB/hour; "
            f"the least-squares one's standard error: {error:.2f} MB/hour"
        )
    print(f"   csv: {csv_path}")
    print(f"   png: {png_path}" if drawn else f"   png: none. {INSTALL_HINT}")
    print("== goals: " + ("all met" if verdicts and all(verdicts) else "missed (see above)"))


if __name__ == "__main__":
    sys.exit(main())
