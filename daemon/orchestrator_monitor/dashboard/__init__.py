"""The live web dashboard: pages, JSON API and event stream, read-only.

`dashboard_routes(context)` is what the daemon's app (`web.create_app`) mounts beside
`/healthz`, `/api/health` and `/metrics`; `create_dashboard_app` serves the same routes on
their own (tests, benchmarks), with the token and the request counter around them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from .guard import CountRequest, CountRequests, RequireToken
from .routes import DashboardContext, dashboard_routes

__all__ = ["DashboardContext", "create_dashboard_app", "dashboard_routes"]


def create_dashboard_app(
    context: DashboardContext,
    *,
    token: str | None,
    count_request: CountRequest,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The dashboard alone; its lifespan starts the event hub's feed and stops it."""
    routes = [*extra_routes, *dashboard_routes(context)]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        context.hub.start()
        try:
            yield
        finally:
            context.hub.close()

    middleware = [
        Middleware(CountRequests, routes=routes, count=count_request),
        Middleware(RequireToken, token=token),
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
