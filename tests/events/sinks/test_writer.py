"""The hand-over between publishers and a file sink's writer thread (`events/sinks/writer.py`)."""

from __future__ import annotations

import threading
from pathlib import Path

from events_support import MemorySeqBlocks, read_objects, status_event
from orchestrator_monitor.events.bus import Bus
from orchestrator_monitor.events.sinks.jsonl import JsonlSink
from orchestrator_monitor.events.sinks.writer import CHUNK_LINES
from orchestrator_monitor.events.types import EventType

WAIT_SECONDS = 30.0


class Watched(JsonlSink):
    """A JSONL sink that can be held inside a write, and tells how many lines it wrote."""

    def __init__(self, path: Path, queue_size: int = 1000) -> None:
        super().__init__(path, rotate_bytes=64 << 20, keep_files=5, queue_size=queue_size, fsync="never")
        self.hold = threading.Event()
        self.hold.set()
        self.holding = threading.Event()
        self.lines = 0
        self.changed = threading.Condition()

    def write_batch(self, batch: list[object]) -> None:
        if not self.hold.is_set():
            self.holding.set()
            self.hold.wait(WAIT_SECONDS)
        super().write_batch(batch)
        with self.changed:
            self.lines += sum(chunk.count(b"\n") for chunk in batch)  # type: ignore[attr-defined]
            self.changed.notify_all()

    def wait_for_lines(self, count: int) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.lines >= count, WAIT_SECONDS)


def test_a_lone_event_is_written_at_once_without_a_flush(tmp_path: Path) -> None:
    bus = Bus(MemorySeqBlocks())
    sink = Watched(tmp_path / "monitor.jsonl")
    bus.add_sink(sink)
    seq = status_event(bus)
    assert sink.wait_for_lines(1)  # an idle writer is handed the line at once, not after CHUNK_LINES
    assert [line["seq"] for line in read_objects(sink.path)] == [seq]
    bus.close()


def test_lines_published_while_the_writer_is_busy_are_written_when_it_is_done(tmp_path: Path) -> None:
    bus = Bus(MemorySeqBlocks())
    sink = Watched(tmp_path / "monitor.jsonl")
    bus.add_sink(sink)
    sink.hold.clear()
    first = status_event(bus)
    assert sink.holding.wait(WAIT_SECONDS)  # the writer is inside a write: it is not idle
    rest = [status_event(bus, index=index) for index in range(CHUNK_LINES // 2)]  # fewer than a chunk
    sink.hold.set()
    assert sink.wait_for_lines(1 + len(rest))  # the writer took them itself: no publish or flush came
    assert [line["seq"] for line in read_objects(sink.path)] == [first, *rest]
    bus.close()


class Gated(Watched):
    """A sink whose writer thread, once it has written its first batch, is stopped the next time it is about to
    take the bus lock: just after it found its queue empty, before it can go idle."""

    def __init__(self, path: Path, queue_size: int) -> None:
        super().__init__(path, queue_size)
        self.armed = False
        self.arrived = threading.Event()
        self.opened = threading.Event()

    def start(self, report=None, lock=None) -> None:  # type: ignore[no-untyped-def]
        bus_lock, sink = lock, self

        class Gate:
            def __enter__(self) -> object:
                if sink.armed and threading.current_thread() is sink._thread:
                    sink.armed = False
                    sink.arrived.set()
                    sink.opened.wait(WAIT_SECONDS)
                return bus_lock.__enter__()

            def __exit__(self, *exc: object) -> None:
                bus_lock.__exit__(*exc)

        super().start(report, Gate())  # type: ignore[arg-type]

    def write_batch(self, batch: list[object]) -> None:
        super().write_batch(batch)
        self.armed = not self.arrived.is_set()


def test_a_chunk_handed_over_while_the_writer_goes_idle_is_written_without_another_publish(tmp_path: Path) -> None:
    """The writer found its queue empty; before it took the lock to go idle, a publisher handed over a full
    chunk (no wake-up: the writer was not idle yet). Going idle then would leave the chunk unwritten, and
    publishers past the bound waiting for room forever (eight publishers hung so in test_bus)."""
    bus = Bus(MemorySeqBlocks())
    sink = Gated(tmp_path / "monitor.jsonl", queue_size=CHUNK_LINES)
    bus.add_sink(sink)
    first = status_event(bus)  # once written, the writer comes back for more, finds nothing and stops at the gate
    assert sink.arrived.wait(WAIT_SECONDS)
    chunk = [status_event(bus, index=index) for index in range(CHUNK_LINES)]  # exactly one chunk, handed over
    sink.opened.set()
    assert sink.wait_for_lines(1 + CHUNK_LINES)
    assert [line["seq"] for line in read_objects(sink.path)] == [first, *chunk]
    bus.close()


class Reporting(JsonlSink):
    """A JSONL sink whose writer thread publishes a WARNING after a write, as `_report` does."""

    def __init__(self, path: Path, bus: Bus) -> None:
        super().__init__(path, rotate_bytes=64 << 20, keep_files=5, queue_size=1, fsync="never")
        self.bus = bus
        self.report_next = False
        self.reported = threading.Event()

    def write_batch(self, batch: list[object]) -> None:
        super().write_batch(batch)
        if self.report_next:
            self.report_next = False
            self.bus.publish(EventType.WARNING, {"what": "log_write_failed", "detail": "writable again"})
            self.reported.set()


def test_a_writer_thread_publishing_never_waits_for_another_sinks_room(tmp_path: Path) -> None:
    bus = Bus(MemorySeqBlocks())
    reporting = Reporting(tmp_path / "monitor.jsonl", bus)
    held = Watched(tmp_path / "other.jsonl", queue_size=1)
    bus.add_sink(reporting)
    bus.add_sink(held)
    held.hold.clear()
    status_event(bus)
    assert held.holding.wait(WAIT_SECONDS)  # the other sink's writer is stuck in a write
    reporting.report_next = True
    status_event(bus)  # fills the other sink's queue to its bound; the reporting writer then publishes
    # Waiting for room there would block this writer until the other one moves (a deadlock if that
    # one were waiting for this one's room, as when it logs a failure): it must go on at once.
    assert reporting.reported.wait(5)
    held.hold.set()
    bus.close()
    for path in (reporting.path, held.path):
        assert [line["type"] for line in read_objects(path)] == ["RUN_STATUS_CHANGED"] * 2 + ["WARNING"]
