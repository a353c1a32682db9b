"""Fans the event stream out to the dashboard's Server-Sent-Events clients.

One feed thread takes events from one source (a bounded bus subscription in the daemon, or
the followed `logs/monitor.jsonl` when the dashboard runs beside a daemon in another
process) and hands them to each client's event loop. Each client has a bounded queue of
its own; a client that falls behind is dropped (its stream ends) and resumes by
reconnecting with `Last-Event-ID`, served from a ring of recent events or, further back,
fetched again from the log. One subscription for all clients, not one each, keeps the
publisher's cost per event constant: the bus offers every event to each subscription
under its lock, on the detection thread's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import orjson

from ...events.bus import Bus
from ...events.log import FOLLOW_POLL_SECONDS, EventLogReader
from ...events.subscription import Missed, Subscription
from ...events.types import Event, EventType, decode_event

logger = logging.getLogger(__name__)

RING_SIZE = 2048  # recent events kept for reconnecting clients
CLIENT_QUEUE_SIZE = 512  # events a client may lag behind before it is dropped
MAX_CLIENTS = 512
COALESCE_SECONDS = 0.05  # a page shows a change within 2 s; 50 ms more buys one write per burst
FEED_WAIT_SECONDS = 30.0  # a safety net only: closing the hub wakes the feed thread at once
FEED_STOP_SECONDS = 5.0
_EVENT_TYPES = frozenset(str(t) for t in EventType)

Refetch = Callable[[Missed, frozenset[EventType] | None], list[Event]]
Frame = tuple[int, bytes]  # an event's seq and its SSE frame, serialised once for every client


def format_event(event: Event) -> bytes:
    return b"id: %d\ndata: %s\n\n" % (event.seq, orjson.dumps(event.to_json()))


class Feed(Protocol):
    """Where the hub's events come from; `open` before `events`, whose iteration ends once `stop` is set."""

    refetch: Refetch

    def open(self) -> None: ...

    def events(self, stop: threading.Event) -> Iterator[Event]: ...

    def close(self) -> None: ...


class BusFeed:
    """The daemon's bus: one bounded subscription; what it misses is fetched again by seq."""

    def __init__(self, bus: Bus, queue_size: int) -> None:
        self._bus = bus
        self._queue_size = queue_size
        self._subscription: Subscription | None = None
        self.refetch: Refetch = bus.refetch

    def open(self) -> None:
        self._subscription = self._bus.subscribe(queue_size=self._queue_size)

    def events(self, stop: threading.Event) -> Iterator[Event]:
        subscription = self._subscription
        assert subscription is not None, "open() first"
        try:
            while not stop.is_set() and not subscription.closed:
                item = subscription.get(FEED_WAIT_SECONDS)
                if isinstance(item, Missed):
                    logger.warning("dashboard feed missed %d events from seq %d", item.count, item.first_seq)
                    yield from self._bus.refetch(item, None)
                elif item is not None:
                    yield item
        finally:
            subscription.close()

    def close(self) -> None:
        """Wakes `events` at once (it is waiting on the subscription)."""
        if self._subscription is not None:
            self._subscription.close()


class LogFeed:
    """`logs/monitor.jsonl` followed from its current end (the daemon runs in another process)."""

    def __init__(self, path: Path, refetch: Refetch) -> None:
        self._reader = EventLogReader(path)
        self.refetch = refetch

    def open(self) -> None:
        for _ in self._reader.read_new():  # what is there already is history, for refetch
            pass

    def events(self, stop: threading.Event) -> Iterator[Event]:
        try:
            while True:
                for line in self._reader.read_new():
                    if line.get("type") in _EVENT_TYPES:
                        yield decode_event(line)
                if stop.wait(FOLLOW_POLL_SECONDS):
                    return
        finally:
            self._reader.close()

    def close(self) -> None:
        return None  # `events` waits on the stop flag itself


class Client:
    """One SSE connection: a bounded queue, read on its own event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue_size: int) -> None:
        self.loop = loop
        self.dropped = False
        self._queue_size = queue_size
        self._items: deque[Frame] = deque()
        self._wake = asyncio.Event()

    def end(self) -> None:
        """On the client's loop: its stream ends now (the server is stopping)."""
        self.dropped = True
        self._items.clear()
        self._wake.set()

    def push(self, frame: Frame) -> None:
        """On the client's loop; past the bound the client is dropped instead of slowing anyone."""
        if self.dropped:
            return
        if len(self._items) >= self._queue_size:
            self.dropped = True
            self._items.clear()
        else:
            self._items.append(frame)
        self._wake.set()

    async def next_batch(self, timeout: float) -> list[Frame]:
        """What arrived since the last call; empty after `timeout` with nothing new (time for a keep-alive)."""
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            return []
        # Let what comes together go together: a completion is several events in a row, and a
        # write per client per event is what 200 clients cost the daemon (its GIL, its cores).
        await asyncio.sleep(COALESCE_SECONDS)
        self._wake.clear()
        batch = list(self._items)
        self._items.clear()
        return batch


def _push_all(clients: tuple[Client, ...], frame: Frame) -> None:
    for client in clients:
        client.push(frame)


class EventHub:
    """`start()` the feed thread, `attach()` a client per SSE request, `close()` on the way out."""

    def __init__(self, feed: Feed, *, client_queue_size: int = CLIENT_QUEUE_SIZE, max_clients: int = MAX_CLIENTS):
        self._feed = feed
        self._client_queue_size = client_queue_size
        self.max_clients = max_clients  # checked by the endpoint, which answers 503 past it
        self._lock = threading.Lock()
        self._ring: deque[Event] = deque(maxlen=RING_SIZE)
        self._latest_seq = 0
        self._clients: dict[asyncio.AbstractEventLoop, set[Client]] = {}
        self._stop = threading.Event()
        self._ending = False
        self._thread = threading.Thread(target=self._run, name="dashboard-feed", daemon=True)

    @property
    def refetch(self) -> Refetch:
        return self._feed.refetch

    def start(self) -> None:
        self._feed.open()
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._feed.close()
        if self._thread.is_alive():
            self._thread.join(FEED_STOP_SECONDS)

    @property
    def client_count(self) -> int:
        with self._lock:
            return sum(len(clients) for clients in self._clients.values())

    def attach(self) -> tuple[Client, list[Event], int]:
        """A new client on the running loop, the recent events and the latest seq, taken together."""
        loop = asyncio.get_running_loop()
        client = Client(loop, self._client_queue_size)
        with self._lock:
            if self._ending:
                client.dropped = True
            self._clients.setdefault(loop, set()).add(client)
            return client, list(self._ring), self._latest_seq

    def end_streams(self) -> None:
        """From any thread, before the web server stops: every open stream ends at once (and new ones at their
        start), so the server's graceful shutdown finds no connection to cancel and logs no error for it."""
        with self._lock:
            self._ending = True
            targets = [(loop, tuple(clients)) for loop, clients in self._clients.items()]
        for loop, clients in targets:
            for client in clients:
                with contextlib.suppress(RuntimeError):  # that loop is closed already
                    loop.call_soon_threadsafe(client.end)

    def recent(self, run_id: str) -> list[Event]:
        """The run's events among the recent ones (the ring), oldest first."""
        with self._lock:
            return [event for event in self._ring if event.run_id == run_id]

    def detach(self, client: Client) -> None:
        with self._lock:
            clients = self._clients.get(client.loop)
            if clients is not None:
                clients.discard(client)
                if not clients:
                    del self._clients[client.loop]

    def _run(self) -> None:
        try:
            for event in self._feed.events(self._stop):
                self._dispatch(event)
        except Exception:
            logger.exception("the dashboard's event feed failed; live updates stop")

    def _dispatch(self, event: Event) -> None:
        frame = (event.seq, format_event(event))  # once here, not once per client on the event loop
        with self._lock:
            self._ring.append(event)
            self._latest_seq = max(self._latest_seq, event.seq)
            targets = [(loop, tuple(clients)) for loop, clients in self._clients.items()]
        for loop, clients in targets:
            try:
                loop.call_soon_threadsafe(_push_all, clients, frame)
            except RuntimeError:  # that loop was closed (a server stopped): its clients are gone
                continue
