"""Event types and the event record: the one place that lists every type and what its `data` holds.

The table mirrors the spec ("Events and logs/monitor.jsonl"); `schema/events.schema.json`
says the same for readers in other languages and the tests keep the two in step. A
publisher that leaves out a required key has a bug, so `check_event` raises `ValueError`
at publish time instead of letting a half-empty event reach the log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import orjson


class EventType(StrEnum):
    MONITOR_STARTED = "MONITOR_STARTED"
    MONITOR_STOPPED = "MONITOR_STOPPED"
    HEARTBEAT = "HEARTBEAT"
    HEALTH_CHANGED = "HEALTH_CHANGED"
    RUN_STATUS_CHANGED = "RUN_STATUS_CHANGED"
    RUN_COMPLETED = "RUN_COMPLETED"
    RUN_STALLED = "RUN_STALLED"
    RUN_REOPENED = "RUN_REOPENED"
    ARCHIVE_STARTED = "ARCHIVE_STARTED"
    RUN_ARCHIVED = "RUN_ARCHIVED"
    ARCHIVE_FAILED = "ARCHIVE_FAILED"
    ARCHIVE_CORRUPT = "ARCHIVE_CORRUPT"  # a fixity audit found a published bag no longer matching its manifest
    ARCHIVE_OFFLOADED = "ARCHIVE_OFFLOADED"  # every file of a bag confirmed at an offload target
    OFFLOAD_FAILED = "OFFLOAD_FAILED"  # a bag not (yet) at an offload target: retried next pass, the local bag kept
    RUN_PRUNED = "RUN_PRUNED"  # retention deleted the run directory's files (each one re-verified in its bag)
    ARCHIVE_PRUNED = "ARCHIVE_PRUNED"  # retention deleted a local bag whose offloaded copy was confirmed
    RETENTION_HELD = "RETENTION_HELD"  # retention refused a deletion its policies allow (once per run and reason)
    REPORT_GENERATED = "REPORT_GENERATED"
    REPORT_FAILED = "REPORT_FAILED"
    SAFE_MODE_ENTERED = "SAFE_MODE_ENTERED"
    SAFE_MODE_EXITED = "SAFE_MODE_EXITED"
    ESCALATION = "ESCALATION"
    WARNING = "WARNING"  # the spec's "a warning event once" (unknown status, orphan task, log disk full)

    # Enum hashes by name in Python code; the str hash (same value: the name) is a C call, and
    # every publish looks types up in several sets.
    __hash__ = str.__hash__


LOG_TYPE = "log"  # the `type` of a logging record's line; not an event

REQUIRED_DATA: dict[EventType, frozenset[str]] = {
    EventType.MONITOR_STARTED: frozenset({"version", "pid", "workspace"}),
    EventType.MONITOR_STOPPED: frozenset({"version", "pid", "workspace"}),
    EventType.HEARTBEAT: frozenset({"uptime_s", "safe_mode"}),
    EventType.HEALTH_CHANGED: frozenset({"check", "from", "to", "detail"}),
    EventType.RUN_STATUS_CHANGED: frozenset({"from", "to"}),
    EventType.RUN_COMPLETED: frozenset({"status", "marked_by", "tasks"}),
    EventType.RUN_STALLED: frozenset({"idle_s"}),
    EventType.RUN_REOPENED: frozenset({"what"}),
    EventType.ARCHIVE_STARTED: frozenset({"archive_path"}),
    EventType.RUN_ARCHIVED: frozenset({"archive_path", "files", "bytes", "seconds", "manifest_sha256"}),
    EventType.ARCHIVE_FAILED: frozenset({"reason", "detail"}),
    EventType.ARCHIVE_CORRUPT: frozenset({"archive_path", "problems"}),
    EventType.ARCHIVE_OFFLOADED: frozenset({"archive_path", "target", "location", "files", "bytes"}),
    EventType.OFFLOAD_FAILED: frozenset({"target", "reason", "detail"}),
    EventType.RUN_PRUNED: frozenset({"run_dir", "files", "bytes", "kept", "why"}),
    EventType.ARCHIVE_PRUNED: frozenset({"archive_path", "bytes", "why"}),
    EventType.RETENTION_HELD: frozenset({"target", "reason", "detail"}),
    EventType.REPORT_GENERATED: frozenset({"paths"}),
    EventType.REPORT_FAILED: frozenset({"reason", "detail"}),
    EventType.SAFE_MODE_ENTERED: frozenset({"reason"}),
    EventType.SAFE_MODE_EXITED: frozenset({"reason"}),
    EventType.ESCALATION: frozenset({"trigger", "severity", "detail"}),
    EventType.WARNING: frozenset({"what", "detail"}),
}

ONCE_PER_RUN: frozenset[EventType] = frozenset(
    {
        EventType.RUN_COMPLETED,
        EventType.RUN_REOPENED,
        EventType.ARCHIVE_STARTED,
        EventType.RUN_ARCHIVED,
        EventType.REPORT_GENERATED,
        EventType.RUN_PRUNED,
        EventType.ARCHIVE_PRUNED,
    }
)
"""Types whose id is `<run_id>:<TYPE>`, so a repeat after a crash is recognisable."""

RUN_SCOPED: frozenset[EventType] = ONCE_PER_RUN | {
    EventType.RUN_STATUS_CHANGED,
    EventType.RUN_STALLED,
    EventType.ARCHIVE_FAILED,
    EventType.ARCHIVE_CORRUPT,
    EventType.ARCHIVE_OFFLOADED,
    EventType.OFFLOAD_FAILED,
    EventType.RETENTION_HELD,
    EventType.REPORT_FAILED,
}
"""Types that make no sense without a `run_id`; others may carry one (a WARNING about a run)."""

ARCHIVAL_TYPES: frozenset[EventType] = frozenset(
    {EventType.ARCHIVE_STARTED, EventType.RUN_ARCHIVED, EventType.ARCHIVE_FAILED}
)
"""Also written to `logs/archival.jsonl`."""


@dataclass(frozen=True, slots=True)
class Event:
    """One published event; `time` is RFC 3339 UTC with microseconds, `run_id` None when not run-scoped."""

    seq: int
    time: str
    type: EventType
    id: str
    data: Mapping[str, Any]
    run_id: str | None = None
    daemon: str | None = None  # the id of the daemon that published it (`cluster.daemon_id`)

    def to_json(self) -> dict[str, Any]:
        """The line's object: `run_id` only on run-scoped lines, as the spec words it; `daemon` when known."""
        obj: dict[str, Any] = {"time": self.time, "type": self.type, "seq": self.seq, "id": self.id}
        if self.run_id is not None:
            obj["run_id"] = self.run_id
        obj["data"] = self.data
        if self.daemon is not None:
            obj["daemon"] = self.daemon
        return obj


class Publish(Protocol):
    """How the rest of the daemon publishes: `Bus.publish`, or a recorder in tests."""

    def __call__(self, type: EventType, data: dict[str, Any], *, run_id: str | None = None) -> object: ...


def check_event(type: EventType, data: Mapping[str, Any], run_id: str | None) -> None:
    """Raise `ValueError` for an event the spec does not allow: a publisher's bug, not bad input."""
    required = REQUIRED_DATA[type]
    if not data.keys() >= required:
        missing = ", ".join(sorted(required - data.keys()))
        raise ValueError(f"{type} event without data {missing}")
    if run_id is None and type in RUN_SCOPED:
        raise ValueError(f"{type} event needs a run_id")


def encode_event(event: Event) -> bytes:
    """The event's JSONL line, newline included; `TypeError` when `data` holds something not JSON.

    `Bus.publish` builds the same line from the fields, without an `Event` (tests check both agree).
    """
    return orjson.dumps(event.to_json(), option=orjson.OPT_APPEND_NEWLINE)


def decode_event(obj: Mapping[str, Any]) -> Event:
    """An `Event` from a parsed line; `ValueError`/`KeyError` when the line is not an event."""
    return Event(
        seq=int(obj["seq"]),
        time=str(obj["time"]),
        type=EventType(obj["type"]),
        id=str(obj["id"]),
        data=dict(obj["data"]),
        run_id=obj.get("run_id"),
        daemon=obj.get("daemon"),
    )
