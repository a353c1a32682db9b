"""A daemon whose lease ran out, on a shared PostgreSQL: another takes its runs over, each as far as it got."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from orchestrator_monitor.config import load_settings
from orchestrator_monitor.detect.completions import Completions, End, NoHandoff
from orchestrator_monitor.detect.detector import Detector
from orchestrator_monitor.detect.shares import ClusterShares
from orchestrator_monitor.events.types import EventType
from orchestrator_monitor.ledger.members import Membership
from orchestrator_monitor.ledger.runs import Completion, Ledger
from orchestrator_monitor.ledger.store import MonitorStore, open_store
from orchestrator_monitor.state.records import RunSnapshot
from orchestrator_monitor.state.schema import metadata
from sqlalchemy import create_engine, text
from support import reference_tables

pytestmark = pytest.mark.postgres
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def store_for(url: str, tmp_path: Path, daemon_id: str) -> MonitorStore:
    settings = load_settings(tmp_path, environ={}, overrides=[f"database.url={url}", f"cluster.daemon_id={daemon_id}"])
    store = open_store(settings)
    assert store is not None
    return store


@pytest.fixture
def stores(postgres_url: str, tmp_path: Path) -> Iterator[tuple[MonitorStore, MonitorStore]]:
    engine = create_engine(postgres_url)
    metadata.create_all(engine)
    with engine.begin() as connection:
        for run_id, status in (("announce-me", "COMPLETED"), ("mark-landed", "COMPLETED"), ("mark-lost", "RUNNING")):
            connection.execute(text("INSERT INTO runs (run_id, status) VALUES (:r, :s)"), {"r": run_id, "s": status})
            connection.execute(
                text("INSERT INTO tasks (task_id, run_id, status, attempts) VALUES (:t, :r, 'SUCCEEDED', 1)"),
                {"t": f"{run_id}.t", "r": run_id},
            )
    engine.dispose()
    dead, alive = store_for(postgres_url, tmp_path, "dead"), store_for(postgres_url, tmp_path, "alive")
    yield dead, alive
    dead.dispose()
    alive.dispose()


def test_a_dead_daemons_runs_are_finished_by_a_live_one_as_far_as_each_got(
    stores: tuple[MonitorStore, MonitorStore], postgres_url: str
) -> None:
    dead_store, store = stores
    dead = Ledger(dead_store)
    dead.take_baseline({})
    # Its last moments: one completion recorded but not announced, one mark landed before its record,
    # one intent whose mark never landed (the run is still open).
    dead.begin_marks({"announce-me": "COMPLETED", "mark-landed": "COMPLETED", "mark-lost": "COMPLETED"})
    dead.complete_many([Completion("announce-me", "COMPLETED", "monitor", {"SUCCEEDED": 1}, "rows")])
    published: list[tuple[EventType, str | None, dict]] = []
    handed: list[str] = []
    membership = Membership(store, version="t", lease_seconds=5)
    membership.join()
    engine = create_engine(postgres_url)
    connection = engine.connect()
    ledger = Ledger(store)
    detector = Detector(
        ledger=ledger,
        publish=lambda type, data, *, run_id=None: published.append((type, run_id, data)),
        flush=lambda: None,
        handoff=type("Handoff", (), {"completed": lambda self, run_id: handed.append(run_id)})(),
        settle_seconds=0,
        stall_after_seconds=100,
        connection=lambda: connection,
        tables=reference_tables(),
        shares=ClusterShares(membership, ledger, refresh_seconds=0),
    )
    try:
        detector.start()
        detector.take_over(mono=1.0)
        completed = {run_id: data for type, run_id, data in published if type is EventType.RUN_COMPLETED}
        assert completed == {
            "announce-me": {"status": "COMPLETED", "marked_by": "monitor", "tasks": {"SUCCEEDED": 1}},
            "mark-landed": {"status": "COMPLETED", "marked_by": "monitor", "tasks": {"SUCCEEDED": 1}},
        }  # announced again (the same ids), and the landed mark recognised as the monitor's
        assert sorted(handed) == ["announce-me", "mark-landed"]  # on to archival, here
        phases = ledger.phases_among(["announce-me", "mark-landed", "mark-lost"])
        assert phases == {"announce-me": "announced", "mark-landed": "announced"}  # the lost intent is dropped
        assert {r.owner for r in ledger.records_among(["announce-me", "mark-landed"]).values()} == {"alive"}
        detector.take_over(mono=2.0)
        assert len([p for p in published if p[0] is EventType.RUN_COMPLETED]) == 2  # taken once
    finally:
        connection.close()
        engine.dispose()
        membership.leave()


def test_a_run_another_daemon_finished_is_never_reopened_nor_announced_here(
    stores: tuple[MonitorStore, MonitorStore], postgres_url: str
) -> None:
    other_store, store = stores
    other = Ledger(other_store)
    other.begin_marks({"announce-me": "COMPLETED"})
    other.complete_many([Completion("announce-me", "COMPLETED", "monitor", {"SUCCEEDED": 1}, "rows")])
    other.announce_many(["announce-me"])
    published: list[tuple[EventType, str | None, dict]] = []
    completions = Completions(
        ledger=Ledger(store),
        publish=lambda type, data, *, run_id=None: published.append((type, run_id, data)),
        flush=lambda: None,
        handoff=NoHandoff(),
        tables=reference_tables(),
    )
    # This daemon read the run open just before the other one marked it (its view of who owns what lagged).
    completions.prefetch(["announce-me"])
    completions.observe_open("announce-me", "RUNNING")
    snapshot = RunSnapshot("announce-me", "COMPLETED", {"SUCCEEDED": 1}, {}, ("rows",))
    assert completions.finish([End(snapshot, "COMPLETED", "monitor", previous="RUNNING")], mono=0.0) == []
    completions.commit()
    assert published == []  # no RUN_REOPENED, no RUN_STATUS_CHANGED, no second RUN_COMPLETED
    assert other.phase("announce-me") == "announced"  # the other daemon's record is as it left it
