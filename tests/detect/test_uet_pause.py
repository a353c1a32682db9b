"""The `uet` engine writes a run's steps one at a time and ends the run itself: between two steps every attempt
is terminal. Its mapping's default settle window keeps the monitor from marking a live run in that pause, and
still marks a run whose engine died."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from executor_support import UetExecutor, create_database
from orchestrator_monitor.config import load_settings
from orchestrator_monitor.detect.completions import NoHandoff
from orchestrator_monitor.detect.detector import Detector
from orchestrator_monitor.events.types import EventType
from orchestrator_monitor.ledger.runs import Ledger
from orchestrator_monitor.ledger.store import sqlite_store
from orchestrator_monitor.state.access import StateDatabase, open_state, settle_seconds

NOW = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
PAUSE_SECONDS = 120.0  # a retry's back-off, a slow tool start: far longer than any pause between commits


class Uet:
    """A detector on a uet database, configured as the daemon would be (no settle window of our own)."""

    def __init__(self, root: Path) -> None:
        self.db = root / ".state" / "orchestration.db"
        create_database(self.db, "uet")
        self.engine = UetExecutor(self.db)
        settings = load_settings(root, environ={}, overrides=["database.schema=uet"])
        self.state: StateDatabase = open_state(settings, readonly=False)
        self.settle = settle_seconds(settings, self.state.mapping)
        self.connection = self.state.engine.connect()
        self.store = sqlite_store(root / ".monitor" / "monitor.db", busy_timeout_seconds=1)
        self.ledger = Ledger(self.store)
        self.events: list[tuple[EventType, str | None, dict[str, object]]] = []
        self.detector = Detector(
            ledger=self.ledger,
            publish=lambda type, data, *, run_id=None: self.events.append((type, run_id, data)),
            flush=lambda: None,
            handoff=NoHandoff(),
            settle_seconds=self.settle,
            stall_after_seconds=3600,
            connection=lambda: self.connection,
            tables=self.state.tables,
        )
        self.detector.start()
        self.detector.run_reconcile_iteration(now=NOW, mono=0.0)

    def detect(self, mono: float) -> None:
        self.detector.run_detect_iteration(now=NOW, mono=mono)

    def completed(self) -> dict[str | None, dict[str, object]]:
        return {run_id: data for type, run_id, data in self.events if type is EventType.RUN_COMPLETED}

    def close(self) -> None:
        self.connection.close()
        self.state.dispose()
        self.store.dispose()


@pytest.fixture
def uet(tmp_path: Path) -> Iterator[Uet]:
    harness = Uet(tmp_path)
    yield harness
    harness.close()


def test_the_uet_default_settle_window_outlasts_a_pause_between_steps(uet: Uet) -> None:
    assert uet.settle == 900.0  # from the mapping: completion.settle_seconds is not configured
    uet.engine.start_run("live")
    uet.engine.run_step("live", 0, "lint", ["succeeded"])  # step 0 done, step 1 not written yet
    uet.detect(mono=1.0)
    uet.detect(mono=1.0 + PAUSE_SECONDS)  # every attempt terminal, the engine between steps
    assert uet.engine.state("live") == "running" and not uet.completed()
    attempt = uet.engine.start_step("live", 1, "test")  # the engine goes on
    uet.detect(mono=2.0 + PAUSE_SECONDS)
    uet.engine.end_step(attempt, "succeeded")
    uet.engine.end_run("live", "succeeded")
    uet.detect(mono=3.0 + PAUSE_SECONDS)
    assert uet.completed()["live"] == {"status": "COMPLETED", "marked_by": "executor", "tasks": {"SUCCEEDED": 2}}


def test_a_run_whose_uet_engine_died_is_marked_once_the_window_passed(uet: Uet) -> None:
    uet.engine.start_run("orphaned")
    uet.engine.run_step("orphaned", 0, "lint", ["succeeded"])
    uet.engine.run_step("orphaned", 1, "test", ["failed", "failed"])  # then the engine died
    uet.detect(mono=1.0)
    uet.detect(mono=uet.settle - 1.0)
    assert uet.engine.state("orphaned") == "running"
    uet.detect(mono=uet.settle + 1.0)
    assert uet.completed()["orphaned"] == {"status": "PARTIAL", "marked_by": "monitor",
                                           "tasks": {"FAILED": 1, "SUCCEEDED": 1}}  # fmt: skip
    assert uet.engine.state("orphaned") == "failed"  # its CHECK constraint has no partial
