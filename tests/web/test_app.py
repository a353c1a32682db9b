"""The daemon's web app through httpx's ASGI transport: truthful /healthz, token, /metrics.

(Starlette's TestClient would do the same, but it touches an anyio alias that warns.)"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest
from orchestrator_monitor.errors import BadInput
from orchestrator_monitor.events.types import Event, EventType
from orchestrator_monitor.service.metrics import MonitorMetrics
from orchestrator_monitor.web.app import create_app
from orchestrator_monitor.web.front import check_exposure
from orchestrator_monitor.web.server import WebServer
from prometheus_client.parser import text_string_to_metric_families

TOKEN = "s3cret-token-0123456789"


class Client:
    def __init__(self, app: Any) -> None:
        self._app = app

    def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        async def fetch() -> httpx.Response:
            transport = httpx.ASGITransport(app=self._app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                return await http.get(path, headers=headers)

        return asyncio.run(fetch())


def client(report: dict[str, Any], token: str | None = None) -> tuple[Client, MonitorMetrics]:
    metrics = MonitorMetrics()
    metrics.bind(heartbeat_age=lambda: 1.5, detection_lag=lambda: 0.25, event_counts=lambda: {EventType.HEARTBEAT: 3})
    return Client(create_app(health=lambda: report, metrics=metrics, token=token)), metrics


def test_healthz_tells_the_truth() -> None:
    good, _ = client({"healthy": True})
    assert good.get("/healthz").status_code == 200
    bad, _ = client({"healthy": False, "checks": {"db_connection_check": {"status": "corrupt"}}})
    assert bad.get("/healthz").status_code == 503
    assert bad.get("/api/health").json()["checks"]["db_connection_check"]["status"] == "corrupt"


def test_a_token_guards_everything_but_healthz() -> None:
    app, _ = client({"healthy": True}, token=TOKEN)
    assert app.get("/healthz").status_code == 200
    assert app.get("/metrics").status_code == 401
    assert app.get("/api/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert app.get("/api/health", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_metrics_parse_and_count_runs_archives_requests_and_events() -> None:
    app, metrics = client({"healthy": True})
    metrics.handle(Event(1, "t", EventType.RUN_COMPLETED, "a:RUN_COMPLETED", {"status": "FAILED"}, "a"))
    metrics.handle(Event(2, "t", EventType.RUN_COMPLETED, "b:RUN_COMPLETED", {"status": "COMPLETED"}, "b"))
    metrics.handle(
        Event(3, "t", EventType.RUN_ARCHIVED, "b:RUN_ARCHIVED", {"files": 4, "bytes": 100, "seconds": 0.5}, "b")
    )
    app.get("/healthz")
    app.get("/no/such/page")
    p = "orchestrator_monitor_"
    samples = {
        (s.name.removeprefix(p), tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(app.get("/metrics").text)
        for s in family.samples
    }
    assert samples[("runs_completed_total", (("status", "FAILED"),))] == 1
    assert samples[("runs_completed_total", (("status", "COMPLETED"),))] == 1
    assert samples[("runs_failed_total", ())] == 1
    assert samples[("artifacts_archived_total", ())] == 4
    assert samples[("archived_bytes_total", ())] == 100
    assert samples[("dashboard_requests_total", (("code", "200"), ("path", "/healthz")))] == 1
    assert samples[("dashboard_requests_total", (("code", "404"), ("path", "other")))] == 1
    assert samples[("dashboard_request_duration_seconds_count", (("path", "/healthz"),))] == 1
    assert samples[("events_total", (("type", "HEARTBEAT"),))] == 3
    assert samples[("heartbeat_age_seconds", ())] == 1.5
    assert samples[("detection_lag_seconds", ())] == 0.25
    assert samples[("safe_mode", (("reason", "database_read_only"),))] == 0


def test_a_refused_request_is_counted_with_its_code() -> None:
    app, metrics = client({"healthy": True}, token=TOKEN)
    app.get("/api/health")
    text = metrics.render().decode()
    assert 'orchestrator_monitor_dashboard_requests_total{code="401",path="/api/health"} 1.0' in text


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "example.org"])
def test_a_host_other_than_loopback_needs_a_token(host: str) -> None:
    with pytest.raises(BadInput, match=r"not a loopback address and dashboard\.token is not set"):
        check_exposure(host, None)
    check_exposure(host, TOKEN)
    check_exposure("127.0.0.1", None)
    check_exposure("::1", None)


def test_the_idle_web_server_wakes_once_a_second() -> None:
    app, _ = client({"healthy": True})
    server = WebServer(app._app, "127.0.0.1", 0)
    quiet = server._server
    ticks: list[int] = []
    original = quiet.on_tick

    async def counted(counter: int) -> bool:
        ticks.append(counter)
        return await original(counter)

    quiet.on_tick = counted  # type: ignore[method-assign]
    server.start()
    try:
        response = httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=10)
        assert response.status_code == 200 and response.headers["date"].endswith("GMT")
        threading.Event().wait(2.5)  # the window we count wake-ups in (stock uvicorn: 25)
        assert 1 <= len(ticks) <= 4
    finally:
        server.close(10)
    assert not server._thread.is_alive()
