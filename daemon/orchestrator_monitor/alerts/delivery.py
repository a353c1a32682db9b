"""Delivering the outbox through apprise, on a thread of its own, with retries and exponential backoff.

Nothing here runs on the bus's thread or the detector's: a receiver that is down or slow only
makes this thread wait (apprise's own connect and read timeouts bound each attempt). A failed
attempt is retried after `retry_seconds`, doubled per attempt up to `max_retry_seconds`; after
`max_attempts` the alert is undeliverable (counted, logged, shown by `health`) until the next
start tries it again. Log lines name a destination by its scheme and host (of apprise's privacy form), never
the URL: apprise's logger, which may quote more, is kept to its errors, urllib3's (the request path) from
its debug lines.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import ModuleType

from ..config import AlertsSettings, alert_urls, url_origin
from ..errors import Unavailable
from .outbox import Outbox, Pending, destination_id

logger = logging.getLogger(__name__)

DUE_BATCH = 100  # rows taken per look at the outbox
FORGET_EVERY_SECONDS = 3600.0  # delivered rows past their de-duplication window are removed this often


def import_apprise() -> ModuleType:
    """apprise, an optional extra: `Unavailable` (exit 3) naming the extra when it is not installed."""
    try:
        import apprise
    except ImportError:
        raise Unavailable("alert rules need apprise: pip install 'orchestrator-monitor[alerts]'") from None
    return apprise


class Destination:
    """One apprise URL, parsed once."""

    def __init__(self, url: str) -> None:
        apprise = import_apprise()
        self._apprise = apprise.Apprise()
        plugin = apprise.Apprise.instantiate(url)
        # apprise's privacy form masks passwords and tokens it knows of, but keeps a webhook's path whole
        self.shown = url_origin(plugin.url(privacy=True)) if plugin else "an unusable apprise URL"
        self.usable = bool(plugin) and self._apprise.add(plugin)

    def send(self, title: str, body: str) -> bool:
        return self.usable and bool(self._apprise.notify(body=body, title=title))


def send_alert(url: str, title: str, body: str) -> tuple[bool, str]:
    """Deliver once now (for `orchestrator alerts test`): whether it went, and the URL as it may be shown."""
    destination = Destination(url)
    return destination.send(title, body), destination.shown


class Delivery:
    """Takes due rows from the outbox and sends them until stopped; `wake` when a row was added."""

    def __init__(
        self,
        outbox: Outbox,
        settings: AlertsSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        import_apprise()
        logging.getLogger("apprise").setLevel(logging.ERROR)  # its warnings may quote a URL's credentials
        logging.getLogger("urllib3").setLevel(logging.INFO)  # its debug lines quote the path: a webhook's token
        self._outbox = outbox
        self._clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._destinations: dict[str, Destination] = {}
        self._forgotten_at = 0.0
        self.sent = 0
        self.undeliverable = 0
        self.configure(settings)
        self._thread = threading.Thread(target=self._run, name="alert-delivery", daemon=True)

    def configure(self, settings: AlertsSettings) -> None:
        """Take new settings (SIGHUP): destinations kept when their URL is, parsed when new."""
        known = self._destinations
        self._destinations = {
            destination_id(url): known.get(destination_id(url)) or Destination(url) for url in alert_urls(settings)
        }
        self._settings = settings
        self._wake.set()

    def start(self) -> None:
        retried = self._outbox.retry_given_up()
        if retried:
            logger.info("%d alerts not delivered before are tried again", retried)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def close(self, timeout: float) -> None:
        """Stop after the attempt under way; what is pending stays in the outbox for the next start."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error("alert delivery did not stop within %.0f s", timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_delivery_iteration(self._clock())
                next_due = self._outbox.next_due()
            except Exception:
                logger.exception("alert delivery pass failed; trying again")
                next_due = None
            # Nothing due: sleep until an alert is added (a summary is a row due later, so it has a time).
            wait = None if next_due is None else next_due - self._clock()
            if wait is None or wait > 0:
                self._wake.wait(wait)
            self._wake.clear()

    def run_delivery_iteration(self, now: float) -> None:
        """Send every row due at `now` (a batch at a time), marking each as it goes."""
        if now - self._forgotten_at >= FORGET_EVERY_SECONDS:
            self._outbox.forget_delivered(now)
            self._forgotten_at = now
        while not self._stop.is_set():
            rows = self._outbox.due(now, DUE_BATCH)
            for row in rows:
                if self._stop.is_set():
                    return
                self._deliver(row)
            if len(rows) < DUE_BATCH:
                return

    def _deliver(self, row: Pending) -> None:
        destination = self._destinations.get(row.destination)
        if destination is None:
            logger.warning("alert %s of rule %s dropped: its destination is no longer configured", row.key, row.rule)
            self._outbox.drop(row.id)
            return
        try:
            sent = destination.send(row.title, row.body)
        except Exception as err:  # a plug-in's bug must not stop the thread; its message may quote the URL
            logger.warning("alert %s to %s raised %s", row.key, destination.shown, type(err).__name__)
            sent = False
        if sent:
            self._outbox.delivered(row.id, self._clock())
            self.sent += 1
            return
        attempts = row.attempts + 1
        settings = self._settings
        if attempts >= settings.max_attempts or not destination.usable:
            self._outbox.failed(row.id, retry_at=None)
            self.undeliverable += 1
            logger.error(
                "alert %s of rule %s to %s is undeliverable after %d attempts; it is tried again at the next start",
                row.key,
                row.rule,
                destination.shown,
                attempts,
            )
            return
        delay = min(settings.retry_seconds * 2 ** (attempts - 1), settings.max_retry_seconds)
        self._outbox.failed(row.id, retry_at=self._clock() + delay)
        logger.warning(
            "alert %s to %s failed (attempt %d of %d); retrying in %g s",
            row.key,
            destination.shown,
            attempts,
            settings.max_attempts,
            delay,
        )
