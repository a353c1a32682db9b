"""bench/bus.py's helpers for issue #16: the daemon's bus with the alert and OpenLineage sinks, and an alert burst.

The sinks are wired as `service/daemon.py` wires them: the alert sink (one rule, FAILED runs, to a
`json://` receiver on loopback) and the OpenLineage sink (file transport), each fed from its own
thread and bounded queue.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from orchestrator_monitor.alerts.sink import AlertSink, open_alert_sink
from orchestrator_monitor.config import AlertRule, AlertsSettings, OpenLineageSettings, Settings, load_settings
from orchestrator_monitor.events.bus import Bus
from orchestrator_monitor.events.publishing import open_bus
from orchestrator_monitor.events.types import EventType
from orchestrator_monitor.lineage.sink import open_lineage_sink
from orchestrator_monitor.workspace import Workspace

BURST_SECONDS_GOAL = 10.0


class Receiver:
    """A JSON webhook on loopback that counts what it received."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with receiver._changed:
                    receiver.count += 1
                    receiver._changed.notify_all()

            def log_message(self, format: str, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.count >= count, timeout)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def sink_settings(directory: Path, port: int, *, throttle_count: int, throttle_seconds: float) -> Settings:
    settings = load_settings(directory, environ={}, overrides=["events.sinks="])
    rule = AlertRule(
        name="failed", statuses=["FAILED"], throttle_count=throttle_count, throttle_seconds=throttle_seconds
    )
    return settings.model_copy(
        update={
            "alerts": AlertsSettings(urls=[f"json://127.0.0.1:{port}/hook"], rules=[rule]),
            "openlineage": OpenLineageSettings(enabled=True, transport="file"),
        }
    )


@contextlib.contextmanager
def open_bus_with_sinks(settings: Settings) -> Iterator[tuple[Bus, AlertSink]]:
    """The daemon's bus (as bench/bus.py's daemon runs open it) plus the alert and OpenLineage sinks."""
    queue_size = settings.events.subscriber_queue_size
    with open_bus(settings) as bus:
        alerts = open_alert_sink(
            settings.alerts, Workspace.from_settings(settings).progress_db, busy_timeout_seconds=5, details=None
        )
        alerts.wire(bus, queue_size=queue_size)
        open_lineage_sink(settings, lambda run_id: None).wire(bus, queue_size=queue_size)
        yield bus, alerts


def run_burst(directory: Path, runs: int, *, throttle_count: int, throttle_seconds: float) -> tuple[int, float, bool]:
    """Publish `runs` FAILED completions at once: alerts expected, seconds until all were received, in time."""
    receiver = Receiver()
    expected = min(runs, throttle_count) + (1 if runs > throttle_count else 0)
    settings = sink_settings(directory, receiver.port, throttle_count=throttle_count, throttle_seconds=throttle_seconds)
    try:
        with open_bus_with_sinks(settings) as (bus, _):
            start = time.perf_counter()
            for n in range(runs):
                data = {"status": "FAILED", "marked_by": "monitor", "tasks": {"FAILED": 1}}
                bus.publish(EventType.RUN_COMPLETED, data, run_id=f"burst-{n:04d}")
            in_time = receiver.wait_for(expected, BURST_SECONDS_GOAL + throttle_seconds)
            seconds = time.perf_counter() - start
    finally:
        receiver.close()
    return expected, seconds, in_time and seconds <= BURST_SECONDS_GOAL
