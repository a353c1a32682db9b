"""Announce, then record: when only the record failed, the retry records without announcing again."""

from __future__ import annotations

import pytest
from orchestrator_monitor.events.once import Unrecorded


def test_a_retry_after_the_record_failed_does_not_announce_again() -> None:
    unrecorded = Unrecorded()
    announced: list[str] = []
    records = iter([ConnectionError("the database went away"), None])

    def record() -> None:
        if (failure := next(records)) is not None:
            raise failure

    with pytest.raises(ConnectionError):
        unrecorded.announce_then_record("run-1", lambda: announced.append("run-1"), record)
    unrecorded.announce_then_record("run-1", lambda: announced.append("run-1"), record)
    assert announced == ["run-1"]


def test_once_recorded_a_run_is_announced_again_when_asked() -> None:
    unrecorded = Unrecorded()
    announced: list[str] = []
    for _ in range(2):  # recorded: the next one is a new announcement
        unrecorded.announce_then_record("run-1", lambda: announced.append("run-1"), lambda: None)
    assert announced == ["run-1", "run-1"]
