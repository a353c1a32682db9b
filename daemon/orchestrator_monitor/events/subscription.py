"""Bounded per-consumer queues, and the thread that feeds a plug-in sink from one.

A consumer that falls behind (a web client, a network sink) must never slow the bus, so
`offer` never blocks: past `queue_size` events are not queued but counted, and the consumer
later receives one `Missed` marker, in order, saying which `seq` range it lost, to fetch
again from the log (`Bus.refetch`). Everything is delivered in `seq` order, which keeps the
order of each run's events.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .types import Event, EventType

logger = logging.getLogger(__name__)


Accept = Callable[[EventType, Mapping[str, Any], str | None], bool]
"""A subscriber's filter on (type, data, run_id), called by the publisher under the bus lock: it must be quick."""


@dataclass(frozen=True)
class Missed:
    """`count` events of this subscription's types between `first_seq` and `last_seq` were not queued."""

    first_seq: int
    last_seq: int
    count: int


class Sink(Protocol):
    """A plug-in sink: built from the settings by its entry point, fed by its own thread."""

    def handle(self, event: Event) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SinkHealth:
    """What a sink that can fail on its own (a network sink) tells health and metrics."""

    ok: bool
    detail: str
    counters: Mapping[str, int]


@runtime_checkable
class ReportsHealth(Protocol):
    """A sink that also says how it is doing (optional: the bus asks the sinks that have `health`)."""

    def health(self) -> SinkHealth: ...


class Subscription:
    """A bounded queue of events; `get` returns an `Event`, a `Missed` marker, or None on timeout/close."""

    def __init__(
        self,
        types: Iterable[EventType] | None,
        queue_size: int,
        on_close: Callable[[Subscription], None],
        accept: Accept | None = None,
    ):
        self.types = None if types is None else frozenset(types)
        self.accept = accept  # the bus asks it before building the event: what it refuses costs next to nothing
        self.queue_size = queue_size
        self.missed_total = 0
        self._items: deque[Event | Missed] = deque()
        self._ready = threading.Condition()
        self._missed: tuple[int, int, int] | None = None  # first, last, count of the current gap
        self._closed = False
        self._on_close = on_close

    def offer(self, event: Event) -> None:
        """Called by the bus under its lock, in `seq` order, only with events of `types`; never blocks."""
        with self._ready:
            if len(self._items) >= self.queue_size:
                first, _, count = self._missed or (event.seq, 0, 0)
                self._missed = (first, event.seq, count + 1)
                self.missed_total += 1
                return
            if self._missed is not None:
                self._items.append(Missed(*self._missed))
                self._missed = None
            self._items.append(event)
            self._ready.notify()

    def get(self, timeout: float | None = None) -> Event | Missed | None:
        with self._ready:
            if not self._ready.wait_for(lambda: self._items or self._missed or self._closed, timeout):
                return None
            if self._items:
                return self._items.popleft()
            if self._missed is not None:
                missed, self._missed = Missed(*self._missed), None
                return missed
            return None

    def __iter__(self) -> Iterator[Event | Missed]:
        """Until closed and drained."""
        while (item := self.get()) is not None:
            yield item

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        self._on_close(self)


class SinkRunner:
    """Feeds one sink from its own subscription in its own thread; a failing sink is logged and counted."""

    def __init__(
        self,
        name: str,
        sink: Sink,
        subscription: Subscription,
        refetch: Callable[[Missed, frozenset[EventType] | None], list[Event]],
    ) -> None:
        self.name = name
        self.sink = sink
        self.failures = 0
        self.subscription = subscription
        self._refetch = refetch
        self._thread = threading.Thread(target=self._run, name=f"sink-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float) -> None:
        """Deliver what is queued, then close the sink."""
        self.subscription.close()
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error("sink %s did not finish within %.0f s", self.name, timeout)

    def _run(self) -> None:
        for item in self.subscription:
            if isinstance(item, Missed):
                logger.warning(
                    "sink %s fell behind and missed %d events from seq %d", self.name, item.count, item.first_seq
                )
                for event in self._refetch(item, self.subscription.types):
                    self._deliver(event)
            else:
                self._deliver(item)
        try:
            self.sink.close()
        except Exception:
            logger.exception("sink %s failed to close", self.name)

    def _deliver(self, event: Event) -> None:
        try:
            self.sink.handle(event)
        except Exception:
            self.failures += 1
            logger.exception("sink %s failed on event seq %d (%s)", self.name, event.seq, event.type)
