"""The catalog's rows on both backends: a record keeps the last check, searches seek facets, the audit's order."""

from __future__ import annotations

import itertools
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from orchestrator_monitor.config import load_settings
from orchestrator_monitor.ledger.catalog import ArchiveEntry, ArchiveFilter, Catalog, glob_to_like
from orchestrator_monitor.ledger.store import MonitorStore, open_store, sqlite_store


def _entry(run_id: str, finished: str, **facts: object) -> ArchiveEntry:
    return ArchiveEntry(
        run_id=run_id,
        status=str(facts.pop("status", "COMPLETED")),
        archived_at=finished,
        files=3,
        bytes=100,
        manifest_sha256="0" * 64,
        finished_at=finished,
        locations=(f"/archive/{run_id}",),
        **facts,  # type: ignore[arg-type]
    )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> MonitorStore:
    if request.param == "sqlite":
        made = sqlite_store(tmp_path / "monitor.db", busy_timeout_seconds=1)
    else:
        url = request.getfixturevalue("postgres_url")
        made = open_store(load_settings(tmp_path, environ={}, overrides=[f"database.url={url}"]))  # type: ignore[assignment]
    yield made
    made.dispose()


def test_record_search_and_audit_order(store: MonitorStore) -> None:
    catalog = Catalog(store)
    catalog.record(
        [
            _entry(
                "a", "2026-11-01T00:00:00.000000Z", name="nightly_1", tools=("lint", "pytest"), error_types=("oom",)
            ),
            _entry("b", "2026-11-02T00:00:00.000000Z", name="nightly%2", tools=("lint",), status="FAILED"),
            _entry("c", "2026-11-03T00:00:00.000000Z", name="weekly"),
        ],
        "2026-12-01T00:00:00.000000Z",
    )
    catalog.record_check("c", "2026-11-20T00:00:00.000000Z", "corrupt", "data/x: missing")
    catalog.record([_entry("c", "2026-11-03T00:00:00.000000Z", name="weekly")], "2026-12-02T00:00:00.000000Z")
    assert catalog.get("c").verify_result == "corrupt"  # recording a bag again keeps its last check
    assert catalog.get("a").tools == ("lint", "pytest") and catalog.get("a").locations == ("/archive/a",)

    def ids(**where: object) -> list[str]:
        return [e.run_id for e in catalog.search(ArchiveFilter(**where)).entries]  # type: ignore[arg-type]

    assert ids() == ["c", "b", "a"]
    assert ids(tool="lint") == ["b", "a"] and ids(error_type="oom") == ["a"]
    assert ids(name_like=glob_to_like("nightly%*")) == ["b"]  # LIKE's own wildcards are literal
    assert ids(name_like=glob_to_like("nightly?1")) == ["a"]
    assert (
        ids(statuses=("FAILED",)) == ["b"] and ids(result="corrupt") == ["c"] and ids(result="unverified") == ["b", "a"]
    )
    assert ids(since="2026-11-02T00:00:00.000000Z", until="2026-11-03T00:00:00.000000Z") == ["b"]
    page = catalog.search(ArchiveFilter(), limit=1, offset=1)
    assert [e.run_id for e in page.entries] == ["b"] and page.total == 3
    assert [e.run_id for e in catalog.due_for_audit(3)] == ["a", "b", "c"]  # never checked first, oldest bag first
    catalog.record_check("a", "2026-11-30T00:00:00.000000Z", "ok", None)
    assert [e.run_id for e in catalog.due_for_audit(2)] == ["b", "c"]
    assert catalog.forget_except({"a", "c"}) == ["b"] and catalog.count() == 2 and ids(tool="lint") == ["a"]


def test_an_audit_reads_only_the_bags_under_its_own_archive_root(store: MonitorStore) -> None:
    catalog = Catalog(store)
    at = "2026-11-01T00:00:00.000000Z"
    mine = [_entry("m1", at), _entry("m2", at)]
    theirs = [
        ArchiveEntry("t1", "COMPLETED", at, 1, 1, "0" * 64, locations=("/archive_b/t1",)),  # a sibling directory
        ArchiveEntry("t2", "COMPLETED", at, 1, 1, "0" * 64, locations=("/archivex/t2",)),
    ]
    catalog.record(mine + theirs, at)
    assert [e.run_id for e in catalog.due_for_audit(10, under="/archive")] == ["m1", "m2"]
    assert catalog.count(under="/archive/") == 2 and catalog.count() == 4
    assert catalog.payload_bytes(under="/archive") == 200 and catalog.payload_bytes() == 202
    assert catalog.payload_bytes(under="/nowhere") == 0


def test_both_search_plans_find_the_same_bags(store: MonitorStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many matches walk the bags newest first, few are fetched by id (facets with status and end in them):
    every filter gives the same page and total either way, and what a plain reading of the entries gives."""
    entries = [
        _entry(
            f"r{n:02d}",
            f"2026-11-{1 + n % 28:02d}T00:00:{n:02d}.000000Z",
            name=("nightly-a", "nightly-b", "weekly")[n % 3],
            status=("COMPLETED", "FAILED", "PARTIAL")[n % 4 % 3],
            tools=("lint", "pytest")[: 1 + n % 2],
            error_types=("oom",) if n % 5 == 0 else (),
        )
        for n in range(40)
    ]
    catalog = Catalog(store)
    catalog.record(entries, "2026-12-01T00:00:00.000000Z")
    catalog.record([_entry("r00", "2026-11-20T00:00:00.000000Z", status="FAILED", tools=("lint",))], "2026-12-02")
    entries[0] = _entry("r00", "2026-11-20T00:00:00.000000Z", status="FAILED", tools=("lint",))  # a bag recorded again
    filters = [
        ArchiveFilter(tool="pytest"),
        ArchiveFilter(tool="lint", statuses=("FAILED",)),
        ArchiveFilter(error_type="oom", statuses=("FAILED", "COMPLETED"), since="2026-11-05T00:00:00.000000Z"),
        ArchiveFilter(tool="pytest", error_type="oom"),
        ArchiveFilter(tool="lint", until="2026-11-10T00:00:00.000000Z", name_like=glob_to_like("nightly-*")),
        ArchiveFilter(statuses=("PARTIAL",), name_like=glob_to_like("weekly")),
        ArchiveFilter(since="2026-11-15T00:00:00.000000Z", name_like=glob_to_like("nightly-*")),
        ArchiveFilter(tool="nothing"),
    ]

    def expected(where: ArchiveFilter) -> list[str]:
        found = [
            e
            for e in entries
            if (not where.statuses or e.status in where.statuses)
            and (where.since is None or e.finished_at >= where.since)
            and (where.until is None or e.finished_at < where.until)
            and (where.tool is None or where.tool in e.tools)
            and (where.error_type is None or where.error_type in e.error_types)
            and (where.name_like is None or fnmatchcase(e.name or "", where.name_like.replace("%", "*")))
        ]
        return [e.run_id for e in sorted(found, key=lambda e: (e.finished_at, e.run_id), reverse=True)]

    for few, narrow in itertools.product((0, 10**9), (0, 10**9)):  # walk or seek; a name's index or the time's
        monkeypatch.setattr("orchestrator_monitor.ledger.catalog._FEW_MATCHES", few)
        monkeypatch.setattr("orchestrator_monitor.ledger.catalog._NARROW_TIME", narrow)
        for where in filters:
            page = catalog.search(where, limit=5)
            want = expected(where)
            assert [e.run_id for e in page.entries] == want[:5] and page.total == len(want), (few, narrow, where)
