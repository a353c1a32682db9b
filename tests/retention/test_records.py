"""Retention's records in the monitor's database, on PostgreSQL as on SQLite: a deletion, its location
row gone, a hold said once, and the catalog read a pass decides on."""

from __future__ import annotations

import pytest
from orchestrator_monitor.config import load_settings
from orchestrator_monitor.ledger.catalog import ArchiveEntry, Catalog
from orchestrator_monitor.ledger.prunings import Pruned, Prunings
from orchestrator_monitor.ledger.runs import Completion, Ledger
from orchestrator_monitor.ledger.store import open_store


def _entry(run_id: str, where: str) -> ArchiveEntry:
    return ArchiveEntry(
        run_id=run_id,
        status="COMPLETED",
        archived_at="2026-11-24T10:06:00.000000Z",
        files=3,
        bytes=100,
        manifest_sha256="0" * 64,
        name="nightly",
        finished_at="2026-11-24T10:05:00.000000Z",
        locations=(f"{where}/{run_id}",),
    )


def _records(store) -> None:
    catalog, prunings = Catalog(store), Prunings(store)
    catalog.record([_entry("a", "/ws/.archive"), _entry("b", "/ws/.archive"), _entry("c", "/other")], "t")
    [a, b, c] = sorted(prunings.catalog_runs(under="/ws/.archive"), key=lambda r: r.run_id)
    assert (a.local_bag, c.local_bag) == ("/ws/.archive/a", None)  # another root's bag is not ours to delete
    assert a.ended_at == "2026-11-24T10:05:00.000000Z" and a.name == "nightly" and not a.pruned
    prunings.add_holds([("a", "bag", "not_offloaded")], "t1")
    prunings.add_holds([("a", "bag", "not_offloaded"), ("a", "bag", "bag_corrupt")], "t2")  # again: no error
    assert prunings.holds() == {("a", "bag", "not_offloaded"), ("a", "bag", "bag_corrupt")}
    prunings.record(Pruned("a", "bag", "t3", "old", 3, 100, 0), drop_location="/ws/.archive/a")
    prunings.record(Pruned("b", "run_dir", "t3", "old", 3, 90, 1))
    [a, b, _] = sorted(prunings.catalog_runs(under="/ws/.archive"), key=lambda r: r.run_id)
    assert a.local_bag is None and a.pruned == {"bag"} and b.pruned == {"run_dir"}
    assert catalog.get("a").locations == () and catalog.get("b").locations == ("/ws/.archive/b",)
    assert prunings.pruned_ids("bag") == {"a"}
    assert prunings.holds() == set()  # forgotten with the deletion: a later refusal is said anew


def test_records_on_sqlite(workspace) -> None:
    store = open_store(load_settings(workspace))
    try:
        _records(store)
    finally:
        store.dispose()


@pytest.mark.postgres
def test_records_on_postgresql(tmp_path, postgres_url: str) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "monitor.toml").write_text(f"[database]\nurl = '{postgres_url}'\n")
    store = open_store(load_settings(tmp_path))
    try:
        _records(store)
        ledger = Ledger(store)
        ledger.complete_many([Completion("b", "COMPLETED", "monitor", {}, "f")])
        ledger.reopen("b", decided_on="f")
        assert [r.run_id for r in Prunings(store).catalog_runs() if r.reopened] == ["b"]
    finally:
        store.dispose()
