"""The `nats` sink: every event to NATS JetStream, at least once, never holding the bus back.

Each event goes to `<subject_prefix>.<TYPE>` with its JSON line as payload, its `id` as
`Nats-Msg-Id` (JetStream stores a resent event once within the stream's duplicate window) and
the run and daemon ids as headers; the stream is created when missing. The bus feeds the sink
from a thread and a bounded queue of its own, and the sink waits for each acknowledgement
there, trying an event `nats.retries` more times before NATS counts as out.

During an outage the sink drops what it is handed without waiting (the bus never notices):
every event is in `logs/monitor.jsonl` anyway. A durable cursor keeps the last `seq` up to
which everything was acknowledged. When NATS is back (tried at the next event, or by the
sink's resend thread within a second, at most once per `CONNECT_PAUSE_SECONDS`, backing off
to `MAX_CONNECT_PAUSE_SECONDS`), the sink first sends what the log holds past the cursor,
rotated files included, at least up to the last event it dropped, then goes on live. A daemon
restarted with a cursor on disk does the same first, so events published while NATS was down
are sent after a restart too. An outage is logged once, counted, and shown
by health until it is over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ...config import Settings
from ...errors import BadInput
from ...timefmt import format_timestamp, utc_now
from ...workspace import Workspace
from ..log import EventLogReader, Line
from ..subscription import SinkHealth
from ..types import Event, EventType, decode_event
from .cursor import SentCursor
from .jetstream import CLOSE_SECONDS, JetStreamError, JetStreamPublisher
from .jsonl import MONITOR_LOG

CONNECT_PAUSE_SECONDS = 1.0  # after a failed attempt to connect, events are dropped (they are in the log) this long
MAX_CONNECT_PAUSE_SECONDS = 8.0  # ... doubling up to this while NATS stays out
RESEND_BATCH = 500  # events read from the log and sent per round trip of the sink's thread
LOG_WAIT_SECONDS = 1.0  # how long a resend waits for the log writer to reach the event in hand
LOG_POLL_SECONDS = 0.02
CURSOR_SAVE_SECONDS = 1.0  # the cursor file is rewritten (when it moved) this often, after a resend and at close

logger = logging.getLogger(__name__)
_EVENT_TYPES = frozenset(EventType)


def cursor_path(workspace: Workspace, stream: str) -> Path:
    """One cursor per stream: pointing the sink at another stream starts that one afresh."""
    return workspace.monitor_dir / f"nats-{stream}.cursor"


class NatsSink:
    """See the module docstring. `handle` runs on the bus's thread for this sink; `health` on any thread."""

    def __init__(
        self,
        publisher: JetStreamPublisher,
        cursor: SentCursor,
        log_path: Path,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.outages = 0
        self.resent = 0  # events sent from the log after an outage or a restart
        self._publisher = publisher
        self._cursor = cursor
        self._log_path = log_path
        self._clock = clock
        self._lock = threading.Lock()  # the bus's thread for this sink and the resend thread take turns
        self._behind = cursor.seq is not None  # a cursor from before: what lies past it is owed
        self._dropped = 0  # the last seq dropped while behind: a resend must reach it in the log
        self._outage: str | None = None  # since when NATS is out, while it is
        self._next_attempt = 0.0
        self._pause = CONNECT_PAUSE_SECONDS / 2  # doubled before the first pause
        self._closing = threading.Event()
        self._resender = threading.Thread(target=self._run_resends, name="nats-resend", daemon=True)
        self._resender.start()

    def handle(self, event: Event) -> None:
        with self._lock:
            if self._cursor.seq is None:
                self._cursor.advance(event.seq - 1)  # a first start: nothing before this lifetime is owed
            elif event.seq <= self._cursor.seq:
                return  # sent already, from the log
            if self._ready():
                if self._behind:
                    self._resend(event.seq)
                else:
                    self._send([event], event.seq)
            else:
                self._out()
            if self._behind:
                self._dropped = max(self._dropped, event.seq)

    def health(self) -> SinkHealth:
        counters = {"outages": self.outages, "resent": self.resent}
        if self._outage is not None:
            detail = f"unreachable since {self._outage}: {self._publisher.last_error or 'no answer'}"
            return SinkHealth(False, f"{detail}; events wait in the event log", counters)
        return SinkHealth(
            True, f"{self._publisher.servers}: publishing to stream {self._publisher.options.stream}", counters
        )

    def close(self) -> None:
        self._closing.set()
        self._resender.join(CLOSE_SECONDS)
        try:
            with self._lock:
                self._cursor.save()
        finally:
            self._publisher.close()

    def _run_resends(self) -> None:
        """Without waiting for the next event: resend once NATS is back (or at start), save the cursor."""
        while not self._closing.wait(CURSOR_SAVE_SECONDS):
            try:
                with self._lock:
                    if self._behind and self._ready():
                        self._resend(self._dropped)
                    self._cursor.save()
            except Exception:
                logger.exception("NATS sink: resending from the event log failed; trying again")

    def _ready(self) -> bool:
        """Connected with the stream there; after a failure, one attempt per pause (doubling) at most."""
        if self._publisher.connected and not self._behind:
            return True
        if self._clock() < self._next_attempt:
            return False
        try:
            self._publisher.connect()
        except JetStreamError:
            self._pause = min(2 * self._pause, MAX_CONNECT_PAUSE_SECONDS)
            self._next_attempt = self._clock() + self._pause
            return False
        self._pause = CONNECT_PAUSE_SECONDS / 2
        return True

    def _send(self, events: list[Event], covered: int) -> bool:
        """Publish; the cursor moves past what was acknowledged (to `covered` when all was)."""
        acked = self._publisher.publish(events) if events else 0
        if acked < len(events):
            if acked:
                self._cursor.advance(events[acked - 1].seq)
            self._out()
            return False
        self._cursor.advance(covered)
        return True

    def _resend(self, target: int) -> None:
        """Send what the log holds past the cursor, at least up to `target` (waiting a moment for the log
        writer); then go on live."""
        reader = EventLogReader(self._log_path, after_seq=self._cursor.seq or 0)
        deadline = self._clock() + LOG_WAIT_SECONDS
        batch: list[Event] = []
        sent = 0
        try:
            while True:
                for line in reader.read_new():
                    event = _event_of(line)
                    if event is not None:
                        batch.append(event)
                    if len(batch) >= RESEND_BATCH:
                        if not self._send(batch, reader.last_seq) or self._closing.is_set():
                            return
                        sent, batch = sent + len(batch), []
                if not self._send(batch, reader.last_seq):
                    return
                sent, batch = sent + len(batch), []
                if reader.last_seq >= target:
                    break
                if self._clock() > deadline or self._closing.wait(LOG_POLL_SECONDS):
                    return  # the log is not there yet: carry on from the cursor later
        finally:
            reader.close()
            self.resent += sent
            self._cursor.save()
        self._behind = False
        servers = self._publisher.servers
        if self._outage is not None:
            logger.warning("NATS sink: NATS (%s) is reachable again: %d events sent from the event log", servers, sent)
            self._outage = None
        elif sent:
            logger.info("NATS sink: %d events from before this start sent from the event log", sent)

    def _out(self) -> None:
        """NATS is out: once per outage, count it and say so."""
        self._behind = True
        if self._outage is not None:
            return
        self._outage = format_timestamp(utc_now())
        self.outages += 1
        logger.error(
            "NATS sink: %s; events wait in the event log and are sent from it when NATS is back",
            self._publisher.last_error or f"NATS ({self._publisher.servers}) is unreachable",
        )


def _event_of(line: Line) -> Event | None:
    """The event on a log line; None for a logging record."""
    if line.get("type") not in _EVENT_TYPES:
        return None
    try:
        return decode_event(line)
    except (KeyError, ValueError, TypeError):
        return None


def nats_sink(settings: Settings) -> NatsSink:
    """The entry point (`orchestrator_monitor.sinks`: `nats`): configured by the `[nats]` section."""
    options = settings.nats
    workspace = Workspace.from_settings(settings)
    token = None
    if options.token_file is not None:
        path = settings.resolve(options.token_file)
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise BadInput(f"nats.token_file: cannot read {path}: {exc.strerror}") from None
    credentials = None if options.credentials_file is None else settings.resolve(options.credentials_file)
    if credentials is not None and not credentials.is_file():
        raise BadInput(f"nats.credentials_file: {credentials} does not exist")
    publisher = JetStreamPublisher(options, token=token, credentials=credentials)
    return NatsSink(publisher, SentCursor(cursor_path(workspace, options.stream)), workspace.logs_dir / MONITOR_LOG)
