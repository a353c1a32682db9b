"""The daemon's web front as it runs: `/healthz`, `/api/health`, `/metrics` and the dashboard, served by
uvicorn beside the daemon until it stops (`front.py` decides whether there is one)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from ..service.daemon import RunningDaemon
from .app import create_app
from .dashboard import open_dashboard
from .front import dashboard_address
from .server import WebServer

logger = logging.getLogger(__name__)

WEB_STOP_SECONDS = 3.0


@contextmanager
def serve_web(daemon: RunningDaemon) -> Iterator[WebServer]:
    """`/healthz`, `/api/health`, `/metrics` and the dashboard on `dashboard.host:port` until the daemon stops."""
    config = daemon.settings.dashboard
    with open_dashboard(daemon.settings, daemon.bus) as dashboard:
        app = create_app(health=daemon.health, metrics=daemon.metrics, token=config.token, dashboard=dashboard.routes)
        server = WebServer(app, config.host, config.port)
        server.start()
        logger.info("dashboard on %s", dashboard_address(config.host, server.port))
        try:
            yield server
        finally:
            dashboard.end_streams()
            server.close(WEB_STOP_SECONDS)
