"""Which rules match which facts, and the throttle's windows: plain data in, decisions out."""

from __future__ import annotations

import pytest
from orchestrator_monitor.alerts.rules import AlertFacts, Throttle, check_rules, rule_matches
from orchestrator_monitor.config import AlertRule

FAILED_RUN = AlertFacts(
    event_type="RUN_COMPLETED",
    time="2026-12-01T00:00:00Z",
    key="nightly-7",
    run_id="nightly-7",
    run_name="nightly build",
    status="FAILED",
    severity="error",
    failed_tasks=({"task_id": "t1", "tool": "pytest", "error_type": "Timeout", "error_message": "took too long"},),
)


@pytest.mark.parametrize(
    ("wanted", "matches"),
    [
        ({}, True),
        ({"statuses": ["FAILED", "PARTIAL"]}, True),
        ({"statuses": ["COMPLETED"]}, False),
        ({"tools": ["pytest"]}, True),
        ({"tools": ["make"]}, False),
        ({"error_types": ["Timeout"]}, True),
        ({"error_types": ["OOM"]}, False),
        ({"run_name": "nightly*"}, True),
        ({"run_name": "weekly*"}, False),
        ({"severities": ["error"]}, True),
        ({"severities": ["critical"]}, False),
        ({"safe_modes": ["database_read_only"]}, False),  # a run's end has no safe mode
        ({"events": ["ESCALATION"]}, False),
    ],
)
def test_each_condition_must_hold_and_an_empty_one_matches_anything(wanted: dict[str, object], matches: bool) -> None:
    assert rule_matches(AlertRule(name="r", **wanted), FAILED_RUN) is matches  # type: ignore[arg-type]


def test_a_run_without_a_name_is_matched_by_its_id() -> None:
    facts = AlertFacts(event_type="RUN_COMPLETED", time="t", key="r-1", run_id="r-1", status="FAILED")
    assert rule_matches(AlertRule(name="r", run_name="r-*"), facts)


def test_an_unknown_event_type_is_named() -> None:
    assert check_rules([AlertRule(name="ok", events=["RUN_COMPLETED", "ESCALATION"])]) is None
    assert (
        check_rules([AlertRule(name="typo", events=["RUN_FAILED"])])
        == "alerts.rules 'typo': unknown event type RUN_FAILED"
    )


def test_the_throttle_sends_its_count_per_window_then_summarises_the_rest() -> None:
    rule = AlertRule(name="r", throttle_count=2, throttle_seconds=60)
    throttle = Throttle()
    assert throttle.admit(rule, "a", 0.0) is None
    assert throttle.admit(rule, "b", 1.0) is None
    held = throttle.admit(rule, "c", 2.0)
    assert held is not None and (held.count, held.keys, held.window_ends) == (1, ("c",), 60.0)
    held = throttle.admit(rule, "d", 59.0)
    assert held is not None and (held.count, held.keys) == (2, ("c", "d"))
    assert throttle.admit(rule, "e", 60.0) is None  # a new window
    other = AlertRule(name="other", throttle_count=1)
    assert throttle.admit(other, "a", 60.0) is None  # windows are per rule
