from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import pytest
from events_support import STATUS, MemorySeqBlocks, bus_with_log, jsonl_sink, read_objects, status_event
from orchestrator_monitor.config import load_settings
from orchestrator_monitor.events.bus import Bus
from orchestrator_monitor.events.log import refetch_events
from orchestrator_monitor.events.publishing import open_bus
from orchestrator_monitor.events.subscription import Missed
from orchestrator_monitor.events.types import Event, EventType
from support import TESTS


def seqs(items: list[Event | Missed | None]) -> list[int]:
    return [item.seq for item in items if isinstance(item, Event)]


class Collecting:
    """A plug-in style sink that remembers what it got."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed = False

    def handle(self, event: Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        self.closed = True


class Failing(Collecting):
    def handle(self, event: Event) -> None:
        if event.seq % 2:
            raise RuntimeError("this sink is broken")
        super().handle(event)


@pytest.mark.slow
def test_eight_threads_of_ten_thousand_events_lose_nothing_and_keep_their_order(tmp_path: Path) -> None:
    bus, sink = bus_with_log(tmp_path / "monitor.jsonl", queue_size=500)  # small: publishers hit backpressure

    def publish(thread: int) -> None:
        for index in range(10_000):
            status_event(bus, run_id=f"run-{thread}", thread=thread, index=index)

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    bus.close()
    lines = read_objects(sink.path)
    assert len(lines) == 80_000
    assert [line["seq"] for line in lines] == list(range(1, 80_001))
    for thread in range(8):
        mine = [line["data"]["index"] for line in lines if line["data"]["thread"] == thread]
        assert mine == list(range(10_000))


def test_a_sink_takes_only_its_types_and_what_its_filter_accepts(tmp_path: Path) -> None:
    bus, _ = bus_with_log(tmp_path / "monitor.jsonl")
    sink, asked = Collecting(), []

    def only_run_a(type: EventType, data: object, run_id: str | None) -> bool:
        asked.append(type)
        return run_id == "a"

    bus.add_sink(sink, name="picky", types={EventType.RUN_STATUS_CHANGED}, accept=only_run_a)
    for run_id in ("a", "b", "a"):
        status_event(bus, run_id)
    bus.publish(EventType.WARNING, {"what": "w", "detail": "d"})
    bus.close()
    assert [event.run_id for event in sink.events] == ["a", "a"]
    assert asked == [EventType.RUN_STATUS_CHANGED] * 3  # never asked about a type it does not take


def test_a_sink_retyped_takes_the_new_types_from_the_next_event_on(tmp_path: Path) -> None:
    bus, _ = bus_with_log(tmp_path / "monitor.jsonl")
    sink = Collecting()
    bus.add_sink(sink, name="alerts", types=())  # no rule yet: nothing reaches it
    status_event(bus, "before")
    bus.set_sink_types("alerts", {EventType.RUN_STATUS_CHANGED})
    status_event(bus, "after")
    bus.publish(EventType.WARNING, {"what": "w", "detail": "d"})
    bus.close()
    assert [(event.type, event.run_id) for event in sink.events] == [(EventType.RUN_STATUS_CHANGED, "after")]


def test_a_failing_sink_is_counted_and_never_stops_the_others(tmp_path: Path) -> None:
    bus, sink = bus_with_log(tmp_path / "monitor.jsonl")
    good, bad = Collecting(), Failing()
    bus.add_sink(bad, name="bad")
    bus.add_sink(good, name="good")
    subscription = bus.subscribe([EventType.RUN_STATUS_CHANGED])
    published = [status_event(bus, index=n) for n in range(50)]
    bus.close()
    assert seqs(good.events) == published and good.closed and bad.closed
    assert [event.data["index"] for event in good.events] == list(range(50))
    assert seqs(bad.events) == [seq for seq in published if seq % 2 == 0]
    assert bus.stats()["sink_failures.bad"] == 25 and bus.stats()["sink_failures.good"] == 0
    assert list(subscription) == good.events
    assert len(read_objects(sink.path)) == 50


def test_a_slow_subscriber_is_told_what_it_missed_and_fetches_it_again(tmp_path: Path) -> None:
    path = tmp_path / "monitor.jsonl"
    bus = Bus(MemorySeqBlocks(), refetch=partial(refetch_events, path))
    bus.add_sink(jsonl_sink(path))
    slow = bus.subscribe([EventType.RUN_STATUS_CHANGED], queue_size=10)
    bus.publish(EventType.HEARTBEAT, {"uptime_s": 1, "safe_mode": False})  # not of its type
    published = [status_event(bus, index=n) for n in range(100)]  # never blocks on the slow one
    received = [slow.get(timeout=0) for _ in range(11)]
    assert seqs(received[:10]) == published[:10]
    missed = received[10]
    assert missed == Missed(first_seq=published[10], last_seq=published[-1], count=90)
    refetched = bus.refetch(missed, slow.types)
    assert seqs(refetched) == published[10:] and [event.data["index"] for event in refetched] == list(range(10, 100))
    assert slow.get(timeout=0) is None
    later = status_event(bus)
    assert seqs([slow.get(timeout=0)]) == [later]
    bus.close()


def test_a_sink_that_falls_behind_gets_the_missed_events_from_the_log_in_order(tmp_path: Path) -> None:
    path = tmp_path / "monitor.jsonl"
    bus = Bus(MemorySeqBlocks(), refetch=partial(refetch_events, path))
    bus.add_sink(jsonl_sink(path))
    gate = threading.Event()

    class Blocked(Collecting):
        def handle(self, event: Event) -> None:
            gate.wait()
            super().handle(event)

    sink = Blocked()
    bus.add_sink(sink, name="blocked", queue_size=5)
    published = [status_event(bus, index=n) for n in range(200)]
    gate.set()
    bus.close()
    assert seqs(sink.events) == published


def test_log_records_share_the_numbering_and_land_between_the_events(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={}, overrides=["events.sinks="])
    with open_bus(settings) as bus:
        first = status_event(bus)
        logging.getLogger("orchestrator_monitor.test").warning("between %d and the next", first)
        last = status_event(bus)
        logging.getLogger("orchestrator_monitor.test").debug("below the level: not written")
    lines = read_objects(tmp_path / "logs" / "monitor.jsonl")
    assert [line["seq"] for line in lines] == [first, first + 1, last]
    assert lines[1]["type"] == "log" and lines[1]["message"] == f"between {first} and the next"
    assert read_objects(tmp_path / ".monitor" / "events" / "run-1.jsonl") == [lines[0], lines[2]]


def test_archival_events_also_go_to_the_archival_log(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={}, overrides=["events.sinks="])
    with open_bus(settings) as bus:
        status_event(bus)
        started = bus.publish(EventType.ARCHIVE_STARTED, {"archive_path": ".archive/run-1"}, run_id="run-1")
        failed = bus.publish(EventType.ARCHIVE_FAILED, {"reason": "io", "detail": "EIO"}, run_id="run-1")
    assert [line["seq"] for line in read_objects(tmp_path / "logs" / "archival.jsonl")] == [started, failed]


@pytest.mark.slow
def test_sigterm_flushes_every_accepted_event(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, str(TESTS / "publish_until_term.py"), str(tmp_path)], stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        reported = [int(process.stdout.readline()) for _ in range(20_000)]  # well under way, queue filling
        process.send_signal(signal.SIGTERM)
        reported += [int(line) for line in process.stdout]
        assert process.wait(timeout=30) == 0
    written = {line["seq"] for line in read_objects(tmp_path / "logs" / "monitor.jsonl")}
    assert set(reported) <= written
    assert len(reported) >= 20_000


def test_publishing_after_close_is_refused(tmp_path: Path) -> None:
    bus, _ = bus_with_log(tmp_path / "monitor.jsonl")
    bus.close()
    bus.close()
    with pytest.raises(RuntimeError, match="closed"):
        bus.publish(EventType.RUN_STATUS_CHANGED, STATUS, run_id="run-1")
