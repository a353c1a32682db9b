"""The in-process event bus: numbers, stamps and hands each event to the sinks and subscribers.

`publish` assigns `seq` and queues the event's one serialised line to every file sink under one
lock, so file order is `seq` order and every consumer sees events in that order (which keeps
each run's order). Only the file sinks (`QueuedWriter`) may then make the publisher wait, and
only after the lock is released; plug-in sinks and subscribers get bounded queues of their own
(`Subscription`) and refetch what they missed from the log. Logging records share the `seq`
numbering and go to the sinks that take them (`publish_line`).

`publish` is the daemon's hot path, so who takes what is decided once per event type when the
wiring changes (`_Route`), not per event; the line is encoded straight from the fields; and the
`Event` record is only built when a subscriber or plug-in sink takes that type.
"""

from __future__ import annotations

import logging
import operator
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, Protocol

import orjson

from ..ids import run_id_problem
from .sinks.writer import QueuedWriter
from .stamps import EventStamper
from .subscription import Accept, Missed, ReportsHealth, Sink, SinkHealth, SinkRunner, Subscription
from .types import ONCE_PER_RUN, REQUIRED_DATA, RUN_SCOPED, Event, EventType, check_event

SEQ_BLOCK_SIZE = 10_000  # numbers reserved per database write when events are few; a crash leaves a gap of one block
SEQ_BLOCK_MAX = 1_000_000  # a burst doubles the block up to this: each reservation is a database commit (~ms, fsync)
SEQ_BLOCK_GROW_SECONDS = 1.0  # a block used up faster than this doubles the next one
DEFAULT_SUBSCRIBER_QUEUE_SIZE = 1000
SINK_CLOSE_SECONDS = 10.0
_KNOWN_RUN_IDS_LIMIT = 4096  # validated run ids remembered, so validation is not paid per event

logger = logging.getLogger(__name__)
_dumps, _NEWLINE = orjson.dumps, orjson.OPT_APPEND_NEWLINE  # module globals: two attribute loads fewer per event

Refetch = Callable[[Missed, frozenset[EventType] | None], list[Event]]


class _Route(NamedTuple):
    """Who takes events of one type (file sinks by line, file sinks by (run_id, line), subscriptions)
    and what its events must hold: `publish` unpacks it, so one lookup per event gives all of it."""

    lines: tuple[QueuedWriter, ...]
    run_lines: tuple[QueuedWriter, ...]
    subscriptions: tuple[Subscription, ...]
    has_required: Callable[[Mapping[str, Any]], object]  # KeyError unless the data holds REQUIRED_DATA[type]
    run_scoped: bool  # type in RUN_SCOPED
    once_per_run: bool  # type in ONCE_PER_RUN


class SeqBlocks(Protocol):
    """Where sequence numbers come from (`ledger/monitor_db.py` `EventSeqBlocks` in the daemon)."""

    def reserve(self, count: int) -> range: ...

    def release(self, unused: range) -> None: ...


class Bus:
    """Thread-safe publish/subscribe; `close()` delivers and writes everything accepted."""

    def __init__(
        self,
        seq_blocks: SeqBlocks,
        *,
        stamper: EventStamper | None = None,
        refetch: Refetch | None = None,
        seq_block_size: int = SEQ_BLOCK_SIZE,
        daemon_id: str | None = None,
    ) -> None:
        self._seq_blocks = seq_blocks
        self._daemon = daemon_id  # on every event: several daemons' events meet on NATS and in Prometheus
        self._seq_block_size = seq_block_size
        self._next_block_size = seq_block_size
        self._block_reserved_at = -SEQ_BLOCK_GROW_SECONDS
        self._seq = iter(range(0))
        self._seq_stop = 0
        self._stamp = (stamper or EventStamper()).stamp
        self._refetch = refetch
        self._lock = threading.RLock()  # re-entrant: a sink may log (-> publish_line) from inside publish
        self._acquire, self._release = self._lock.acquire, self._lock.release  # for publish
        self._writers: list[QueuedWriter] = []
        self._log_writers: tuple[QueuedWriter, ...] = ()
        self._subscriptions: tuple[Subscription, ...] = ()
        self._routes: dict[EventType, _Route] = {}
        self._runners: list[SinkRunner] = []
        self._known_run_ids: set[str] = set()
        self._closed = False
        self._counts = dict.fromkeys(EventType, 0)
        self._route()

    @property
    def counts(self) -> dict[EventType, int]:
        """Events published so far, by type (for metrics)."""
        return {type: count for type, count in self._counts.items() if count}

    # --- wiring ---

    def add_sink(
        self,
        sink: QueuedWriter | Sink,
        *,
        name: str | None = None,
        queue_size: int = 1000,
        types: Iterable[EventType] | None = None,
        accept: Accept | None = None,
    ) -> None:
        """A file sink gets the lines under the bus lock (its thread writes them); any other sink gets a
        thread of its own and a bounded queue of events (of `types` only, when given: the others cost
        the publisher nothing for it; and only those `accept` takes, called under the bus lock)."""
        if isinstance(sink, QueuedWriter):
            sink.start(report=self._report, lock=self._lock)
            with self._lock:
                self._writers.append(sink)
                self._route()
            return
        runner = SinkRunner(
            name or type(sink).__name__, sink, self.subscribe(types, queue_size=queue_size, accept=accept), self.refetch
        )
        self._runners.append(runner)
        runner.start()

    def subscribe(
        self,
        types: Iterable[EventType] | None = None,
        *,
        queue_size: int = DEFAULT_SUBSCRIBER_QUEUE_SIZE,
        accept: Accept | None = None,
    ) -> Subscription:
        """Events of `types` (None: all) from now on, in a queue of their own; close it when done."""
        subscription = Subscription(types, queue_size, self._unsubscribe, accept)
        with self._lock:
            self._subscriptions = (*self._subscriptions, subscription)
            self._route()
        return subscription

    def set_sink_types(self, name: str, types: Iterable[EventType]) -> None:
        """The plug-in sink `name` takes `types` from the next event on (its rules were reloaded): routed like
        any wiring change, so a type no sink takes still costs the publisher nothing."""
        runner = next(runner for runner in self._runners if runner.name == name)
        with self._lock:
            runner.subscription.types = frozenset(types)
            self._route()

    def _unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscriptions = tuple(s for s in self._subscriptions if s is not subscription)
            self._route()

    def _route(self) -> None:
        """Decide, per event type, who takes it (under the lock, whenever the wiring changes)."""
        self._routes = {
            type: _Route(
                tuple(w for w in self._writers if not w.keyed_by_run and w.takes(type)),
                tuple(w for w in self._writers if w.keyed_by_run and w.takes(type)),
                tuple(s for s in self._subscriptions if s.types is None or type in s.types),
                operator.itemgetter(*REQUIRED_DATA[type]) if REQUIRED_DATA[type] else len,
                type in RUN_SCOPED,
                type in ONCE_PER_RUN,
            )
            for type in EventType
        }
        self._log_writers = tuple(w for w in self._writers if w.accepts_logs)

    # --- publishing ---

    def publish(self, type: EventType, data: Mapping[str, Any], *, run_id: str | None = None) -> int:
        """Number, stamp and deliver one event; returns its `seq` once the file sinks accepted it.

        `ValueError` for an event the spec does not allow (missing data key, invalid run id),
        `TypeError` for data that is not JSON: both are bugs in the publisher.
        """
        self._acquire()  # not `with self._lock:`, which costs ~50 ns more per event (bound methods)
        try:
            lines, run_lines, subscriptions, has_required, run_scoped, once_per_run = self._routes[type]
            try:
                has_required(data)  # an itemgetter: half the cost of `data.keys() >= required`
            except KeyError:
                check_event(type, data, run_id)  # raises, saying what is wrong
            if run_id is None:
                if run_scoped:
                    check_event(type, data, run_id)
            elif run_id not in self._known_run_ids:
                self._remember_run_id(run_id)
            if self._closed:
                raise RuntimeError("the event bus is closed")
            seq = next(self._seq, None)
            if seq is None:
                seq = self._next_block()
            time_text, event_id = self._stamp()
            waits: tuple[QueuedWriter, ...] = ()  # writers whose queue a hand-over filled
            # The line of Event.to_json, built here without the Event (the round trip is tested).
            daemon = self._daemon
            if run_id is None:
                obj = {"time": time_text, "type": type, "seq": seq, "id": event_id, "data": data}
                if daemon is not None:
                    obj["daemon"] = daemon
                line = _dumps(obj, option=_NEWLINE)
            else:
                if once_per_run:
                    event_id = f"{run_id}:{type}"
                obj = {"time": time_text, "type": type, "seq": seq, "id": event_id, "run_id": run_id, "data": data}
                if daemon is not None:
                    obj["daemon"] = daemon
                line = _dumps(obj, option=_NEWLINE)
                if run_lines:
                    item = (run_id, line)
                    for writer in run_lines:
                        pending = writer.pending
                        pending.append(item)
                        if len(pending) >= writer.hand_over_at and writer.hand_over():
                            waits = (*waits, writer)
            for writer in lines:
                pending = writer.pending
                pending.append(line)
                if len(pending) >= writer.hand_over_at and writer.hand_over():
                    waits = (*waits, writer)
            if subscriptions:
                event: Event | None = None  # built once, and only when someone takes it
                for subscription in subscriptions:
                    accept = subscription.accept
                    if accept is not None and not accept(type, data, run_id):
                        continue
                    if event is None:
                        event = Event(seq, time_text, type, event_id, data, run_id, daemon)
                    subscription.offer(event)
            self._counts[type] += 1
        finally:
            self._release()
        if waits:
            self._wait_for_room(waits)
        return seq

    def publish_line(self, make_line: Callable[[int], bytes]) -> None:
        """A non-event line (a logging record) built for its `seq`, for the sinks that take logs."""
        with self._lock:
            if self._closed:
                return
            seq = next(self._seq, None)
            line = make_line(self._next_block() if seq is None else seq)
            waits: tuple[QueuedWriter, ...] = ()
            for writer in self._log_writers:
                writer.pending.append(line)
                if len(writer.pending) >= writer.hand_over_at and writer.hand_over():
                    waits = (*waits, writer)
        if waits:
            self._wait_for_room(waits)

    def _wait_for_room(self, writers: tuple[QueuedWriter, ...]) -> None:
        """Backpressure, once the lock is released: only the file sinks' writer threads can end it.

        Not when this thread still holds the lock (something logged inside `publish`): a writer
        that needed the lock meanwhile would never make the room.
        """
        if self._lock._is_owned():  # type: ignore[attr-defined]  # what threading.Condition asks an RLock too
            return
        for writer in writers:
            writer.wait_for_room()

    def refetch(self, missed: Missed, types: frozenset[EventType] | None) -> list[Event]:
        """The events a subscriber missed, from the log once it is written; empty without a log."""
        if self._refetch is None:
            logger.warning("events %d..%d cannot be fetched again: no event log", missed.first_seq, missed.last_seq)
            return []
        self.flush()
        return self._refetch(missed, types)

    def flush(self, timeout: float = SINK_CLOSE_SECONDS) -> None:
        """Wait until the file sinks wrote what was published so far (for readers of the files, like archival)."""
        for writer in self._writers:
            writer.flush(timeout)

    def _next_block(self) -> int:
        """Reserve the next block of numbers and return its first."""
        now = time.monotonic()
        if now - self._block_reserved_at < SEQ_BLOCK_GROW_SECONDS:
            self._next_block_size = min(2 * self._next_block_size, max(SEQ_BLOCK_MAX, self._seq_block_size))
        else:
            self._next_block_size = self._seq_block_size
        self._block_reserved_at = now
        block = self._seq_blocks.reserve(self._next_block_size)
        self._seq, self._seq_stop = iter(block), block.stop
        return next(self._seq)

    def _remember_run_id(self, run_id: str) -> None:
        problem = run_id_problem(run_id)
        if problem is not None:
            raise ValueError(f"invalid run id {run_id!r}: {problem}")
        if len(self._known_run_ids) >= _KNOWN_RUN_IDS_LIMIT:
            self._known_run_ids.clear()
        self._known_run_ids.add(run_id)

    def _report(self, what: str, detail: str) -> None:
        """A file sink's notice (the log disk is writable again): a WARNING event for everyone."""
        if self._closed:
            logger.warning("%s: %s", what, detail)
            return
        self.publish(EventType.WARNING, {"what": what, "detail": detail})

    # --- state and shutdown ---

    def stats(self) -> dict[str, int]:
        """Failure counters for health and metrics: sink failures and events subscribers missed."""
        stats = {f"sink_failures.{writer.name}": writer.failures for writer in self._writers}
        stats.update({f"sink_failures.{runner.name}": runner.failures for runner in self._runners})
        stats["subscriber_missed"] = sum(s.missed_total for s in self._subscriptions)
        for name, health in self.sink_health().items():
            stats.update({f"sink.{name}.{counter}": value for counter, value in health.counters.items()})
        return stats

    def sink_health(self) -> dict[str, SinkHealth]:
        """What the plug-in sinks that report their health say, by name (a network sink's outage)."""
        return {runner.name: runner.sink.health() for runner in self._runners if isinstance(runner.sink, ReportsHealth)}

    def close(self) -> None:
        """Stop accepting, deliver what the plug-in sinks have queued, write and sync the files."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for runner in self._runners:
            runner.close(SINK_CLOSE_SECONDS)
        for subscription in self._subscriptions:
            subscription.close()
        for writer in self._writers:
            writer.close()
        unused = range(next(self._seq, self._seq_stop), self._seq_stop)
        self._seq_blocks.release(unused)
