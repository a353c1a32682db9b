"""Which rules an event's facts match, and the throttle that turns a storm into one summary: pure decisions.

A rule's empty list matches anything; a non-empty one must meet the facts: the event's type
always, the run's status, any failed task's tool or error type, the run's name (a glob; the
run id when it has no name), the safe mode's reason, the escalation's severity. Facts the
event does not have never match a non-empty list (a status rule does not fire on a safe mode).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from ..config import AlertRule
from ..events.types import EventType

SUMMARY_RUNS_SHOWN = 20  # a storm's summary names this many of the runs it stands for


@dataclass(frozen=True)
class AlertFacts:
    """What an alert may say and a rule may match, taken from one event (and the run's failed tasks)."""

    event_type: str
    time: str
    key: str  # what de-duplicates: the run id for run events, else the event's id
    run_id: str | None = None
    run_name: str | None = None
    status: str | None = None
    safe_mode: str | None = None
    severity: str = "warning"
    summary: str = ""
    detail: str = ""
    failed_tasks: tuple[dict[str, Any], ...] = ()
    tasks: dict[str, int] = field(default_factory=dict)

    def context(self) -> dict[str, Any]:
        """The template's variables."""
        return {
            "event_type": self.event_type,
            "time": self.time,
            "run_id": self.run_id,
            "run_name": self.run_name,
            "status": self.status,
            "safe_mode": self.safe_mode,
            "severity": self.severity,
            "summary": self.summary,
            "detail": self.detail,
            "failed_tasks": list(self.failed_tasks),
            "failed_task": self.failed_tasks[0] if self.failed_tasks else None,
            "tasks": self.tasks,
        }


def check_rules(rules: Sequence[AlertRule]) -> str | None:
    """What is wrong with the rules' event types, or None."""
    for rule in rules:
        unknown = [name for name in rule.events if name not in EventType.__members__]
        if unknown:
            return f"alerts.rules {rule.name!r}: unknown event type {', '.join(unknown)}"
    return None


def rule_matches(rule: AlertRule, facts: AlertFacts) -> bool:
    if facts.event_type not in rule.events:
        return False
    tools = {task.get("tool") for task in facts.failed_tasks}
    error_types = {task.get("error_type") for task in facts.failed_tasks}
    return (
        _among(rule.statuses, {facts.status})
        and _among(rule.tools, tools)
        and _among(rule.error_types, error_types)
        and _among(rule.safe_modes, {facts.safe_mode})
        and _among(rule.severities, {facts.severity})
        and (rule.run_name == "*" or fnmatchcase(facts.run_name or facts.run_id or "", rule.run_name))
    )


def _among(wanted: list[str], present: set[str | None]) -> bool:
    return not wanted or any(value in present for value in wanted)


@dataclass
class _Window:
    started: float
    sent: int = 0
    held: list[str] = field(default_factory=list)  # keys of the alerts the window held back


@dataclass(frozen=True)
class Held:
    """An alert the throttle held back: the window's summary now stands for `count` of them."""

    window_started: float
    window_ends: float
    count: int
    keys: tuple[str, ...]  # the first SUMMARY_RUNS_SHOWN


class Throttle:
    """Per rule, at most `throttle_count` alerts per `throttle_seconds` window (starting at its first alert);
    `admit` returns None to send, or the window's summary so far."""

    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}

    def admit(self, rule: AlertRule, key: str, now: float) -> Held | None:
        window = self._windows.get(rule.name)
        if window is None or now - window.started >= rule.throttle_seconds:
            window = self._windows[rule.name] = _Window(now)
        if window.sent < rule.throttle_count:
            window.sent += 1
            return None
        window.held.append(key)
        return Held(
            window.started,
            window.started + rule.throttle_seconds,
            len(window.held),
            tuple(window.held[:SUMMARY_RUNS_SHOWN]),
        )
