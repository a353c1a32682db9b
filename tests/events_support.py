"""Helpers for the bus and sink tests: an in-memory seq source, sinks with test settings, reading lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from orchestrator_monitor.events.bus import Bus
from orchestrator_monitor.events.sinks.jsonl import JsonlSink
from orchestrator_monitor.events.types import EventType

STATUS = {"from": "PENDING", "to": "RUNNING"}


class MemorySeqBlocks:
    """Hands out blocks like `ledger/monitor_db.py` `EventSeqBlocks`, without a database."""

    def __init__(self) -> None:
        self.next = 1
        self.released: list[range] = []

    def reserve(self, count: int) -> range:
        block = range(self.next, self.next + count)
        self.next += count
        return block

    def release(self, unused: range) -> None:
        self.released.append(unused)


def jsonl_sink(path: Path, **options: Any) -> JsonlSink:
    settings: dict[str, Any] = {
        "logs": True,
        "rotate_bytes": 64 << 20,
        "keep_files": 5,
        "queue_size": 1000,
        "fsync": "never",
    }
    settings.update(options)
    return JsonlSink(path, **settings)


def bus_with_log(path: Path, **options: Any) -> tuple[Bus, JsonlSink]:
    bus = Bus(MemorySeqBlocks(), seq_block_size=100)
    sink = jsonl_sink(path, **options)
    bus.add_sink(sink)
    return bus, sink


def status_event(bus: Bus, run_id: str = "run-1", **data: Any) -> int:
    return bus.publish(EventType.RUN_STATUS_CHANGED, {**STATUS, **data}, run_id=run_id)


def read_objects(*paths: Path) -> list[dict[str, Any]]:
    """Every line of the files in order, each parsed (fails on a torn or invalid line)."""
    objects = []
    for path in paths:
        raw = path.read_bytes()
        assert not raw or raw.endswith(b"\n"), f"{path} ends inside a line"
        objects.extend(orjson.loads(line) for line in raw.splitlines())
    return objects


def log_files(path: Path) -> list[Path]:
    """The rotated files oldest first, then the current one."""
    rotated = sorted(path.parent.glob(path.name + ".*"), key=lambda p: -int(p.suffix[1:]))
    return [*rotated, path] if path.exists() else rotated
