"""The catalog keeps a bag's offloaded copies across a reindex, and drops them when the bag is re-made."""

from __future__ import annotations

from pathlib import Path

from orchestrator_monitor.ledger.catalog import ArchiveEntry, Catalog
from orchestrator_monitor.ledger.store import sqlite_store


def _entry(run_id: str, digest: str, root: Path) -> ArchiveEntry:
    return ArchiveEntry(run_id, "COMPLETED", "2026-11-24T10:05:00Z", 3, 30, digest, locations=(str(root / run_id),))


def test_copies_survive_a_reindex_but_not_a_new_bag(tmp_path: Path) -> None:
    catalog = Catalog(sqlite_store(tmp_path / "monitor.db", busy_timeout_seconds=1))
    root = tmp_path / ".archive"
    catalog.record([_entry("a", "1" * 64, root), _entry("b", "2" * 64, root)], "t0")
    catalog.add_location("a", "s3", "s3://bags/lab/a", "t1")
    catalog.add_location("b", "s3", "s3://bags/lab/b", "t1")
    assert [e.run_id for e in catalog.not_stored_under("s3://bags/lab", str(root), 10)] == []
    assert [e.run_id for e in catalog.not_stored_under("s3://other", str(root), 10)] == ["a", "b"]
    catalog.record([_entry("a", "1" * 64, root), _entry("b", "3" * 64, root)], "t2")  # b bagged anew
    assert catalog.get("a").locations == (str(root / "a"), "s3://bags/lab/a")  # the local bag first
    assert catalog.get("b").locations == (str(root / "b"),)
    assert [e.run_id for e in catalog.not_stored_under("s3://bags/lab", str(root), 10)] == ["b"]
