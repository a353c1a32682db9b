"""The `nats` sink: every event to NATS JetStream, at least once, never holding the bus back.

Each event goes to `<subject_prefix>.<TYPE>` with its JSON line as payload, its `id` as
`Nats-Msg-Id` (JetStream stores a resent event once within the stream's duplicate window) and
the run and daemon ids as headers; the stream is created when missing. The bus feeds the sink
from a thread and a bounded queue of its own, and while NATS is connected the sink waits there
for each acknowledgement, trying an event `nats.retries` more times before NATS counts as out.

Otherwise the sink drops what it is handed at once (the bus never notices, and a SIGTERM is
never held up by a connection attempt): every event is in `logs/monitor.jsonl` anyway. A
durable cursor keeps the `seq` of this daemon's events up to which everything was
acknowledged, and a resend thread of the sink's own connects (at once, then every
`CONNECT_PAUSE_SECONDS` doubling up to `MAX_CONNECT_PAUSE_SECONDS`), sends what the log holds
past the cursor in the order written, rotated files included, until the last event dropped is
among it, and only then lets the sink go on live; the two threads never publish at once, so
each run's events arrive in order. A daemon restarted with a cursor on
disk starts behind, so events published while NATS was down are sent after a restart too (a
first start begins at its first event: the history before it is not sent). An outage is
logged once, counted, and shown by health until it is over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
FINAL_RESEND_SECONDS = 2.0  # at close, what is still owed is sent from the log for this long at most
LOG_POLL_SECONDS = 0.02
RESEND_BATCH = 500  # events read from the log and sent per round trip to the event loop
LOG_GIVE_UP_SECONDS = 30.0  # a dropped event not in the log after this long of nothing new there was lost by it
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
        self._pass: _ResendPass | None = None  # a resend under way, kept while it waits for the log writer
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
        if self._send([event]):
            self._cursor.advance(event.seq)
        else:
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
        """Within a few seconds whatever NATS does: a connection attempt under way is cancelled; while
        connected, what the sink still owes (the last events, dropped during a resend) is sent from the
        log for up to FINAL_RESEND_SECONDS; the cursor is saved for the next start."""
        self._closing.set()
        if not self._publisher.connected:
            self._publisher.cancel()
        if self._resender.is_alive():
            self._resender.join(CLOSE_SECONDS)
        try:
            if not self._resender.is_alive():
                self._send_what_is_owed()
        except Exception:
            logger.exception("NATS sink: sending what was still owed at close failed; the next start sends it")
        finally:
            if self._pass is not None:
                self._pass.reader.close()
            self._save_cursor()
            self._publisher.close()

    def _send_what_is_owed(self) -> None:
        deadline = self._clock() + FINAL_RESEND_SECONDS
        while self._behind and self._publisher.connected:
            self._resend(final=True)
            if not self._behind or self._clock() > deadline:
                return
            time.sleep(LOG_POLL_SECONDS)  # bounded by the deadline: the log writer is a moment behind

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
        if self._pass is not None and self._publisher.connected:
            return True  # a resend waiting for the log writer: no need to ask about the stream again
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

    def _send(self, events: list[Event]) -> bool:
        """Publish; False, and NATS out, unless JetStream acknowledged every one."""
        if events and self._publisher.publish(events) < len(events):
            with self._state:
                self._out()
            return False
        return True

    def _resend(self, *, final: bool = False) -> None:
        """Send what the log holds past the cursor, in the order written, until the last event dropped is
        among it; then hand over to the bus's thread. While the log writer has not got there yet, the pass
        is kept and goes on from where it stopped at the next call.

        The cursor moves only to an event of this daemon (the last dropped), never to a line of another
        process in between (their seqs are from a later block): those are sent too, and again by a later
        resend, which JetStream's de-duplication absorbs within its window.
        """
        if self._pass is None:
            with self._state:
                first = self._dropped
            reader = EventLogReader(self._log_path, after_seq=self._cursor.seq or 0, in_file_order=True)
            self._pass = _ResendPass(reader, first, self._clock())
        resend, batch, read = self._pass, [], False
        for line in resend.reader.read_new():
            read = True
            if line["seq"] >= resend.first:
                resend.seen.add(line["seq"])
            event = _event_of(line)
            if event is not None:
                batch.append(event)
            if len(batch) >= RESEND_BATCH:
                if not self._send_resent(batch) or (self._closing.is_set() and not final):
                    return
                batch = []
        if not self._send_resent(batch):
            return
        with self._state:
            caught_up = self._dropped in resend.seen
            lost = not caught_up and not read and self._clock() - resend.quiet_since > LOG_GIVE_UP_SECONDS
            if caught_up or lost:
                self._cursor.advance(self._dropped)
                self._behind = False
        if read:
            resend.quiet_since = self._clock()
        if not (caught_up or lost):
            return  # the log writer is not there yet: go on next time round
        resend.reader.close()
        self._pass = None
        self._save_cursor()
        if lost:
            logger.error("NATS sink: events up to seq %d never reached the event log: not sent", self._cursor.seq)
        if self._outage is not None:
            self._outage = None
            servers = self._publisher.servers
            logger.warning(
                "NATS sink: NATS (%s) is reachable again: %d events sent from the event log", servers, resend.sent
            )
        elif self._restarted:
            logger.info("NATS sink: %d events of an earlier run of the daemon sent from the event log", resend.sent)
        self._restarted = False

    def _send_resent(self, batch: list[Event]) -> bool:
        """A failed batch ends the pass: the next one starts again from the cursor."""
        assert self._pass is not None
        if self._send(batch):
            self._pass.sent += len(batch)
            self.resent += len(batch)
            return True
        self._pass.reader.close()
        self._pass = None
        return False

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


@dataclass
class _ResendPass:
    """A resend under way: where the log was read to, and which seqs from `first` (the first event dropped)
    on were seen, so the last event dropped can be looked for among them."""

    reader: EventLogReader
    first: int
    quiet_since: float  # when a read last found something new
    seen: set[int] = field(default_factory=set)
    sent: int = 0


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
