"""The dashboard's routes, all listed in `dashboard_routes`: pages, JSON API, event stream, assets.

Handlers that read the database are plain functions, which Starlette runs in its thread
pool, so a read waiting on an executor's lock (busy timeout) never holds up the event loop
or the event streams. Each reads in one short read-only transaction (`reads.py`).
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ...archive.verify import verify_bag
from ...errors import BadInput, Unavailable
from ...ids import run_id_problem
from ...ledger.catalog import Catalog, Page
from ...state.access import StateDatabase
from ...workspace import Workspace
from .guard import TOKEN_PARAMETER
from .hub import EventHub
from .params import BadParameter, parse_archive_filter, parse_run_filter, parse_task_filter
from .reads import (
    UnknownRun,
    read_run_events,
    read_run_page,
    read_runs_page,
    read_task_log,
    read_timeline,
    run_exists,
    run_files,
)
from .sse import stream_events

STATIC_DIR = Path(__file__).parent / "static"
VERIFICATIONS_AT_ONCE = 1
VERIFY_PROBLEMS_SHOWN = 20
_ASSET_QUERY = "{{asset_query}}"
_FILE_TYPES = {".json": "application/json", ".html": "text/html; charset=utf-8", ".txt": "text/plain; charset=utf-8"}


@dataclass(frozen=True)
class DashboardContext:
    """What the dashboard reads: the state database (read-only), the workspace, the event hub."""

    state: StateDatabase
    workspace: Workspace
    hub: EventHub
    now: Callable[[], datetime]
    catalog: Catalog | None = None  # the archive catalog (None: no monitor database yet)


def json_response(document: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(document, option=orjson.OPT_NON_STR_KEYS), status_code, media_type="application/json")


def _error(err: Exception) -> Response:
    """The API's answer to a refused or failed request: 404 unknown run, 400 bad input, 503 database unavailable."""
    status = 404 if isinstance(err, UnknownRun) else 400 if isinstance(err, BadInput | BadParameter) else 503
    return json_response({"error": str(err)}, status)


def _page(name: str, request: Request) -> HTMLResponse:
    """A page shell; with a token in the address, the assets it loads carry it too."""
    token = request.query_params.get(TOKEN_PARAMETER)
    query = html.escape(f"?{TOKEN_PARAMETER}={quote(token, safe='')}") if token else ""
    text = (STATIC_DIR / name).read_text(encoding="utf-8").replace(_ASSET_QUERY, query)
    return HTMLResponse(text, headers={"Cache-Control": "no-store"})


def _message_page(request: Request, title: str, text: str, status_code: int) -> HTMLResponse:
    """An error page that looks like the dashboard and leads back to the runs."""
    token = request.query_params.get(TOKEN_PARAMETER)
    query = html.escape(f"?{TOKEN_PARAMETER}={quote(token, safe='')}") if token else ""
    body = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} · orchestrator'
        f'</title><link rel="stylesheet" href="/static/dashboard.css{query}"></head><body>'
        f'<header><a href="/{query}">← runs</a><h1>{html.escape(title)}</h1></header>'
        f'<p class="banner bad">{html.escape(text)}</p></body></html>'
    )
    return HTMLResponse(body, status_code)


def _archives_page(page: Page | None, query: str) -> HTMLResponse:
    """The catalog as a plain table (no script): the same filters as `/api/archives`, in the address."""
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape('' if value is None else str(value))}</td>"
            for value in (
                e.run_id,
                e.name,
                e.status,
                e.finished_at or e.archived_at,
                e.files,
                e.bytes,
                e.verified_at,
                e.verify_result,
            )
        )
        + "</tr>"
        for e in (page.entries if page is not None else [])
    )
    total = page.total if page is not None else 0
    heads = "".join(
        f"<th>{name}</th>" for name in ("run", "name", "status", "ended", "files", "bytes", "verified", "result")
    )
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>archives · orchestrator</title>'
        f'<link rel="stylesheet" href="/static/dashboard.css{query}"></head><body>'
        f'<header><a href="/{query}">← runs</a><h1>Archives</h1></header>'
        f"<p>{total} archives match; the newest {len(page.entries) if page else 0} by the run's end.</p>"
        f'<table class="wide"><thead><tr>{heads}</tr></thead><tbody>{rows}</tbody></table></body></html>'
    )
    return HTMLResponse(body, headers={"Cache-Control": "no-store"})


def dashboard_routes(context: DashboardContext) -> list[BaseRoute]:
    """Every dashboard route, for `web/app.py` `create_app` to mount beside health and metrics."""
    verifying = threading.Semaphore(VERIFICATIONS_AT_ONCE)

    def runs_page(request: Request) -> Response:
        return _page("index.html", request)

    def run_page(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        problem = run_id_problem(run_id)
        if problem is not None:
            return _message_page(request, "invalid run id", problem, 400)
        try:
            if not run_exists(context.state, run_id):
                return _message_page(request, "unknown run", f"No run {run_id} in the state database.", 404)
        except Unavailable as err:
            return _message_page(request, "database unavailable", str(err), 503)
        return _page("run.html", request)

    def api_runs(request: Request) -> Response:
        try:
            wanted = parse_run_filter(request.query_params, len(request.scope.get("query_string", b"")))
            return json_response(read_runs_page(context.state, wanted, context.now()))
        except (BadParameter, BadInput, Unavailable) as err:
            return _error(err)

    def api_run(request: Request) -> Response:
        try:
            wanted = parse_task_filter(request.query_params, len(request.scope.get("query_string", b"")))
            document = read_run_page(
                context.state,
                context.workspace,
                request.path_params["run_id"],
                wanted,
                context.now(),
            )
            return json_response(document)
        except (BadParameter, BadInput, Unavailable) as err:
            return _error(err)

    def search_archives(request: Request) -> tuple[Page | None, int, int]:
        params = request.query_params
        if TOKEN_PARAMETER in params:  # a page's address carries the token
            params = QueryParams([(k, v) for k, v in params.multi_items() if k != TOKEN_PARAMETER])
        where, limit, offset = parse_archive_filter(params, len(request.scope.get("query_string", b"")))
        page = None if context.catalog is None else context.catalog.search(where, limit=limit, offset=offset)
        return page, limit, offset

    def api_archives(request: Request) -> Response:
        """The archive catalog, searched and paged as `orchestrator archives search` does."""
        try:
            page, limit, offset = search_archives(request)
        except BadParameter as err:
            return _error(err)
        archives, total = (page.entries, page.total) if page is not None else ([], 0)
        return json_response({"archives": archives, "total": total, "limit": limit, "offset": offset})

    def archives_page(request: Request) -> Response:
        try:
            page, _, _ = search_archives(request)
        except BadParameter as err:
            return _message_page(request, "bad search", str(err), 400)
        token = request.query_params.get(TOKEN_PARAMETER)
        return _archives_page(page, html.escape(f"?{TOKEN_PARAMETER}={quote(token, safe='')}") if token else "")

    def run_file(request: Request) -> Response:
        run_id, name = request.path_params["run_id"], request.path_params["name"]
        if run_id_problem(run_id) is not None:
            return json_response({"error": "invalid run id"}, 400)
        path = run_files(context.workspace, run_id).get(name)
        if path is None or not path.is_file():
            return json_response({"error": f"no {name} for run {run_id}"}, 404)
        return FileResponse(path, media_type=_FILE_TYPES.get(path.suffix, "application/octet-stream"))

    def timeline(request: Request) -> Response:
        try:
            drawing = read_timeline(context.state, request.path_params["run_id"], context.now())
        except (BadInput, Unavailable) as err:
            return _error(err)
        headers = {
            "Cache-Control": "no-store",
            "X-Tasks-Drawn": str(drawing.drawn),
            "X-Tasks-Total": str(drawing.total),
        }
        return Response(drawing.svg, media_type="image/svg+xml", headers=headers)

    def run_events(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        try:
            if not run_exists(context.state, run_id):
                return json_response({"error": f"unknown run: {run_id}"}, 404)
            return json_response({"events": read_run_events(context.workspace, context.hub, run_id)})
        except (BadInput, Unavailable) as err:
            return _error(err)

    def verify(request: Request) -> Response:
        """The bag's fixity, checked now (read-only; one check at a time, as it reads every file)."""
        run_id = request.path_params["run_id"]
        if run_id_problem(run_id) is not None:
            return json_response({"error": "invalid run id"}, 400)
        bag = context.workspace.archive_root / run_id
        if not bag.is_dir():
            return json_response({"error": f"run {run_id} is not archived"}, 404)
        if not verifying.acquire(blocking=False):
            return json_response({"error": "a verification is running already; try again when it is done"}, 503)
        try:
            result = verify_bag(bag)
        finally:
            verifying.release()
        return json_response(
            {
                "ok": result.ok,
                "payload_files": result.payload_files,
                "tag_files": result.tag_files,
                "problems": result.problems[:VERIFY_PROBLEMS_SHOWN],
                "problem_count": len(result.problems),
            }
        )

    def task_log_file(request: Request) -> Response:
        run_id, task_id = request.path_params["run_id"], request.path_params["task_id"]
        if run_id_problem(run_id) is not None:
            return json_response({"error": "invalid run id"}, 400)
        try:
            path = read_task_log(context.state, context.workspace, run_id, task_id)
        except Unavailable as err:
            return _error(err)
        if path is None:
            return json_response({"error": f"no log of task {task_id} in run {run_id}"}, 404)
        return FileResponse(path, media_type="text/plain; charset=utf-8")

    async def events(request: Request) -> Response:
        return await stream_events(request, context.hub)

    return [
        Route("/", runs_page, methods=["GET"]),
        Route("/runs/{run_id}", run_page, methods=["GET"]),
        Route("/runs/{run_id}/files/{name}", run_file, methods=["GET"]),
        Route("/runs/{run_id}/logs/{task_id}", task_log_file, methods=["GET"]),
        Route("/runs/{run_id}/timeline.svg", timeline, methods=["GET"]),
        Route("/api/runs", api_runs, methods=["GET"]),
        Route("/api/archives", api_archives, methods=["GET"]),
        Route("/archives", archives_page, methods=["GET"]),
        Route("/api/runs/{run_id}", api_run, methods=["GET"]),
        Route("/api/runs/{run_id}/events", run_events, methods=["GET"]),
        Route("/api/runs/{run_id}/verify", verify, methods=["GET"]),
        Route("/events", events, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
