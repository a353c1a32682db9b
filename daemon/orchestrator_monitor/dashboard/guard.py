"""The dashboard's two middlewares: the bearer token, and `dashboard_requests_total{path}`.

A browser cannot put an `Authorization` header on a page it navigates to, so the token is
also taken from the `access_token` query parameter (RFC 6750, section 2.3); the pages
then send it as a header on every API and event-stream request they make. Requests are
counted by route template (`/api/runs/{run_id}`), never by raw path, so a scanner cannot
blow up the metric's label set.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from urllib.parse import parse_qs

from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

OPEN_PATHS = frozenset({"/healthz"})
TOKEN_PARAMETER = "access_token"

CountRequest = Callable[[str], None]  # called with the route template of every HTTP request


def presented_token(scope: Scope) -> bytes:
    """`Authorization: Bearer <token>`, or the `access_token` query parameter in the same form."""
    header = dict(scope["headers"]).get(b"authorization")
    if header is not None:
        return bytes(header)
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(TOKEN_PARAMETER, [])
    return f"Bearer {values[0]}".encode() if len(values) == 1 else b""


class RequireToken:
    """Every path but the open ones needs the token; no token configured: open (loopback only, see webserver)."""

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


def route_label(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The template of the route that serves `scope`, `other` when none does."""
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return str(getattr(route, "path", "other"))
    return "other"


class CountRequests:
    """Calls `count(label)` once per HTTP request, before it is served."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute], count: CountRequest) -> None:
        self._app = app
        self._routes = routes
        self._count = count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self._count(route_label(self._routes, scope))
        await self._app(scope, receive, send)
