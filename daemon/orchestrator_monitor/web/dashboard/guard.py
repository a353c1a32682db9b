"""How `web/app.py`'s middlewares see a dashboard request: the token presented, the route to count it under.

A browser cannot put an `Authorization` header on a page it navigates to, so the token is
also taken from the `access_token` query parameter (RFC 6750, section 2.3); the pages then
send it as a header on every API and event-stream request they make. Requests are counted
by route template (`/api/runs/{run_id}`), never by raw path, so a scanner cannot blow up
the label set of `dashboard_requests_total`.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import parse_qs

from starlette.routing import BaseRoute, Match
from starlette.types import Scope

TOKEN_PARAMETER = "access_token"


def presented_token(scope: Scope) -> bytes:
    """`Authorization: Bearer <token>`, or the `access_token` query parameter in the same form."""
    header = dict(scope["headers"]).get(b"authorization")
    if header is not None:
        return bytes(header)
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(TOKEN_PARAMETER, [])
    return f"Bearer {values[0]}".encode() if len(values) == 1 else b""


def route_label(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The template of the route that serves `scope`, `other` when none does."""
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return str(getattr(route, "path", "other"))
    return "other"
