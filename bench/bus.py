"""Benchmark of the event bus into the JSONL sink, beside stdlib logging and a bare orjson loop.

Issue #3: push N (default 1,000,000) events through `Bus.publish` into a `JsonlSink` (the
daemon's settings: fsync "interval", rotation at 64 MiB, five files kept), through the bus as
the daemon wires it (`open_bus`: `logs/monitor.jsonl`, `logs/archival.jsonl` taking archival
types only, the run spool, the logging handler; the bench's run-scoped events go to the spool
too), and in the same run the same number of equivalent lines through
  (a) stdlib `logging` + python-json-logger `JsonFormatter` + `FileHandler`, and
  (b) a bare loop of `orjson.dumps` + a buffered file write (the practical limit), and
  (b2) the same loop writing each line to two files, as the daemon's bus does (monitor.jsonl and
       the run's spool file): the fair limit for the daemon's wiring.
Rounds alternate the three (bus, a, b, bus, a, b, ...) so that machine noise spreads over
all of them; medians are reported. Throughput counts until every line is in the file (the
bus is closed, the handler flushed). Then publish latency: events published at a paced rate
the sink keeps up with, each `publish` call timed; p50/p99/p99.9.

Goals (issue #3, for the bus into the JSONL sink): bus >= 8x (a), bus >= 0.4x (b), publish p99 <
50 us. The daemon's wiring is printed beside them, against (a) and against (b2).

Issue #16: the daemon's bus again with the alert and OpenLineage sinks enabled (bench/notify_sinks.py),
beside it without them: publish p99 < 50 us, throughput lost <= 10 %; and a burst of 1,000 FAILED
runs whose alerts (after throttling) all reach a receiver on loopback within 10 s.

    .venv/bin/python bench/bus.py                     # 1,000,000 events, 3 rounds
    .venv/bin/python bench/bus.py --events 100000 --rounds 1 --profile
    .venv/bin/python bench/bus.py --quick             # 200,000 events, 3 rounds
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import logging
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from notify_sinks import BURST_SECONDS_GOAL, Receiver, open_bus_with_sinks, run_burst, sink_settings
from orchestrator_monitor.config import DEFAULT_ROTATE_BYTES, EventsSettings, load_settings
from orchestrator_monitor.events.bus import Bus
from orchestrator_monitor.events.publishing import open_bus
from orchestrator_monitor.events.sinks.jsonl import JsonlSink
from orchestrator_monitor.events.types import EventType
from orchestrator_monitor.ledger.monitor_db import EventSeqBlocks
from orchestrator_monitor.ledger.store import sqlite_store
from pythonjsonlogger.json import JsonFormatter

DATA = {"from": "PENDING", "to": "RUNNING"}
RUN_ID = "run-000042"


def run_bus(directory: Path, count: int) -> float:
    """Seconds to publish `count` events and have all of them written."""
    bus, _ = _open_bus(directory)
    publish, kind = bus.publish, EventType.RUN_STATUS_CHANGED
    start = time.perf_counter()
    for _ in range(count):
        publish(kind, DATA, run_id=RUN_ID)
    bus.close()
    return time.perf_counter() - start


def run_daemon_bus(directory: Path, count: int) -> float:
    """The same through the bus `open_bus` builds for the daemon (leaving the file sinks' writing to close)."""
    with _open_daemon_bus(directory) as bus:
        publish, kind = bus.publish, EventType.RUN_STATUS_CHANGED
        start = time.perf_counter()
        for _ in range(count):
            publish(kind, DATA, run_id=RUN_ID)
    return time.perf_counter() - start


def run_daemon_bus_with_sinks(directory: Path, count: int) -> float:
    """The daemon's bus with the alert and OpenLineage sinks enabled (#16), until their queues are drained too."""
    receiver = Receiver()
    try:
        settings = sink_settings(directory, receiver.port, throttle_count=10, throttle_seconds=300)
        with open_bus_with_sinks(settings) as (bus, _):
            publish, kind = bus.publish, EventType.RUN_STATUS_CHANGED
            start = time.perf_counter()
            for _ in range(count):
                publish(kind, DATA, run_id=RUN_ID)
        return time.perf_counter() - start  # before the receiver's shutdown, which waits for its poll
    finally:
        receiver.close()


def run_logging(directory: Path, count: int) -> float:
    """(a): the same fields through a logger with python-json-logger and a FileHandler."""
    handler = logging.FileHandler(directory / "logging.jsonl")
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("bench.bus")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    extra = {"type": "RUN_STATUS_CHANGED", "run_id": RUN_ID, "data": DATA}
    start = time.perf_counter()
    for seq in range(count):
        logger.info("event", extra={**extra, "seq": seq})
    handler.close()
    elapsed = time.perf_counter() - start
    logger.removeHandler(handler)
    return elapsed


def run_bare(directory: Path, count: int) -> float:
    """(b): build the line's object, orjson.dumps it, buffered write: no numbering, no threads."""
    dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    start = time.perf_counter()
    with (directory / "bare.jsonl").open("wb", buffering=1 << 16) as handle:
        write = handle.write
        for seq in range(count):
            event = {"time": "2026-01-01T00:00:00.000000Z", "type": "RUN_STATUS_CHANGED", "seq": seq}
            event.update(id="01JAAAAAAAAAAAAAAAAAAAAAAA", run_id=RUN_ID, data=DATA)
            write(dumps(event, option=option))
    return time.perf_counter() - start


def run_bare_two_files(directory: Path, count: int) -> float:
    """(b2): (b) with each line written to two buffered files (the log and the run's spool)."""
    dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    start = time.perf_counter()
    with (
        (directory / "bare.jsonl").open("wb", buffering=1 << 16) as log,
        (directory / "spool.jsonl").open("wb", buffering=1 << 16) as spool,
    ):
        write_log, write_spool = log.write, spool.write
        for seq in range(count):
            event = {"time": "2026-01-01T00:00:00.000000Z", "type": "RUN_STATUS_CHANGED", "seq": seq}
            event.update(id="01JAAAAAAAAAAAAAAAAAAAAAAA", run_id=RUN_ID, data=DATA)
            line = dumps(event, option=option)
            write_log(line)
            write_spool(line)
    return time.perf_counter() - start


def measure_latency(directory: Path, count: int, rate_per_second: float, *, daemon: bool) -> list[int]:
    """Nanoseconds per `publish` at a paced rate (busy-waiting between calls)."""
    with _open_daemon_bus(directory) if daemon else contextlib.closing(_open_bus(directory)[0]) as bus:
        return _time_publish(bus, count, rate_per_second)


def measure_latency_with_sinks(directory: Path, count: int, rate_per_second: float) -> list[int]:
    receiver = Receiver()
    try:
        settings = sink_settings(directory, receiver.port, throttle_count=10, throttle_seconds=300)
        with open_bus_with_sinks(settings) as (bus, _):
            return _time_publish(bus, count, rate_per_second)
    finally:
        receiver.close()


def _time_publish(bus: Bus, count: int, rate_per_second: float) -> list[int]:
    publish, kind, clock = bus.publish, EventType.RUN_STATUS_CHANGED, time.perf_counter_ns
    interval = int(1e9 / rate_per_second)
    samples = [0] * count
    next_at = clock()
    for index in range(count):
        while clock() < next_at:
            pass
        before = clock()
        publish(kind, DATA, run_id=RUN_ID)
        samples[index] = clock() - before
        next_at += interval
    return samples


def _open_daemon_bus(directory: Path) -> contextlib.AbstractContextManager[Bus]:
    return open_bus(load_settings(directory, environ={}, overrides=["events.sinks="]))


def _open_bus(directory: Path) -> tuple[Bus, JsonlSink]:
    settings = EventsSettings()
    database = directory / ".monitor" / "monitor.db"
    bus = Bus(EventSeqBlocks(sqlite_store(database, busy_timeout_seconds=5)))
    sink = JsonlSink(
        directory / "logs" / "monitor.jsonl",
        logs=True,
        rotate_bytes=DEFAULT_ROTATE_BYTES,
        keep_files=settings.keep_files,
        queue_size=settings.queue_size,
        fsync=settings.fsync,
        fsync_interval_seconds=settings.fsync_interval_seconds,
    )
    bus.add_sink(sink)
    return bus, sink


def _percentile(sorted_values: list[int], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))] / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-events", type=int, default=200_000)
    parser.add_argument("--latency-rate", type=float, default=50_000, help="events per second while timing publish")
    parser.add_argument("--burst-runs", type=int, default=1000, help="FAILED runs published at once (alerts)")
    parser.add_argument("--profile", action="store_true", help="cProfile one bus round")
    parser.add_argument("--quick", action="store_true", help="a minute or two: 200,000 events, 50,000 timed calls")
    args = parser.parse_args()
    if args.quick:
        args.events, args.latency_events = 200_000, 50_000
    runners: dict[str, Callable[[Path, int], float]] = {
        "bus -> JsonlSink": run_bus,
        "bus as open_bus wires it (daemon)": run_daemon_bus,
        "daemon bus + alert and OpenLineage sinks": run_daemon_bus_with_sinks,
        "(a) logging + JsonFormatter + FileHandler": run_logging,
        "(b) orjson.dumps + buffered write": run_bare,
        "(b2) the same, into two files": run_bare_two_files,
    }
    times: dict[str, list[float]] = {name: [] for name in runners}
    print(f"python {sys.version.split()[0]}, {args.events:,} events per run, {args.rounds} rounds (alternating)")
    for round_number in range(1, args.rounds + 1):
        for name, runner in runners.items():
            with tempfile.TemporaryDirectory(prefix="bench-bus-") as directory:
                seconds = runner(Path(directory), args.events)
            times[name].append(seconds)
            print(f"  round {round_number}: {name:<44} {seconds:7.2f} s  {args.events / seconds:>12,.0f} events/s")
    rates = {name: args.events / statistics.median(values) for name, values in times.items()}
    bus_rate, daemon_rate, sinks_rate, logging_rate, bare_rate, bare_two_rate = rates.values()
    print("medians:")
    for name, rate in rates.items():
        print(f"  {name:<44} {rate:>12,.0f} events/s")
    print(f"  bus / (a) = {bus_rate / logging_rate:5.2f}x   (goal >= 8x)")
    print(f"  bus / (b) = {bus_rate / bare_rate:5.2f}x   (goal >= 0.4x)")
    print(f"  daemon bus / (a) = {daemon_rate / logging_rate:5.2f}x")
    print(f"  daemon bus / (b2) = {daemon_rate / bare_two_rate:5.2f}x   (two files per event on both sides)")
    loss = 1 - sinks_rate / daemon_rate
    print(f"  daemon bus with the alert and OpenLineage sinks: {loss:+.1%} throughput lost   (goal <= 10 %)")
    latency: dict[str, Callable[[Path], list[int]]] = {
        "bus": lambda path: measure_latency(path, args.latency_events, args.latency_rate, daemon=False),
        "daemon bus": lambda path: measure_latency(path, args.latency_events, args.latency_rate, daemon=True),
        "daemon bus + alert and OpenLineage sinks": lambda path: measure_latency_with_sinks(
            path, args.latency_events, args.latency_rate
        ),
    }
    for label, measure in latency.items():
        with tempfile.TemporaryDirectory(prefix="bench-bus-") as directory:
            samples = sorted(measure(Path(directory)))
        print(
            f"{label} publish latency at {args.latency_rate:,.0f} events/s ({args.latency_events:,} calls): "
            f"p50 {_percentile(samples, 0.50):.1f} us, p99 {_percentile(samples, 0.99):.1f} us, "
            f"p99.9 {_percentile(samples, 0.999):.1f} us, max {samples[-1] / 1000:.0f} us   (goal p99 < 50 us)"
        )
    for label, throttle_count, throttle_seconds in (
        ("throttled: 10 per 5 s window, then one summary", 10, 5.0),
        ("unthrottled: one alert per run", args.burst_runs, 300.0),
    ):
        with tempfile.TemporaryDirectory(prefix="bench-bus-") as directory:
            expected, seconds, in_time = run_burst(
                Path(directory), args.burst_runs, throttle_count=throttle_count, throttle_seconds=throttle_seconds
            )
        print(
            f"burst of {args.burst_runs:,} FAILED runs, {label}: {expected:,} alerts received in {seconds:.2f} s"
            f"   (goal: all within {BURST_SECONDS_GOAL:.0f} s: {'met' if in_time else 'MISSED'})"
        )
    if args.profile:
        with tempfile.TemporaryDirectory(prefix="bench-bus-") as directory:
            profiler = cProfile.Profile()
            profiler.runcall(run_bus, Path(directory), args.events)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(12)
    return 0


if __name__ == "__main__":
    sys.exit(main())
