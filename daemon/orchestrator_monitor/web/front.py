"""The daemon's web front: whether the daemon serves one, and whether it may where configured.

The command that starts the daemon asks `web_front(settings)` for it and hands it to
`run_daemon`; a host open to the network without a token is refused there, before anything
starts (exit 2). Starlette, uvicorn and the dashboard (`serve.py`) are imported only with
`dashboard.enabled` on: a daemon without the dashboard never carries their memory (bench/history.py
--daemon). They are imported here, before the daemon starts, not when it serves the front: then
its start-up reconciliation would hold the GIL against them and the import would delay READY.
"""

from __future__ import annotations

import ipaddress

from ..config import Settings
from ..errors import BadInput
from ..service.daemon import Front


def web_front(settings: Settings) -> Front | None:
    """The front to hand to `run_daemon`, or None with `dashboard.enabled` off; raises `BadInput` when exposed."""
    dashboard = settings.dashboard
    if not dashboard.enabled:
        return None
    check_exposure(dashboard.host, dashboard.token)
    from .serve import serve_web

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


def dashboard_address(host: str, port: int) -> str:
    """The address to open in a browser (a wildcard host is reached on loopback)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"
