"""The dashboard over real HTTP: the daemon's app (`web/app.py` `create_app` with `open_dashboard`) served by
uvicorn in a thread of the test, fed by a real bus. API contract, bounds, token, SSE resume."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
from archive_support import add_terminal_run
from orchestrator_monitor.config import Settings, load_settings
from orchestrator_monitor.events.bus import Bus
from orchestrator_monitor.events.publishing import open_bus
from orchestrator_monitor.events.types import Event, EventType
from orchestrator_monitor.service.metrics import MonitorMetrics
from orchestrator_monitor.web.app import create_app
from orchestrator_monitor.web.dashboard import open_dashboard
from orchestrator_monitor.web.dashboard.hub import RING_SIZE, Client, format_event
from orchestrator_monitor.web.server import WebServer
from prometheus_client.parser import text_string_to_metric_families

TOKEN = "dashboard-token-0123456789"


@dataclass
class Served:
    url: str
    bus: Bus
    metrics: MonitorMetrics

    def get(self, path: str, **options: object) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10, **options)  # type: ignore[arg-type]


@pytest.fixture
def serve(simulated: tuple[Path, list[str]]) -> Iterator[object]:
    """Serve the simulated workspace's dashboard (with or without a token) on a loopback port."""
    workspace, _ = simulated
    started: list[tuple[WebServer, object]] = []

    def start(token: str | None = None) -> Served:
        settings: Settings = load_settings(workspace, config_file=None, overrides=["events.sinks="])
        bus_context = open_bus(settings, extra_sinks=False)
        bus = bus_context.__enter__()
        dashboard_context = open_dashboard(settings, bus)
        routes = dashboard_context.__enter__().routes
        metrics = MonitorMetrics()
        app = create_app(health=lambda: {"healthy": True}, metrics=metrics, token=token, dashboard=routes)
        server = WebServer(app, "127.0.0.1", 0)
        server.start()
        started.append((server, (dashboard_context, bus_context)))
        return Served(f"http://127.0.0.1:{server.port}", bus, metrics)

    yield start
    for server, contexts in started:
        server.close(5)
        for context in contexts:  # type: ignore[attr-defined]
            context.__exit__(None, None, None)


def test_needs_attention_puts_failed_and_partial_runs_first_then_running_ones(serve) -> None:
    served = serve()
    runs = served.get("/api/runs", params={"sort": "attention"}).json()["runs"]
    ranks = [{"FAILED": 0, "PARTIAL": 0, "RUNNING": 1, "PENDING": 1}.get(run["status"], 2) for run in runs]
    assert ranks == sorted(ranks) and ranks[0] < ranks[-1]


def test_a_failed_task_log_is_served_and_nothing_else(serve, simulated) -> None:
    workspace, _ = simulated
    served = serve()
    runs = [served.get(f"/api/runs/sim-{n}").json() for n in range(4)]
    run = next(run for run in runs if run["failed_tasks"])  # the simulated runs have failures
    run_id, task_id = run["run"]["run_id"], run["failed_tasks"][0]["task_id"]
    assert run["failed_tasks"][0]["log"] == f"runs/{run_id}/logs/{task_id}.log"
    log = served.get(f"/runs/{run_id}/logs/{task_id}")
    assert log.status_code == 200 and log.text.startswith("attempt ")
    assert served.get("/runs/sim-0/logs/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert served.get("/runs/sim-0/logs/sim-0.nothing").status_code == 404
    outside = workspace / "elsewhere"
    outside.mkdir()
    (outside / f"{task_id}.log").write_text("not the run's\n")
    logs = workspace / "runs" / run_id / "logs"
    logs.rename(logs.with_name("logs.old"))
    logs.symlink_to(outside)
    assert served.get(f"/runs/{run_id}/logs/{task_id}").status_code == 404  # never through a link


def test_runs_are_listed_paginated_with_progress(serve) -> None:
    served = serve()
    page = served.get("/api/runs", params={"limit": 2, "sort": "run_id", "order": "asc"}).json()
    assert page["total"] == 4 and page["limit"] == 2 and page["offset"] == 0
    assert [run["run_id"] for run in page["runs"]] == ["sim-0", "sim-1"]
    assert page["runs"][0]["tasks_total"] == 15 and page["runs"][0]["progress"] == 1.0
    assert page["by_status"] == {"RUNNING": 3, "CANCELLED": 1}
    rest = served.get("/api/runs", params={"limit": 2, "offset": 2, "sort": "run_id", "order": "asc"}).json()
    assert [run["run_id"] for run in rest["runs"]] == ["sim-2", "sim-3"]
    cancelled = served.get("/api/runs", params={"status": "CANCELLED"}).json()
    assert [run["run_id"] for run in cancelled["runs"]] == ["sim-3"] and cancelled["total"] == 1
    assert served.get("/api/runs", params={"q": "sim-2"}).json()["total"] == 1
    assert served.get("/api/runs", params={"q": "%"}).json()["total"] == 0  # LIKE wildcards are escaped


def test_a_run_has_detail_tasks_timeline_and_tool_health(serve) -> None:
    served = serve()
    run = served.get("/api/runs/sim-0").json()
    assert run["run"]["run_id"] == "sim-0" and {t["tool"] for t in run["tools"]} >= {"lint", "compile", "test"}
    assert len(run["workstreams"]) == 3 and run["tasks"]["total"] == 15
    timeline = served.get("/runs/sim-0/timeline.svg")
    assert timeline.headers["content-type"] == "image/svg+xml" and timeline.headers["x-tasks-drawn"] == "15"
    assert timeline.text.count('<g class="task ') == 15
    assert run["failed_total"] == run["run"]["outcomes"]["failed"] == len(run["failed_tasks"])
    failed = served.get("/api/runs/sim-0", params={"status": "FAILED"}).json()["tasks"]
    assert all(task["status"] == "FAILED" for task in failed["rows"])
    by_attempts = served.get("/api/runs/sim-0", params={"sort": "attempts", "order": "desc", "limit": 3}).json()
    attempts = [task["attempts"] for task in by_attempts["tasks"]["rows"]]
    assert attempts == sorted(attempts, reverse=True) and len(attempts) == 3
    tool = served.get("/api/runs/sim-0", params={"tool": "lint"}).json()["tasks"]
    assert tool["total"] == sum(t["tasks"] for t in run["tools"] if t["tool"] == "lint")


REFUSED = [
    ("/api/runs/nope-1", {}, 404),
    ("/api/runs/" + "x" * 129, {}, 400),
    ("/api/runs/.hidden", {}, 400),
    ("/api/runs/bad%20id", {}, 400),
    ("/runs/nope-1", {}, 404),
    ("/runs/bad%20id", {}, 400),
    ("/api/runs", {"limit": "201"}, 400),
    ("/api/runs", {"limit": "0"}, 400),
    ("/api/runs", {"offset": "100001"}, 400),
    ("/api/runs", {"limit": "-1"}, 400),
    ("/api/runs", {"sort": "secret; DROP TABLE runs"}, 400),
    ("/api/runs", {"status": "DONE"}, 400),
    ("/api/runs", {"q": "x" * 129}, 400),
    ("/api/runs", {"debug": "1"}, 400),
    ("/api/runs", {"q": "a" * 100, "status": "RUNNING", "sort": "name", "order": "up"}, 400),
    ("/api/runs/sim-0", {"sort": "error_message"}, 400),
    ("/runs/sim-0/files/..%2F..%2Fetc%2Fpasswd", {}, 404),
    ("/runs/sim-0/files/summary.json", {}, 404),
]


def test_bad_and_abusive_requests_are_refused(serve) -> None:
    served = serve()
    for path, params, status in REFUSED:
        response = served.get(path, params=params)
        assert (response.status_code, path, params) == (status, path, params), response.text
        kind = response.headers["content-type"]
        assert kind.startswith(("text/html", "text/plain")) or "error" in response.json()


def test_oversized_and_repeated_parameters_are_bounded(serve) -> None:
    served = serve()
    assert served.get("/api/runs?" + "&".join(f"q={n}" for n in range(2))).status_code == 400
    assert served.get("/api/runs?q=" + "a" * 3000).status_code == 400
    assert served.get("/api/runs?limit=99999999999999999999").status_code == 400


def test_pages_and_assets_are_served_from_the_package(serve) -> None:
    served = serve()
    index = served.get("/")
    assert index.status_code == 200 and "/static/dashboard.js" in index.text and "http" not in index.text.lower()
    assert served.get("/runs/sim-1").status_code == 200
    assert "Dashboard" in served.get("/static/dashboard.js").text
    assert served.get("/static/dashboard.css").headers["content-type"].startswith("text/css")


def test_the_token_guards_everything_but_healthz_and_requests_are_counted(serve) -> None:
    served = serve(TOKEN)
    for path in ("/", "/runs/sim-0", "/api/runs", "/api/runs/sim-0", "/static/dashboard.js", "/metrics"):
        assert served.get(path).status_code == 401, path
        assert served.get(path, headers={"Authorization": "Bearer wrong-token-000000000"}).status_code == 401
    assert served.get("/healthz").status_code == 200
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert served.get("/api/runs/sim-0", headers=bearer).status_code == 200
    page = served.get("/", params={"access_token": TOKEN})  # RFC 6750 2.3, what a browser can send
    assert page.status_code == 200 and f"dashboard.js?access_token={TOKEN}" in page.text
    counted = {
        (sample.labels["path"], sample.labels["code"]): sample.value
        for family in text_string_to_metric_families(served.get("/metrics", headers=bearer).text)
        for sample in family.samples
        if sample.name == "orchestrator_monitor_dashboard_requests_total"
    }
    assert counted[("/api/runs/{run_id}", "401")] == 2 and counted[("/api/runs/{run_id}", "200")] == 1
    assert counted[("/runs/{run_id}", "401")] == 2 and counted[("/healthz", "200")] == 1


def read_events(url: str, count: int, headers: dict[str, str] | None = None) -> list[dict[str, object]]:
    """The first `count` events of one SSE connection, then disconnect."""
    events: list[dict[str, object]] = []
    with httpx.stream("GET", url + "/events", headers=headers or {}, timeout=10) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        block: dict[str, str] = {}
        for line in response.iter_lines():
            if line:
                name, _, value = line.partition(":")
                block[name] = value.strip()
                continue
            if "data" in block:
                event = orjson.loads(block["data"])
                assert int(block["id"]) == event["seq"]
                events.append(event)
                if len(events) == count:
                    return events
            elif block.get("event") == "reset":
                events.append({"reset": True})
                return events
            block = {}
    return events


def publish_warnings(bus: Bus, count: int, start: int = 0) -> list[int]:
    return [bus.publish(EventType.WARNING, {"what": "test", "detail": str(n)}) for n in range(start, start + count)]


def test_sse_resumes_after_a_reconnect_with_last_event_id(serve) -> None:
    served = serve()
    first = publish_warnings(served.bus, 5)
    replayed = read_events(served.url, 3, {"Last-Event-ID": str(first[1])})
    assert [event["seq"] for event in replayed] == first[2:]
    missed = publish_warnings(served.bus, 4, start=5)  # while disconnected
    resumed = read_events(served.url, 4, {"Last-Event-ID": str(first[-1])})
    assert [event["seq"] for event in resumed] == missed
    assert [event["data"]["detail"] for event in resumed] == ["5", "6", "7", "8"]  # type: ignore[index]


def test_sse_resumes_from_the_log_beyond_the_ring(serve) -> None:
    served = serve()
    seqs = publish_warnings(served.bus, RING_SIZE + 50)
    served.bus.flush()
    resumed = read_events(served.url, 60, {"Last-Event-ID": str(seqs[9])})
    assert [event["seq"] for event in resumed] == seqs[10:70]


def test_a_client_that_falls_behind_is_dropped_not_waited_for() -> None:
    async def fill() -> Client:
        client = Client(asyncio.get_running_loop(), queue_size=3)
        for seq in range(1, 6):
            client.push((seq, format_event(Event(seq, "2026-01-01T00:00:00Z", EventType.WARNING, str(seq), {}))))
        return client

    client = asyncio.run(fill())
    assert client.dropped


def test_an_unknown_run_page_is_a_page_of_the_dashboard(serve) -> None:
    served = serve()
    response = served.get("/runs/nope-1")
    assert response.status_code == 404
    assert "/static/dashboard.css" in response.text and "No run nope-1" in response.text and 'href="/"' in response.text


def test_a_runs_events_are_listed_in_seq_order(serve) -> None:
    served = serve()
    served.bus.publish(
        EventType.RUN_COMPLETED, {"status": "COMPLETED", "marked_by": "monitor", "tasks": {}}, run_id="sim-1"
    )
    served.bus.publish(EventType.WARNING, {"what": "other", "detail": "x"}, run_id="sim-2")

    def listed() -> list[str]:
        return [line["type"] for line in served.get("/api/runs/sim-1/events").json()["events"]]

    deadline = time.monotonic() + 10
    while "RUN_COMPLETED" not in listed() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert listed() == ["RUN_COMPLETED"]
    assert served.get("/api/runs/nope-1/events").status_code == 404


def test_verify_checks_the_archive_on_request(serve, simulated, cli) -> None:
    workspace, _ = simulated
    add_terminal_run(workspace, "arch")
    served = serve()
    assert served.get("/api/runs/arch/verify").status_code == 404  # not archived
    assert cli("archive", "--run", "arch", "--workspace", str(workspace)).code == 0
    result = served.get("/api/runs/arch/verify").json()
    assert result["ok"] is True and result["payload_files"] >= 1 and result["problems"] == [], result
    manifest = workspace / ".archive" / "arch" / "manifest-sha256.txt"
    manifest.chmod(0o644)
    manifest.write_text(manifest.read_text().replace("0", "1", 1))
    result = served.get("/api/runs/arch/verify").json()
    assert result["ok"] is False and result["problem_count"] >= 1
