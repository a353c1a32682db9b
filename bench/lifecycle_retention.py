"""Benchmark of a retention pass (issue #17): 100,000 archived runs in the catalog, goal under 60 s.

A one-daemon monitor database (SQLite) gets N catalog rows (1,000 run names, three statuses, ends
spread over a year); a sample of S runs gets a real run directory and a real local bag (built with
the archive's own tag-file writer, so the pass re-verifies real files). The other runs' directories
and local bags are gone already (pruned by earlier passes): the pass decides over all N, reads S.
Policies: 90 days and the last 2 of each name and status kept, FAILED runs 180 days, for run directories and
bags; offload "on", with a confirmer that confirms every other run. Measured: the plan (a dry run,
every check made), the first pass (deletes the sample's expired run directories and half their
bags, holds the rest with one RETENTION_HELD each) and a second pass (nothing new to do or say).
The decision alone (catalog read, a stat per run, the pure plan) is timed too.
Baseline, side by side: the same decision without a catalog, reading every bag's `bag-info.txt` and
`stat`ing every run directory (measured on the S real bags, extrapolated to N, as its line says).

    .venv/bin/python bench/lifecycle_retention.py            # 100,000 runs, 500 on disk
    .venv/bin/python bench/lifecycle_retention.py --quick    # 10,000 runs, 100 on disk
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from orchestrator_monitor.archive.bag import write_tag_files
from orchestrator_monitor.config import RetentionPolicy, RetentionSettings
from orchestrator_monitor.ledger.catalog import ArchiveEntry, Catalog
from orchestrator_monitor.ledger.prunings import Prunings
from orchestrator_monitor.ledger.store import sqlite_store
from orchestrator_monitor.retention.policy import RunFacts, plan
from orchestrator_monitor.retention.prune import Retention
from orchestrator_monitor.timefmt import format_timestamp
from orchestrator_monitor.workspace import Workspace

NOW = datetime(2026, 12, 1, tzinfo=UTC)
GOAL_SECONDS = 60.0
POLICIES = [
    RetentionPolicy(keep_days=90, keep_last=2, applies_to=["run_dirs", "bags"]),
    RetentionPolicy(statuses=["FAILED"], keep_days=180, applies_to=["run_dirs", "bags"]),
]


class Counter:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def publish(self, type: Any, data: dict[str, Any], *, run_id: str | None = None) -> None:
        self.counts[str(type)] = self.counts.get(str(type), 0) + 1


def _ended(n: int, runs: int) -> datetime:
    return NOW - timedelta(days=365 * n / runs)


def fill(catalog: Catalog, workspace: Workspace, runs: int, on_disk: set[str], rng: random.Random) -> None:
    """N catalog rows; only the sample's bags are local (the others' were offloaded and deleted earlier)."""
    batch: list[ArchiveEntry] = []
    for n in range(runs):
        run_id = f"run-{n:07d}"
        ended = format_timestamp(_ended(n, runs))
        batch.append(
            ArchiveEntry(
                run_id=run_id,
                status=rng.choice(("COMPLETED", "COMPLETED", "FAILED", "PARTIAL")),
                archived_at=ended,
                files=3,
                bytes=3 * 4096,
                manifest_sha256=f"{n:064x}",
                name=f"pipeline-{n % 1000}",
                finished_at=ended,
                locations=(str(workspace.archive_root / run_id),) if run_id in on_disk else (),
            )
        )
        if len(batch) == 5000:
            catalog.record(batch, ended)
            batch = []
    catalog.record(batch, format_timestamp(NOW))


def make_on_disk(workspace: Workspace, run_ids: list[str], statuses: dict[str, str], rng: random.Random) -> None:
    """A run directory of three files and its bag (payload copied, tag files by the archive's writer)."""
    for run_id in run_ids:
        run_dir = workspace.runs_dir / run_id
        bag = workspace.archive_root / run_id
        (run_dir / "logs").mkdir(parents=True)
        files = {"out.bin": rng.randbytes(4096), "result.json": b'{"ok": true}\n', "logs/t0.log": b"log\n" * 1000}
        digests = {}
        for name, content in files.items():
            (run_dir / name).write_bytes(content)
            (bag / "data" / "run" / name).parent.mkdir(parents=True, exist_ok=True)
            (bag / "data" / "run" / name).write_bytes(content)
            digests[f"data/run/{name}"] = (hashlib.sha256(content).hexdigest(), len(content))
        write_tag_files(bag, run_id=run_id, status=statuses[run_id], digests=digests, links=[], specials=[], now=NOW)


def baseline_scan(workspace: Workspace, run_ids: list[str]) -> float:
    """Seconds to decide without a catalog for `run_ids`: each bag's bag-info.txt read, each run dir stat'ed."""
    started = time.perf_counter()
    for run_id in run_ids:
        info = (workspace.archive_root / run_id / "bag-info.txt").read_text()
        if "Run-Status: FAILED" not in info:
            os.path.lexists(workspace.runs_dir / run_id)
    return time.perf_counter() - started


def run(quick: bool) -> None:
    runs, sample = (10_000, 100) if quick else (100_000, 500)
    rng = random.Random(17)
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        workspace = Workspace(root=root, archive_root=root / ".archive")
        for folder in workspace.folders():
            folder.mkdir(parents=True, exist_ok=True)
        store = sqlite_store(workspace.progress_db, busy_timeout_seconds=5)
        catalog = Catalog(store)
        on_disk = [f"run-{n:07d}" for n in rng.sample(range(runs), sample)]
        started = time.perf_counter()
        fill(catalog, workspace, runs, set(on_disk), rng)
        print(f"retention: {runs} runs catalogued in {time.perf_counter() - started:.1f} s (not part of a pass)")
        entries = [catalog.get(run_id) for run_id in on_disk]
        make_on_disk(workspace, on_disk, {e.run_id: e.status for e in entries if e is not None}, rng)
        scans = [baseline_scan(workspace, on_disk) for _ in range(5)]  # before any pass deletes a bag
        baseline = statistics.median(scans) * runs / sample
        confirm = lambda run_id: None if int(run_id[-1]) % 2 == 0 else "not in the bucket"  # noqa: E731
        counter = Counter()
        retention = Retention(
            RetentionSettings(enabled=True, policies=POLICIES),
            workspace,
            store,
            counter.publish,
            confirm_offloaded=confirm,
        )
        timings = {}
        started = time.perf_counter()
        rows = Prunings(store).catalog_runs(under=str(workspace.archive_root))
        facts = [
            RunFacts(
                r.run_id,
                r.status,
                r.ended_at,
                r.name,
                r.verify_result,
                os.path.lexists(workspace.runs_dir / r.run_id),
                r.local_bag is not None,
            )
            for r in rows
        ]
        plan(facts, POLICIES, NOW)
        timings["decision alone (catalog read, plan)"] = time.perf_counter() - started
        started = time.perf_counter()
        planned = retention.plan(NOW)
        timings["plan (dry run, every check)"] = time.perf_counter() - started
        started = time.perf_counter()
        first = retention.run_pass(NOW)
        timings["first pass (deletes, holds said)"] = time.perf_counter() - started
        first_events = dict(counter.counts)
        started = time.perf_counter()
        retention.run_pass(NOW)
        timings["second pass (steady state)"] = time.perf_counter() - started
        store.dispose()
        print(
            f"plan: {len(planned.steps)} steps, {len(planned.done)} would go; first pass: "
            f"{sum(str(s.target) == 'run_dir' for s in first.done)} run directories and "
            f"{sum(str(s.target) == 'bag' for s in first.done)} bags deleted; events {first_events}"
        )
        print(f"{'':<36} {'seconds':>8}   goal < {GOAL_SECONDS:.0f} s")
        for label, seconds in timings.items():
            verdict = "ok" if seconds < GOAL_SECONDS else "MISSED"
            print(f"{label:<36} {seconds:>8.2f}   {verdict}")
        print(
            f"{'baseline: bag-info.txt walk':<36} {baseline:>8.2f}   (the decision's reads alone, without any "
            f"check: {sample} real bags read, median of 5, times {runs // sample}; page cache warm)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10,000 runs, 100 on disk")
    run(parser.parse_args().quick)


if __name__ == "__main__":
    main()
