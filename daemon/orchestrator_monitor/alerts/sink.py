"""The alert sink: the bus feeds it events on its own thread; matching rules put alerts in the outbox.

Per rule and run (or event, for one that is not about a run) one alert: the outbox's unique key
ignores a repeat (an event replayed after a crash, a run completed again). Past a rule's
`throttle_count` within its window the rest are held back, and one summary per window, due
when the window ends, says how many and which. Past `alerts.queue_size` alerts waiting,
further ones are dropped, counted and logged: a dead receiver must not fill the disk.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..config import AlertRule, AlertsSettings
from ..errors import BadInput
from ..events.bus import Bus
from ..events.outbox import Outbox
from ..events.types import Event, EventType
from .delivery import Delivery
from .facts import RunDetails, event_facts
from .message import render_alert, render_summary
from .outbox import alert_outbox, destination_id
from .rules import AlertFacts, Held, Throttle, check_rules, rule_matches

logger = logging.getLogger(__name__)

SINK_NAME = "alerts"  # on the bus, in its stats and health
CLOSE_SECONDS = 5.0  # a delivery attempt under way at shutdown is given this long


class AlertSink:
    """`handle(event)` and `close()`, as the bus wants a sink; `configure` on SIGHUP; `stats` for health and metrics."""

    def __init__(
        self,
        settings: AlertsSettings,
        outbox: Outbox,
        *,
        details: RunDetails | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._outbox = outbox
        self._details = details
        self._clock = clock
        self._throttle = Throttle()
        self._lock = threading.Lock()  # configure (main thread) against handle (the sink's thread)
        self.dropped = 0
        self.delivery = Delivery(outbox, settings, clock=clock)
        self._settings = settings
        self._bus: Bus | None = None

    @staticmethod
    def types(settings: AlertsSettings) -> frozenset[EventType]:
        """The event types some rule matches: the bus hands this sink only those (none: it costs nothing)."""
        return frozenset(EventType(name) for rule in settings.rules for name in rule.events)

    def wire(self, bus: Bus, *, queue_size: int) -> None:
        """Feed this sink from `bus` (its own thread and queue) and start delivering; a reload retypes it there."""
        bus.add_sink(self, name=SINK_NAME, queue_size=queue_size, types=self.types(self._settings))
        self._bus = bus
        self.delivery.start()

    def configure(self, settings: AlertsSettings) -> None:
        """Take reloaded rules and URLs, a rule on a type no rule had included; `BadInput` (the running ones
        kept) when a rule names an unknown event."""
        problem = check_rules(settings.rules)
        if problem is not None:
            raise BadInput(problem)
        with self._lock:
            self._settings = settings
            self.delivery.configure(settings)
        if self._bus is not None:
            self._bus.set_sink_types(SINK_NAME, self.types(settings))

    def handle(self, event: Event) -> None:
        with self._lock:
            settings = self._settings
        facts: AlertFacts | None = None
        for rule in settings.rules:
            if event.type not in rule.events:
                continue
            facts = facts or event_facts(event, self._details)
            if rule_matches(rule, facts):
                self._raise(settings, rule, facts)

    def _raise(self, settings: AlertsSettings, rule: AlertRule, facts: AlertFacts) -> None:
        key = f"{rule.name}:{facts.key}"
        if self._outbox.known(key):
            return
        destinations = [destination_id(url) for url in rule.urls or settings.urls]
        now = self._clock()
        held = self._throttle.admit(rule, facts.key, now)
        if held is not None:
            self._hold(rule, held, destinations)
            return
        if self._outbox.counts()["pending"] >= settings.queue_size:
            self.dropped += 1
            logger.error("alert %s dropped: %d alerts already wait for delivery", key, settings.queue_size)
            return
        title, body = render_alert(rule, facts)
        payload = {"rule": rule.name, "title": title, "body": body}
        self._outbox.add(key, destinations, payload, due=now, keep_seconds=rule.dedup_seconds)
        self.delivery.wake()

    def _hold(self, rule: AlertRule, held: Held, destinations: list[str]) -> None:
        title, body = render_summary(rule, held)
        key = f"{rule.name}:summary:{held.window_started:.6f}"
        payload = {"rule": rule.name, "title": title, "body": body}
        self._outbox.add(
            key, destinations, payload, due=held.window_ends, keep_seconds=rule.dedup_seconds, replace=True
        )

    def stats(self) -> dict[str, int]:
        """`sent`, `undeliverable` (this process), `dropped`, and the outbox's `pending`."""
        return {
            "sent": self.delivery.sent,
            "undeliverable": self.delivery.undeliverable,
            "dropped": self.dropped,
            "pending": self._outbox.counts()["pending"],
        }

    def close(self) -> None:
        self.delivery.close(CLOSE_SECONDS)
        self._outbox.close()


def open_alert_sink(
    settings: AlertsSettings, progress_db: Path, *, busy_timeout_seconds: float, details: RunDetails | None
) -> AlertSink:
    """The daemon's alert sink over the workspace's outbox; `BadInput` for rules naming unknown events."""
    problem = check_rules(settings.rules)
    if problem is not None:
        raise BadInput(problem)
    return AlertSink(settings, alert_outbox(progress_db, busy_timeout_seconds=busy_timeout_seconds), details=details)
