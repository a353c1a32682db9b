"""The daemon's web front: its app and dashboard served beside a running daemon, which never imports the web.

The command that starts the daemon asks `web_front(settings)` for it and hands it to
`run_daemon`; a host open to the network without a token is refused there, before anything
starts (exit 2). Starlette, uvicorn and the dashboard are imported when the front is served:
a daemon with `dashboard.enabled` off never pays their memory (bench/history.py --daemon).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..config import Settings
from ..errors import BadInput
from ..service.daemon import Front, RunningDaemon

if TYPE_CHECKING:
    from .server import WebServer

logger = logging.getLogger(__name__)

WEB_STOP_SECONDS = 3.0


def web_front(settings: Settings) -> Front | None:
    """The front to hand to `run_daemon`, or None with `dashboard.enabled` off; raises `BadInput` when exposed."""
    dashboard = settings.dashboard
    if not dashboard.enabled:
        return None
    check_exposure(dashboard.host, dashboard.token)
    return serve_web


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None) -> None:
    """A host other than loopback without a token is refused: the dashboard would be open to the network."""
    if not is_loopback(host) and token is None:
        raise BadInput(
            f"dashboard.host {host!r} is not a loopback address and dashboard.token is not set: "
            "set a token (at least 16 characters) or serve on 127.0.0.1"
        )


@contextmanager
def serve_web(daemon: RunningDaemon) -> Iterator[WebServer]:
    """`/healthz`, `/api/health`, `/metrics` and the dashboard on `dashboard.host:port` until the daemon stops."""
    from .app import create_app
    from .dashboard import open_dashboard
    from .server import WebServer

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


def dashboard_address(host: str, port: int) -> str:
    """The address to open in a browser (a wildcard host is reached on loopback)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"
