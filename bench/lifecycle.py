"""Benchmark of the archive lifecycle (issue #17), one part per concern, each beside its baseline in the same run.

- `catalog`: every search `orchestrator archives search` offers, over 1,000,000 bags in the catalog
  (a SQLite monitor database, as a one-daemon workspace has it): median and p99 in ms, goal p99 < 50 ms.
  Baseline: finding bags without a catalog, by reading every bag's `bag-info.txt`; that is timed on a
  sample of bags and extrapolated linearly to the catalog's size (said so where it is printed).
- `audit`: the fixity audit's pass (`FixityAudit.run_pass`, its rate limit off) over bags written
  here, against `sha256sum` over the very same files (and `openssl dgst -sha256`, the same SHA-256
  code as Python's hashlib), in rotating order, page cache warm: medians of the rounds, in MB/s,
  and the ratio to sha256sum (goal >= 0.8).
- `offload` (`lifecycle_offload.py`): our offload pass of archived bags to moto's S3 server on
  loopback against s3transfer's TransferManager (what `aws s3 cp --recursive` uses) sending the
  same files; medians, ratio (goal >= 0.8).
- `retention` (`lifecycle_retention.py`): a retention pass over 100,000 catalogued runs (goal < 60 s),
  beside deciding the same from every bag's `bag-info.txt`.

    .venv/bin/python bench/lifecycle.py                  # every part at full size (a few minutes)
    .venv/bin/python bench/lifecycle.py --part audit --quick
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import lifecycle_offload
import lifecycle_retention
from catalog import fill, scan, search_cases, timed, write_info_bags
from orchestrator_monitor.archive.bag import hash_file, write_tag_files
from orchestrator_monitor.config import AuditSettings
from orchestrator_monitor.ledger.catalog import ArchiveEntry, Catalog
from orchestrator_monitor.ledger.store import sqlite_store
from orchestrator_monitor.service.audit import FixityAudit
from orchestrator_monitor.timefmt import format_timestamp, utc_now

SEARCH_GOAL_MS = 50.0
AUDIT_GOAL_RATIO = 0.8
# One bag's payload: a large file, some medium ones and many small ones, as a run directory holds.
PAYLOAD_SHAPE = ((1, 16 << 20), (12, 256 << 10), (60, 4 << 10))


def run_catalog(quick: bool) -> None:
    bags, sample, repeat = (100_000, 2_000, 50) if quick else (1_000_000, 10_000, 200)
    rng = random.Random(17)
    with tempfile.TemporaryDirectory() as directory:
        store = sqlite_store(Path(directory) / "monitor.db", busy_timeout_seconds=5)
        catalog = Catalog(store)
        started = time.perf_counter()
        fill(catalog, bags, rng)
        print(f"catalog: {bags:,} bags recorded in {time.perf_counter() - started:.0f} s")
        write_info_bags(Path(directory) / "archive", sample, rng)
        scan_ms, _ = timed(lambda: scan(Path(directory) / "archive"), 5)
        baseline_ms = scan_ms * bags / sample
        print(
            f"baseline: reading every bag-info.txt, {scan_ms:.0f} ms for a sample of {sample:,} bags (cache warm), "
            f"extrapolated linearly to {bags:,}: ~{baseline_ms / 1000:.1f} s per search, whatever it looks for"
        )
        print(f"{'search (page of 50, and the total)':<40} {'median ms':>10} {'p99 ms':>10} {'matches':>9}  goal p99")
        worst = 0.0
        for label, where in search_cases().items():
            median, p99 = timed(lambda w=where: catalog.search(w, limit=50), repeat)
            worst = max(worst, p99)
            verdict = "met" if p99 < SEARCH_GOAL_MS else "MISSED"
            total = catalog.search(where, limit=1).total
            print(f"{label:<40} {median:>10.2f} {p99:>10.2f} {total:>9,}  < {SEARCH_GOAL_MS:.0f} ms {verdict}")
        median, p99 = timed(lambda: catalog.due_for_audit(200), repeat)
        print(f"{'audit: the 200 due bags':<40} {median:>10.2f} {p99:>10.2f}")
        print(
            f"worst p99 {worst:.1f} ms, {baseline_ms / worst:,.0f}x faster than the baseline's ~{baseline_ms:,.0f} ms"
        )
        store.dispose()


def write_bags(root: Path, count: int, rng: random.Random) -> list[Path]:
    """`count` bags as the archiver writes them (payload under data/run/, our tag files), random content."""
    now = utc_now()
    bags = []
    for n in range(count):
        bag = root / f"bag-{n:03d}"
        digests = {}
        for group, (files, size) in enumerate(PAYLOAD_SHAPE):
            for index in range(files):
                relative = f"data/run/g{group}/f{index:03d}.bin"
                (bag / relative).parent.mkdir(parents=True, exist_ok=True)
                (bag / relative).write_bytes(rng.randbytes(size))
                digests[relative] = hash_file(bag / relative)
        write_tag_files(bag, run_id=bag.name, status="COMPLETED", digests=digests, links=[], specials=[], now=now)
        bags.append(bag)
    return bags


def run_audit(quick: bool) -> None:
    count, rounds = (6, 3) if quick else (40, 5)
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory) / "archive"
        bags = write_bags(root, count, random.Random(17))
        files = sorted(str(Path(d) / f) for bag in bags for d, _, names in os.walk(bag) for f in names)
        total = sum(os.path.getsize(f) for f in files)
        store = sqlite_store(Path(directory) / "monitor.db", busy_timeout_seconds=5)
        catalog = Catalog(store)
        at = format_timestamp(utc_now())
        catalog.record([ArchiveEntry(b.name, "COMPLETED", at, 1, 1, "0" * 64, locations=(str(b),)) for b in bags], at)
        settings = AuditSettings(bytes_per_second=0, interval_seconds=86_400, cycle_days=1)  # every bag, no limit
        audit = FixityAudit(catalog, settings, lambda *a, **k: None, lambda o: None, threading.Event(), root)

        def run_audit_pass() -> None:
            done = audit.run_pass(utc_now())
            assert len(done.verified) == count and not done.corrupt, done

        contenders = {
            "audit pass (no rate limit)": run_audit_pass,
            "sha256sum, same files": lambda: hash_with(["sha256sum", "--"], files),
        }
        if shutil.which("openssl"):  # OpenSSL's SHA-256 (SHA-NI where the CPU has it), as Python's hashlib uses
            contenders["openssl dgst -sha256, same"] = lambda: hash_with(["openssl", "dgst", "-sha256"], files)
        print(f"audit: {count} bags, {len(files):,} files, {total / 2**20:,.0f} MiB; {rounds} rounds, rotating order")
        hash_with(["sha256sum", "--"], files)  # the page cache warm for all
        seconds: dict[str, list[float]] = {name: [] for name in contenders}
        for turn in range(rounds):
            names = list(contenders)
            for name in names[turn % len(names) :] + names[: turn % len(names)]:
                started = time.perf_counter()
                contenders[name]()
                seconds[name].append(time.perf_counter() - started)
        store.dispose()
    rates = {name: total / statistics.median(times) / 1e6 for name, times in seconds.items()}
    print(f"{'':<28} {'median s':>9} {'MB/s':>8}")
    for name, times in seconds.items():
        print(f"{name:<28} {statistics.median(times):>9.2f} {rates[name]:>8.0f}")
    ratio = rates["audit pass (no rate limit)"] / rates["sha256sum, same files"]
    verdict = "met" if ratio >= AUDIT_GOAL_RATIO else "MISSED"
    print(f"ratio {ratio:.2f}x of sha256sum (goal >= {AUDIT_GOAL_RATIO}x: {verdict})")


def hash_with(command: list[str], files: list[str]) -> None:
    """A hashing command over `files`, a few thousand names per process."""
    for start in range(0, len(files), 2000):
        subprocess.run([*command, *files[start : start + 2000]], check=True, stdout=subprocess.DEVNULL)


PARTS = {
    "catalog": run_catalog,
    "audit": run_audit,
    "offload": lifecycle_offload.run,
    "retention": lifecycle_retention.run,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=[*PARTS, "all"], default="all", help="which part to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer rounds: a minute or so")
    args = parser.parse_args()
    for name, part in PARTS.items():
        if args.part in (name, "all"):
            print(f"== {name}{' (quick)' if args.quick else ''}", flush=True)
            part(args.quick)
            sys.stdout.flush()


if __name__ == "__main__":
    main()
