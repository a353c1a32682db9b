"""`Ledger.publish_bag`: a bag goes out in the transaction that records it, or not at all when the run
changed since its rows were checked; a change after it keeps the bag."""

from __future__ import annotations

from pathlib import Path

import pytest
from orchestrator_monitor.ledger.runs import Completion, Ledger
from orchestrator_monitor.ledger.store import sqlite_store


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    ledger = Ledger(sqlite_store(tmp_path / "monitor.db", busy_timeout_seconds=5))
    ledger.begin_marks({"r": "COMPLETED"})
    ledger.complete_many([Completion("r", "COMPLETED", "monitor", {"SUCCEEDED": 2}, "rows-1")])
    ledger.announce_many(["r"])
    return ledger


class Rename:
    def __init__(self, fails: bool = False) -> None:
        self.calls = 0
        self.fails = fails

    def __call__(self) -> None:
        self.calls += 1
        if self.fails:
            raise OSError("No space left on device")


def test_a_bag_is_published_and_recorded_together_and_a_later_change_keeps_it(ledger: Ledger) -> None:
    rename = Rename()
    assert ledger.publish_bag("r", "rows-1", rename) and rename.calls == 1
    assert ledger.phase("r") == "published"
    assert "r" in ledger.active_records() and ledger.runs_in_phase("published") == ["r"]  # RUN_ARCHIVED still owed
    assert ledger.reopen("r") == (True, "published")  # RUN_REOPENED once; not waiting for another end
    assert ledger.reopened_runs() == []
    assert ledger.archived("r", "COMPLETED") and ledger.phase("r") == "archived"


def test_a_run_reopened_or_completed_anew_since_its_check_is_not_published(ledger: Ledger) -> None:
    rename = Rename()
    assert not ledger.publish_bag("r", "rows-0", rename)  # completed anew on other rows meanwhile
    ledger.reopen("r")
    assert not ledger.publish_bag("r", "rows-1", rename)
    assert rename.calls == 0 and ledger.phase("r") == "reopened"


def test_a_rename_that_fails_records_nothing(ledger: Ledger) -> None:
    with pytest.raises(OSError, match="No space"):
        ledger.publish_bag("r", "rows-1", Rename(fails=True))
    assert ledger.phase("r") == "announced"


def test_a_run_the_ledger_does_not_know_is_published_and_recorded_by_archived_alone(ledger: Ledger) -> None:
    assert ledger.publish_bag("by-a-command", None, Rename())
    assert ledger.phase("by-a-command") is None
    assert ledger.archived("by-a-command", "FAILED") and ledger.phase("by-a-command") == "archived"
