"""The live web dashboard: pages, JSON API and event stream, read-only.

`open_dashboard` gives the routes that the daemon's app (`web/app.py` `create_app`) serves beside
`/healthz`, `/api/health` and `/metrics`, with what they need open behind them: a
read-only engine on the state database and the event hub's feed; and `end_streams`, for the
server to call before it stops.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

from starlette.routing import BaseRoute

from ...config import Settings
from ...events.bus import Bus
from ...events.log import refetch_events
from ...events.sinks.jsonl import MONITOR_LOG
from ...ledger.catalog import Catalog
from ...ledger.store import open_store
from ...timefmt import utc_now
from ...views.reader import state_reader
from ...workspace import Workspace
from .hub import BusFeed, EventHub, Feed, LogFeed
from .routes import DashboardContext, dashboard_routes


@dataclass(frozen=True)
class Dashboard:
    routes: list[BaseRoute]
    end_streams: Callable[[], None]  # `EventHub.end_streams`


@contextmanager
def open_dashboard(settings: Settings, bus: Bus | None) -> Iterator[Dashboard]:
    """The dashboard's routes, fed by the daemon's `bus` or, without one (another process publishes), by its log."""
    workspace = Workspace.from_settings(settings)
    log = workspace.logs_dir / MONITOR_LOG
    feed: Feed = (
        BusFeed(bus, settings.events.subscriber_queue_size)
        if bus is not None
        else LogFeed(log, partial(refetch_events, log))
    )
    hub = EventHub(feed)
    store = open_store(settings, readonly=True)
    catalog = None if store is None else Catalog(store)
    with state_reader(settings) as state:
        hub.start()
        try:
            context = DashboardContext(state, workspace, hub, utc_now, catalog)
            yield Dashboard(dashboard_routes(context), hub.end_streams)
        finally:
            hub.close()
            if store is not None:
                store.dispose()
