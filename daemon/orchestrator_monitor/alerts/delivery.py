"""Delivering the alerts' outbox through apprise (the thread, retries and backoff: `events/outbox.py`).

A receiver that is down or slow only makes the delivery thread wait (apprise's own connect and
read timeouts bound each attempt). Log lines name a destination by its scheme and host (of
apprise's privacy form), never the URL: apprise's logger, which may quote more, is kept to its
errors, urllib3's (the request path) from its debug lines.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from importlib.util import find_spec
from types import ModuleType

from ..config import AlertsSettings, alert_urls, url_origin
from ..errors import Unavailable
from ..events.outbox import Attempt, Outbox, OutboxDelivery, Pending
from .outbox import destination_id

logger = logging.getLogger(__name__)


NO_APPRISE = "alert rules need apprise: pip install 'orchestrator-monitor[alerts]'"


def require_apprise() -> None:
    """`Unavailable` (exit 3) naming the extra when apprise is not installed, without importing it: its
    import costs the daemon about 4 MB that a daemon whose alerts have no destination never uses
    (bench/history.py --daemon)."""
    if find_spec("apprise") is None:
        raise Unavailable(NO_APPRISE)


def import_apprise() -> ModuleType:
    """apprise, an optional extra, imported when a destination needs it: `Unavailable` when not installed."""
    try:
        import apprise
    except ImportError:
        raise Unavailable(NO_APPRISE) from None
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


class Delivery(OutboxDelivery):
    """Sends the due alerts to their apprise destinations until stopped; `wake` when a row was added."""

    def __init__(
        self,
        outbox: Outbox,
        settings: AlertsSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        require_apprise()
        logging.getLogger("apprise").setLevel(logging.ERROR)  # its warnings may quote a URL's credentials
        logging.getLogger("urllib3").setLevel(logging.INFO)  # its debug lines quote the path: a webhook's token
        super().__init__(outbox, settings, name="alert", clock=clock)
        self._destinations: dict[str, Destination] = {}
        self.configure(settings)

    def configure(self, settings: AlertsSettings) -> None:
        """Take new settings (SIGHUP): destinations kept when their URL is, parsed when new."""
        known = self._destinations
        self._destinations = {
            destination_id(url): known.get(destination_id(url)) or Destination(url) for url in alert_urls(settings)
        }
        self.policy = settings
        self.wake()

    def describe(self, row: Pending) -> str:
        destination = self._destinations.get(row.destination)
        shown = destination.shown if destination is not None else "a destination no longer configured"
        return f"alert {row.key} of rule {row.payload['rule']} to {shown}"

    def send(self, row: Pending) -> Attempt:
        destination = self._destinations.get(row.destination)
        if destination is None:
            logger.warning("%s dropped", self.describe(row))
            return Attempt.DROPPED
        if destination.send(row.payload["title"], row.payload["body"]):
            return Attempt.SENT
        return Attempt.FAILED if destination.usable else Attempt.HOPELESS
