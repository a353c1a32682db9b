"""The `nats` sink: every event to NATS JetStream, at least once, never holding the bus back.

Each event goes to `<subject_prefix>.<TYPE>` with its JSON line as payload, its `id` as
`Nats-Msg-Id` (JetStream stores a resent event once within the stream's duplicate window) and
the run and daemon ids as headers; the stream is created when missing. The bus feeds the sink
from a thread and a bounded queue of its own, and while NATS is connected the sink waits there
for each acknowledgement, trying an event `nats.retries` more times before NATS counts as out.

Otherwise the sink drops what it is handed at once (the bus never notices, and a SIGTERM is
never held up by a connection attempt): every event is in `logs/monitor.jsonl` anyway. A
durable cursor keeps the last `seq` up to which everything was acknowledged, and a resend
thread of the sink's own connects (at once, then every `CONNECT_PAUSE_SECONDS` doubling up to
`MAX_CONNECT_PAUSE_SECONDS`), sends what the log holds past the cursor, rotated files included,
at least up to the last event dropped, and only then lets the sink go on live; the two threads
never publish at once, so each run's events arrive in order. A daemon restarted with a cursor on
disk starts behind, so events published while NATS was down are sent after a restart too (a
first start begins at its first event: the history before it is not sent). An outage is
logged once, counted, and shown by health until it is over.
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

CONNECT_PAUSE_SECONDS = 1.0  # after a failed attempt to connect, the next one waits this long
MAX_CONNECT_PAUSE_SECONDS = 8.0  # ... doubling up to this while NATS stays out
RESEND_POLL_SECONDS = 0.2  # how often the resend thread looks whether there is something to do
RESEND_BATCH = 500  # events read from the log and sent per round trip to the event loop
LOG_WAIT_SECONDS = 1.0  # how long a resend waits for the log writer to reach the last event dropped
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
        # Who publishes: the bus's thread while live, the resend thread while behind; the switch
        # and the dropped events' bound change together under this lock, so nothing falls between.
        self._state = threading.Lock()
        self._behind = True  # until connected and caught up with the log past the cursor
        self._restarted = cursor.seq is not None  # a cursor from an earlier run: what lies past it is owed
        self._dropped = 0  # the last seq dropped while behind: a resend must reach it in the log
        self._outage: str | None = None  # since when NATS is out, while it is
        self._next_attempt = 0.0
        self._pause = CONNECT_PAUSE_SECONDS / 2  # doubled before the first pause
        self._saved_at = 0.0
        self._cursor_failed = False
        self._closing = threading.Event()
        # Started by the first event: by then the bus runs, and its log takes what the thread logs.
        self._resender = threading.Thread(target=self._run_resends, name="nats-resend", daemon=True)

    def handle(self, event: Event) -> None:
        if self._cursor.seq is None:
            self._cursor.advance(event.seq - 1)  # a first start: nothing before this lifetime is owed
        elif event.seq <= self._cursor.seq:
            return  # sent already, from the log
        if self._resender.ident is None:
            self._resender.start()
        with self._state:
            if not self._behind and not self._publisher.connected:
                self._out()  # the connection closed since the last event
            if self._behind:
                self._dropped = max(self._dropped, event.seq)
                return
        if not self._send([event], event.seq):
            with self._state:
                self._dropped = max(self._dropped, event.seq)

    def health(self) -> SinkHealth:
        counters = {"outages": self.outages, "resent": self.resent}
        if self._outage is not None:
            detail = f"unreachable since {self._outage}: {self._publisher.last_error or 'no answer'}"
            return SinkHealth(False, f"{detail}; events wait in the event log", counters)
        state = "sending what it missed from the log" if self._behind else "publishing"
        return SinkHealth(
            True, f"{self._publisher.servers}: {state} (stream {self._publisher.options.stream})", counters
        )

    def close(self) -> None:
        """Within a few seconds whatever NATS does: an attempt under way is cancelled, the cursor saved."""
        self._closing.set()
        self._publisher.cancel()
        if self._resender.is_alive():
            self._resender.join(CLOSE_SECONDS)
        try:
            self._save_cursor()
        finally:
            self._publisher.close()

    def _run_resends(self) -> None:
        """Connect when not connected, resend what was missed, save the cursor; until closed."""
        failure = ""
        while not self._closing.is_set():
            try:
                if self._behind and self._ready():
                    self._resend()
                if self._clock() - self._saved_at >= CURSOR_SAVE_SECONDS:
                    self._save_cursor()
                failure = ""
            except Exception as err:
                if repr(err) != failure:  # once, not every time round
                    logger.exception("NATS sink: resending from the event log failed; trying again")
                failure = repr(err)
            self._closing.wait(RESEND_POLL_SECONDS)

    def _ready(self) -> bool:
        """Connected with the stream there; after a failure, one attempt per pause (doubling) at most."""
        if self._clock() < self._next_attempt:
            return False
        try:
            self._publisher.connect()
        except JetStreamError:
            self._pause = min(2 * self._pause, MAX_CONNECT_PAUSE_SECONDS)
            self._next_attempt = self._clock() + self._pause
            with self._state:
                self._out()
            return False
        self._pause = CONNECT_PAUSE_SECONDS / 2
        return True

    def _send(self, events: list[Event], covered: int) -> bool:
        """Publish; the cursor moves past what was acknowledged (to `covered` when all was)."""
        acked = self._publisher.publish(events) if events else 0
        if acked < len(events):
            if acked:
                self._cursor.advance(events[acked - 1].seq)
            with self._state:
                self._out()
            return False
        self._cursor.advance(covered)
        return True

    def _resend(self) -> None:
        """Send what the log holds past the cursor, at least up to the last event dropped (waiting a moment
        for the log writer to get there); then hand over to the bus's thread."""
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
                with self._state:
                    if reader.last_seq >= self._dropped:
                        self._behind = False
                        break
                if self._clock() > deadline or self._closing.wait(LOG_POLL_SECONDS):
                    return  # the log is not there yet: carry on from the cursor next time round
        finally:
            reader.close()
            self.resent += sent
            self._save_cursor()
        if self._outage is not None:
            self._outage = None
            servers = self._publisher.servers
            logger.warning("NATS sink: NATS (%s) is reachable again: %d events sent from the event log", servers, sent)
        elif self._restarted:
            logger.info("NATS sink: %d events of an earlier run of the daemon sent from the event log", sent)
        self._restarted = False

    def _out(self) -> None:
        """NATS is out (called under `_state`): once per outage, count it and say so."""
        self._behind = True
        if self._outage is not None or self._closing.is_set():  # closing cancels what is under way: no outage
            return
        self._outage = format_timestamp(utc_now())
        self.outages += 1
        logger.error(
            "NATS sink: %s; events wait in the event log and are sent from it when NATS is back",
            self._publisher.last_error or f"NATS ({self._publisher.servers}) is unreachable",
        )

    def _save_cursor(self) -> None:
        """A cursor that cannot be written is said once; it is tried again at the next save."""
        self._saved_at = self._clock()
        try:
            self._cursor.save()
        except OSError as err:
            if not self._cursor_failed:
                logger.error("NATS sink: cannot save the cursor %s: %s", self._cursor.path, err.strerror)
            self._cursor_failed = True
        else:
            self._cursor_failed = False


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
    return NatsSink(
        publisher, SentCursor.load(cursor_path(workspace, options.stream)), workspace.logs_dir / MONITOR_LOG
    )
