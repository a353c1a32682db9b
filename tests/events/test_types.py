from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import orjson
import pytest
from events_support import MemorySeqBlocks, bus_with_log, read_objects
from orchestrator_monitor.events.bus import Bus
from orchestrator_monitor.events.stamps import EventStamper
from orchestrator_monitor.events.types import ONCE_PER_RUN, REQUIRED_DATA, RUN_SCOPED, EventType, decode_event
from orchestrator_monitor.ledger.monitor_db import EventSeqBlocks
from orchestrator_monitor.ledger.store import sqlite_store
from support import REPO

SCHEMA = json.loads((REPO / "schema" / "events.schema.json").read_text(encoding="utf-8"))
ULID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")
SPEC_TYPES = {  # the spec's table, copied: the code must not drift from it
    "MONITOR_STARTED": {"version", "pid", "workspace"},
    "MONITOR_STOPPED": {"version", "pid", "workspace"},
    "HEARTBEAT": {"uptime_s", "safe_mode"},
    "HEALTH_CHANGED": {"check", "from", "to", "detail"},
    "RUN_STATUS_CHANGED": {"from", "to"},
    "RUN_COMPLETED": {"status", "marked_by", "tasks"},
    "RUN_STALLED": {"idle_s"},
    "RUN_REOPENED": {"what"},
    "ARCHIVE_STARTED": {"archive_path"},
    "RUN_ARCHIVED": {"archive_path", "files", "bytes", "seconds", "manifest_sha256"},
    "ARCHIVE_FAILED": {"reason", "detail"},
    "ARCHIVE_CORRUPT": {"archive_path", "problems"},  # issue 17: a fixity audit found a bag changed
    "ARCHIVE_OFFLOADED": {"archive_path", "target", "location", "files", "bytes"},  # issue 17: offload
    "OFFLOAD_FAILED": {"target", "reason", "detail"},
    "RUN_PRUNED": {"run_dir", "files", "bytes", "kept", "why"},  # issue 17: retention
    "ARCHIVE_PRUNED": {"archive_path", "bytes", "why"},
    "RETENTION_HELD": {"target", "reason", "detail"},
    "REPORT_GENERATED": {"paths"},
    "REPORT_FAILED": {"reason", "detail"},
    "SAFE_MODE_ENTERED": {"reason"},
    "SAFE_MODE_EXITED": {"reason"},
    "ESCALATION": {"trigger", "severity", "detail"},
    "WARNING": {"what", "detail"},
}


def test_every_type_of_the_spec_with_its_data_keys() -> None:
    assert {str(t): set(keys) for t, keys in REQUIRED_DATA.items()} == SPEC_TYPES
    assert set(EventType) == set(REQUIRED_DATA)


def test_every_event_type_and_a_log_record_validate_against_the_schema(tmp_path: Path) -> None:
    import logging

    from orchestrator_monitor.events.logrecords import BusLogHandler

    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    bus, sink = bus_with_log(tmp_path / "monitor.jsonl")
    for event_type, keys in REQUIRED_DATA.items():
        bus.publish(event_type, dict.fromkeys(keys, 1), run_id="run-7" if event_type in RUN_SCOPED else None)
    record = logging.LogRecord("orchestrator_monitor.test", logging.WARNING, __file__, 1, "disk %s", ("full",), None)
    BusLogHandler(bus).handle(record)
    bus.close()
    lines = read_objects(sink.path)
    assert len(lines) == len(REQUIRED_DATA) + 1
    for line in lines:
        jsonschema.validate(line, SCHEMA)
    assert lines[-1] | {"time": None} == {
        "time": None,
        "type": "log",
        "seq": len(REQUIRED_DATA) + 1,
        "level": "WARNING",
        "logger": "orchestrator_monitor.test",
        "message": "disk full",
    }


def test_the_schema_rejects_an_event_without_its_data_keys() -> None:
    line = {"time": "2026-01-01T00:00:00.000Z", "type": "RUN_ARCHIVED", "seq": 3, "id": "r:RUN_ARCHIVED"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**line, "run_id": "r", "data": {"archive_path": "x"}}, SCHEMA)


def test_ids_once_per_run_are_stable_and_others_are_increasing_ulids(tmp_path: Path) -> None:
    bus, sink = bus_with_log(tmp_path / "monitor.jsonl")
    bus.publish(EventType.RUN_REOPENED, {"what": "task t1 changed"}, run_id="run-1")
    for n in range(2000):
        bus.publish(EventType.HEARTBEAT, {"uptime_s": n, "safe_mode": False})
    bus.close()
    once, *others = read_objects(sink.path)
    assert once["id"] == "run-1:RUN_REOPENED" and EventType.RUN_REOPENED in ONCE_PER_RUN
    ids = [line["id"] for line in others]
    assert all(ULID.fullmatch(event_id) for event_id in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_time_is_rfc3339_utc_with_microseconds() -> None:
    stamper = EventStamper(clock_ns=lambda: 1_767_225_600_123_456_789)  # 2026-01-01T00:00:00.123456Z
    time_text, ulid = stamper.stamp()
    assert time_text == "2026-01-01T00:00:00.123456Z"
    millisecond, expected = 1_767_225_600_123, ""
    for _ in range(10):  # the ULID's first 10 characters: the 48-bit millisecond time, Crockford base32
        millisecond, digit = divmod(millisecond, 32)
        expected = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"[digit] + expected
    assert ulid[:10] == expected


def test_ids_within_one_millisecond_keep_increasing_past_the_cached_part() -> None:
    stamper = EventStamper(clock_ns=lambda: 1_767_225_600_123_456_789)  # every stamp in the same microsecond
    stamps = [stamper.stamp() for _ in range(5000)]  # the last two characters wrap around several times
    ids = [ulid for _, ulid in stamps]
    assert all(ULID.fullmatch(ulid) for ulid in ids) and ids == sorted(set(ids))
    assert {time_text for time_text, _ in stamps} == {"2026-01-01T00:00:00.123456Z"}


def test_a_clock_set_back_shows_in_the_times_but_never_in_the_ids() -> None:
    clock = iter([1_767_225_600_123_456_789, 1_767_225_599_999_000_000, 1_767_225_601_500_000_000])
    stamper = EventStamper(clock_ns=lambda: next(clock))
    stamps = [stamper.stamp() for _ in range(3)]
    assert [time_text for time_text, _ in stamps] == [
        "2026-01-01T00:00:00.123456Z",
        "2025-12-31T23:59:59.999000Z",
        "2026-01-01T00:00:01.500000Z",
    ]
    ids = [ulid for _, ulid in stamps]
    assert ids == sorted(set(ids))  # the ids never go back with the clock


def test_a_missing_data_key_or_run_id_is_a_programming_error(tmp_path: Path) -> None:
    bus, sink = bus_with_log(tmp_path / "monitor.jsonl")
    with pytest.raises(ValueError, match="RUN_ARCHIVED event without data bytes, files"):
        bus.publish(EventType.RUN_ARCHIVED, {"archive_path": "a", "seconds": 1, "manifest_sha256": "x"}, run_id="run-1")
    with pytest.raises(ValueError, match="needs a run_id"):
        bus.publish(EventType.RUN_STALLED, {"idle_s": 3})
    with pytest.raises(ValueError, match="invalid run id"):
        bus.publish(EventType.RUN_STALLED, {"idle_s": 3}, run_id="../etc")
    with pytest.raises(TypeError):
        bus.publish(EventType.RUN_STALLED, {"idle_s": object()}, run_id="run-1")
    bus.close()
    assert read_objects(sink.path) == []


def test_seq_increases_strictly_across_restarts_and_crashes(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path / ".monitor" / "monitor.db", busy_timeout_seconds=5)
    seen: list[int] = []
    for crash in (False, True, False):
        bus = Bus(EventSeqBlocks(store), seq_block_size=50)
        seen += [bus.publish(EventType.HEARTBEAT, {"uptime_s": 1, "safe_mode": False}) for _ in range(120)]
        if not crash:  # a crash never gives the rest of its block back: a gap, never a repeat
            bus.close()
    assert seen == sorted(set(seen))
    assert seen[:121] == list(range(1, 122)) and seen[240] > seen[239] + 1


def test_a_clean_stop_gives_back_the_unused_numbers() -> None:
    blocks = MemorySeqBlocks()
    bus = Bus(blocks, seq_block_size=10)
    for _ in range(3):
        bus.publish(EventType.HEARTBEAT, {"uptime_s": 1, "safe_mode": False})
    bus.close()
    assert blocks.released == [range(4, 11)]


def test_a_line_decodes_back_to_the_event(tmp_path: Path) -> None:
    bus, sink = bus_with_log(tmp_path / "monitor.jsonl")
    subscription = bus.subscribe()
    data = {"status": "PARTIAL", "marked_by": "monitor", "tasks": {}}
    for run_id in ("r", None):  # with and without run_id: the bus encodes both lines without the Event
        bus.publish(
            EventType.RUN_COMPLETED if run_id else EventType.WARNING, data | {"what": "w", "detail": ""}, run_id=run_id
        )
    bus.close()
    events = list(subscription)
    lines = [orjson.loads(line) for line in sink.path.read_bytes().splitlines()]
    assert [decode_event(line) for line in lines] == events and len(events) == 2
    assert lines == [event.to_json() for event in events]
