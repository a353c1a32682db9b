"""The daemon's read-only web app: every route listed in one place, in `create_app`.

`/healthz` answers 200 only when the daemon is live and every check passes, 503 otherwise
(a probe must be told the truth, unlike a health endpoint that always says 200);
`/api/health` says why; `/metrics` is the Prometheus text format. An optional bearer token
guards everything but `/healthz`. Requests are counted by route, never by raw path, so a
scanner cannot blow up the metric's label set.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..service.metrics import CONTENT_TYPE, MonitorMetrics
from .dashboard.guard import presented_token, route_label

OPEN_PATHS = frozenset({"/healthz"})


class CountRequests:
    """`dashboard_requests_total{path,code}` and the latency histogram, by route template (`other` when unrouted).

    Counted when the response is over (an event stream's when its client leaves); a request whose
    app raised before answering counts as 500.
    """

    def __init__(self, app: ASGIApp, metrics: MonitorMetrics, routes: Sequence[BaseRoute]) -> None:
        self._app = app
        self._metrics = metrics
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        code = 500

        async def send_counted(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_counted)
        finally:
            path = route_label(self._routes, scope)
            self._metrics.dashboard_requests.labels(path, str(code)).inc()
            self._metrics.request_duration.labels(path).observe(time.perf_counter() - started)


class RequireToken:
    """A bearer token (header, or `access_token` for pages) on every path but the open ones; none configured: open."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self._app = app
        self._expected = f"Bearer {token}".encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._expected is None or scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self._app(scope, receive, send)
            return
        if hmac.compare_digest(presented_token(scope), self._expected):
            await self._app(scope, receive, send)
            return
        response = PlainTextResponse("a bearer token is required\n", 401, {"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


HealthReport = Callable[[], dict[str, Any]]  # `Supervisor.report` in the daemon: at least `healthy`


def create_app(
    *, health: HealthReport, metrics: MonitorMetrics, token: str | None, dashboard: Sequence[BaseRoute] = ()
) -> Starlette:
    """The daemon's app; it only reads (health, metrics, `dashboard` routes), never changing the daemon's state."""

    async def healthz(request: Request) -> Response:
        report = health()
        return PlainTextResponse("ok\n" if report["healthy"] else "unhealthy\n", 200 if report["healthy"] else 503)

    async def api_health(request: Request) -> Response:
        report = health()
        return JSONResponse(report, 200 if report["healthy"] else 503)

    async def prometheus(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    routes = [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/api/health", api_health, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
        *dashboard,
    ]
    middleware = [Middleware(CountRequests, metrics=metrics, routes=routes), Middleware(RequireToken, token=token)]
    return Starlette(routes=routes, middleware=middleware)
