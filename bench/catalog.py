"""Benchmark of the archive catalog (issue #17): searches at 100,000 bags beside a scan of the bags themselves.

A monitor database (SQLite, as a one-daemon workspace has it) is filled with N catalog rows
(`Catalog.record`, two tools and up to one error type each, 1,000 run names), then each search
of `orchestrator archives search` is run `--repeat` times: median and p99 in ms. The baseline is
what finding a bag took without a catalog: reading `bag-info.txt` of every bag under a
directory (`--scan` bags written for it; the per-bag cost times N is printed beside it).

    .venv/bin/python bench/catalog.py                      # 100,000 rows, 10,000 bags scanned
    .venv/bin/python bench/catalog.py --bags 20000 --scan 2000 --repeat 50
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from orchestrator_monitor.ledger.catalog import ArchiveEntry, ArchiveFilter, Catalog, glob_to_like
from orchestrator_monitor.ledger.store import sqlite_store
from orchestrator_monitor.timefmt import format_timestamp, utc_now

TOOLS = [f"tool{n}" for n in range(40)]
ERRORS = [f"error{n}" for n in range(25)]


def fill(catalog: Catalog, bags: int, rng: random.Random) -> None:
    now = utc_now().timestamp()
    batch: list[ArchiveEntry] = []
    for n in range(bags):
        ended = format_timestamp(utc_now().fromtimestamp(now - n * 60, utc_now().tzinfo))
        batch.append(
            ArchiveEntry(
                run_id=f"run-{n:07d}",
                status=rng.choice(("COMPLETED", "COMPLETED", "COMPLETED", "FAILED", "PARTIAL")),
                archived_at=ended,
                files=rng.randint(1, 5000),
                bytes=rng.randint(1, 1 << 34),
                manifest_sha256=f"{n:064x}",
                name=f"pipeline-{n % 1000}",
                finished_at=ended,
                tools=tuple(rng.sample(TOOLS, 2)),
                error_types=(rng.choice(ERRORS),) if rng.random() < 0.3 else (),
                locations=(f"/archive/run-{n:07d}",),
            )
        )
        if len(batch) == 5000:
            catalog.record(batch, ended)
            batch = []
    catalog.record(batch, format_timestamp(utc_now()))


def timed(action: Callable[[], object], repeat: int) -> tuple[float, float]:
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    seconds.sort()
    return statistics.median(seconds) * 1000, seconds[min(len(seconds) - 1, int(len(seconds) * 0.99))] * 1000


def scan(root: Path) -> list[str]:
    """The run ids of the FAILED bags, by reading every bag's bag-info.txt (what there was without a catalog)."""
    found = []
    for entry in os.scandir(root):
        text = (Path(entry.path) / "bag-info.txt").read_text()
        if "Run-Status: FAILED" in text:
            found.append(entry.name)
    return found


def search_cases() -> dict[str, ArchiveFilter]:
    """Each search `orchestrator archives search` offers (status, time range, name glob, tool, error type), by label."""
    now = utc_now().timestamp()

    def days_ago(days: int) -> str:
        return format_timestamp(utc_now().fromtimestamp(now - days * 86400, utc_now().tzinfo))

    return {
        "list, first page of 50": ArchiveFilter(),
        "--status FAILED (page of 50)": ArchiveFilter(statuses=("FAILED",)),
        "--since 30d --until 7d": ArchiveFilter(since=days_ago(30), until=days_ago(7)),
        "--name 'pipeline-1*'": ArchiveFilter(name_like=glob_to_like("pipeline-1*")),
        "--tool tool7 (page of 50)": ArchiveFilter(tool="tool7"),
        "--error-type error3": ArchiveFilter(error_type="error3"),
        "--error-type error3 --status FAILED": ArchiveFilter(error_type="error3", statuses=("FAILED",)),
        "--since 7d --name 'pipeline-1*'": ArchiveFilter(since=days_ago(7), name_like=glob_to_like("pipeline-1*")),
        "--result corrupt": ArchiveFilter(result="corrupt"),
    }


def write_info_bags(root: Path, bags: int, rng: random.Random) -> None:
    """`bags` directories under `root` holding only a bag-info.txt: what the baseline `scan` reads."""
    root.mkdir()
    for n in range(bags):
        bag = root / f"run-{n:07d}"
        bag.mkdir()
        status = rng.choice(("COMPLETED", "FAILED"))
        (bag / "bag-info.txt").write_text(f"Payload-Oxum: 1.1\nRun-Id: {bag.name}\nRun-Status: {status}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bags", type=int, default=100_000)
    parser.add_argument("--scan", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    rng = random.Random(17)
    with tempfile.TemporaryDirectory() as directory:
        store = sqlite_store(Path(directory) / "monitor.db", busy_timeout_seconds=5)
        catalog = Catalog(store)
        started = time.perf_counter()
        fill(catalog, args.bags, rng)
        print(f"catalog: {args.bags} bags recorded in {time.perf_counter() - started:.1f} s")
        print(f"{'search':<40} {'median ms':>10} {'p99 ms':>10} {'matches':>8}")
        for label, where in search_cases().items():
            median, p99 = timed(lambda w=where: catalog.search(w, limit=50), args.repeat)
            print(f"{label:<40} {median:>10.2f} {p99:>10.2f} {catalog.search(where, limit=1).total:>8}")
        median, p99 = timed(lambda: catalog.due_for_audit(200), args.repeat)
        print(f"{'audit: the 200 due bags':<40} {median:>10.2f} {p99:>10.2f}")
        store.dispose()
        root = Path(directory) / "archive"
        write_info_bags(root, args.scan, rng)
        median, p99 = timed(lambda: scan(root), 5)
        whole = median * args.bags / args.scan
        print(
            f"baseline: scan of {args.scan} bags' bag-info.txt (page cache warm): median {median:.1f} ms, "
            f"p99 {p99:.1f} ms; for {args.bags} bags: ~{whole:.0f} ms"
        )


if __name__ == "__main__":
    main()
