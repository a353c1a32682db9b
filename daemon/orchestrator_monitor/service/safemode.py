"""Safe mode and escalation as a pure state machine over plain data, following the spec's table.

Every check reports an `Observation`: which check, its `Condition`, a detail. `observe`
folds one into the `HealthState` and returns the events that the change calls for:

  condition                       effect
  database read_only              safe mode database_read_only (marks and archival_log writes wait)
  archival storage full           safe mode archive_storage_full (archival waits)
  monitoring loop                 safe mode monitoring_loop (slow polling; the detection job does that)
  database unreachable            no safe mode: unhealthy, HEALTH_CHANGED only
  database corrupt, storage       ESCALATION once per incident, again every repeat_seconds while
  unavailable, report failed,     it lasts; the incident ends when the check passes again
  a bag the fixity audit found
  corrupt

No I/O and no clock here: the caller passes `now` (monotonic) and publishes the effects, so
every transition is testable with plain values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from ..events.types import EventType


class Condition(StrEnum):
    OK = "ok"
    READ_ONLY = "read_only"
    UNREACHABLE = "unreachable"
    CORRUPT = "corrupt"
    FULL = "full"
    UNAVAILABLE = "unavailable"
    STALE = "stale"
    LOOP = "loop"
    FAILED = "failed"
    UNKNOWN = "unknown"  # not observed yet


SAFE_MODES: Mapping[Condition, str] = MappingProxyType(
    {
        Condition.READ_ONLY: "database_read_only",
        Condition.FULL: "archive_storage_full",
        Condition.LOOP: "monitoring_loop",
    }
)
ESCALATIONS: Mapping[tuple[str, Condition], tuple[str, str]] = MappingProxyType(
    {
        ("db_connection_check", Condition.CORRUPT): ("database_corrupt", "critical"),
        ("archival_storage_check", Condition.UNAVAILABLE): ("archival_storage_unavailable", "critical"),
        ("report_generation", Condition.FAILED): ("report_generation_failed", "error"),
        ("fixity_audit", Condition.CORRUPT): ("archive_corrupt", "critical"),
    }
)
MARKS_WAIT = "database_read_only"
ARCHIVAL_WAITS = "archive_storage_full"


@dataclass(frozen=True, slots=True)
class Observation:
    check: str
    condition: Condition
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Effect:
    """An event to publish."""

    type: EventType
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Incident:
    trigger: str
    severity: str
    detail: str
    since: float
    last_sent: float
    sent: int


@dataclass(frozen=True, slots=True)
class HealthState:
    checks: Mapping[str, Observation] = field(default_factory=dict)
    safe_modes: frozenset[str] = frozenset()
    incidents: Mapping[str, Incident] = field(default_factory=dict)

    @property
    def passing(self) -> bool:
        """Every check observed so far passes (safe mode is a failing check, so it is not passing)."""
        return all(o.condition is Condition.OK for o in self.checks.values())

    @property
    def marks_allowed(self) -> bool:
        """Completion marks and `archival_log` writes go on (the database is writable)."""
        return MARKS_WAIT not in self.safe_modes

    @property
    def archival_allowed(self) -> bool:
        return ARCHIVAL_WAITS not in self.safe_modes and "archival_storage_unavailable" not in self.incidents


def observe(
    state: HealthState, seen: Observation, now: float, repeat_seconds: float
) -> tuple[HealthState, list[Effect]]:
    """Fold one observation in; return the new state and the events it calls for, in order."""
    effects: list[Effect] = []
    before = state.checks.get(seen.check)
    was = before.condition if before is not None else Condition.UNKNOWN
    if was is not seen.condition:
        effects.append(
            Effect(
                EventType.HEALTH_CHANGED,
                {"check": seen.check, "from": str(was), "to": str(seen.condition), "detail": seen.detail},
            )
        )
    checks = {**state.checks, seen.check: seen}
    modes = frozenset(SAFE_MODES[o.condition] for o in checks.values() if o.condition in SAFE_MODES)
    for reason in sorted(modes - state.safe_modes):
        effects.append(Effect(EventType.SAFE_MODE_ENTERED, {"reason": reason, "detail": seen.detail}))
    for reason in sorted(state.safe_modes - modes):
        effects.append(Effect(EventType.SAFE_MODE_EXITED, {"reason": reason}))
    incidents = dict(state.incidents)
    for (check, condition), (trigger, severity) in ESCALATIONS.items():
        if check != seen.check:
            continue
        if seen.condition is condition and trigger not in incidents:
            incidents[trigger] = Incident(trigger, severity, seen.detail, now, now, 1)
            effects.append(_escalation(incidents[trigger], now))
        elif seen.condition is not condition:
            incidents.pop(trigger, None)
    state = HealthState(checks, modes, incidents)
    state, repeats = repeat_escalations(state, now, repeat_seconds)
    return state, effects + repeats


def repeat_escalations(state: HealthState, now: float, repeat_seconds: float) -> tuple[HealthState, list[Effect]]:
    """Incidents still open after `repeat_seconds` since they were last sent: send them again."""
    effects: list[Effect] = []
    incidents = dict(state.incidents)
    for trigger, incident in state.incidents.items():
        if now - incident.last_sent >= repeat_seconds:
            incidents[trigger] = replace(incident, last_sent=now, sent=incident.sent + 1)
            effects.append(_escalation(incidents[trigger], now))
    if not effects:
        return state, []
    return replace(state, incidents=incidents), effects


def _escalation(incident: Incident, now: float) -> Effect:
    return Effect(
        EventType.ESCALATION,
        {
            "trigger": incident.trigger,
            "severity": incident.severity,
            "detail": incident.detail,
            "repeat": incident.sent - 1,
            "open_s": round(now - incident.since, 3),
        },
    )
