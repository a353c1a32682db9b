"""The safe-mode and escalation machine, one observation at a time with plain values."""

from __future__ import annotations

from orchestrator_monitor.events.types import EventType
from orchestrator_monitor.service.safemode import Condition, HealthState, Observation, observe, repeat_escalations

DB = "db_connection_check"
STORAGE = "archival_storage_check"


def feed(*steps: tuple[Observation, float], repeat: float = 3600.0) -> tuple[HealthState, list[tuple[str, dict]]]:
    state, seen = HealthState(), []
    for observation, now in steps:
        state, effects = observe(state, observation, now, repeat)
        seen += [(str(e.type), dict(e.data)) for e in effects]
    return state, seen


def test_a_read_only_database_enters_safe_mode_and_stops_marks_until_writable() -> None:
    state, seen = feed((Observation(DB, Condition.OK), 0), (Observation(DB, Condition.READ_ONLY, "ro"), 1))
    assert not state.marks_allowed and state.archival_allowed and not state.passing
    assert seen[-2:] == [
        ("HEALTH_CHANGED", {"check": DB, "from": "ok", "to": "read_only", "detail": "ro"}),
        ("SAFE_MODE_ENTERED", {"reason": "database_read_only", "detail": "ro"}),
    ]
    state, effects = observe(state, Observation(DB, Condition.OK), 2, 3600)
    assert state.marks_allowed and state.passing
    assert [e.type for e in effects] == [EventType.HEALTH_CHANGED, EventType.SAFE_MODE_EXITED]


def test_full_storage_stops_archival_only() -> None:
    state, seen = feed((Observation(STORAGE, Condition.FULL, "1 byte free"), 0))
    assert state.marks_allowed and not state.archival_allowed
    assert ("SAFE_MODE_ENTERED", {"reason": "archive_storage_full", "detail": "1 byte free"}) in seen


def test_an_unreachable_database_is_unhealthy_without_safe_mode() -> None:
    state, seen = feed((Observation(DB, Condition.UNREACHABLE, "gone"), 0))
    assert not state.passing and not state.safe_modes and not state.incidents
    assert [t for t, _ in seen] == ["HEALTH_CHANGED"]


def test_corruption_escalates_once_per_incident_and_again_after_the_repeat_time() -> None:
    corrupt = Observation(DB, Condition.CORRUPT, "malformed")
    state, seen = feed((corrupt, 0), (corrupt, 30), (corrupt, 60), repeat=100)
    assert [t for t, _ in seen] == ["HEALTH_CHANGED", "ESCALATION"]
    assert seen[1][1]["trigger"] == "database_corrupt" and seen[1][1]["severity"] == "critical"
    state, effects = repeat_escalations(state, 99, 100)
    assert effects == []
    state, effects = repeat_escalations(state, 100, 100)
    assert [(e.type, e.data["repeat"]) for e in effects] == [(EventType.ESCALATION, 1)]
    state, effects = observe(state, Observation(DB, Condition.OK), 150, 100)
    assert not state.incidents and [e.type for e in effects] == [EventType.HEALTH_CHANGED]
    state, effects = observe(state, corrupt, 160, 100)  # a new incident: escalated at once
    assert [e.type for e in effects] == [EventType.HEALTH_CHANGED, EventType.ESCALATION]


def test_unavailable_storage_and_report_failures_escalate() -> None:
    state, seen = feed(
        (Observation(STORAGE, Condition.UNAVAILABLE, "no root"), 0),
        (Observation("report_generation", Condition.FAILED, "run r: template"), 1),
    )
    triggers = [d["trigger"] for t, d in seen if t == "ESCALATION"]
    assert triggers == ["archival_storage_unavailable", "report_generation_failed"]
    assert not state.archival_allowed


def test_the_monitoring_loop_is_a_safe_mode_of_its_own() -> None:
    state, seen = feed(
        (Observation("monitoring_loop", Condition.LOOP), 0), (Observation("monitoring_loop", Condition.OK), 9)
    )
    assert [(t, d.get("reason")) for t, d in seen if t.startswith("SAFE")] == [
        ("SAFE_MODE_ENTERED", "monitoring_loop"),
        ("SAFE_MODE_EXITED", "monitoring_loop"),
    ]
    assert state.passing
