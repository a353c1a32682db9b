"""Escalation hooks that fail: logged, never raised, and never with the secrets a webhook or a command holds."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from orchestrator_monitor.config import EscalationSettings
from orchestrator_monitor.service.escalation import deliver_escalation
from support import free_port

SECRET = "Xs3cr3tX"  # a webhook's token is its path or query: recognisable wherever it leaks
EVENT = {"trigger": "database_corrupt", "severity": "critical", "detail": "d"}


class Refuse(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.send_error(500, "broken pager")

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads the monitor's log, not the server's."""


@pytest.fixture
def failing_server() -> Iterator[int]:
    """An HTTP server on loopback that answers every POST with 500; its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_failing_webhook_is_logged_by_its_host_only(failing_server: int, caplog: pytest.LogCaptureFixture) -> None:
    answering, closed = f"127.0.0.1:{failing_server}", f"127.0.0.1:{free_port()}"
    cases = {
        f"http://{answering}/hooks/{SECRET}?key={SECRET}": f"{answering}/*** failed: HTTP 500 broken pager",
        f"http://{closed}/hooks/{SECRET}": f"{closed}/*** failed: Connection refused",
        f"http://{closed}/hooks/a {SECRET}": f"{closed}/*** failed: not a valid URL",  # http.client quotes it
    }
    for webhook, logged in cases.items():
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="orchestrator_monitor.service.escalation"):
            deliver_escalation(EscalationSettings(webhook=webhook, timeout_seconds=5), EVENT)  # never raises
        assert [record.getMessage() for record in caplog.records] == [f"escalation webhook http://{logged}"]
        assert SECRET not in caplog.text


def test_a_command_that_times_out_is_logged_without_its_arguments(caplog: pytest.LogCaptureFixture) -> None:
    command = f"sh -c 'exec sleep 30' --token {SECRET}"
    with caplog.at_level(logging.WARNING, logger="orchestrator_monitor.service.escalation"):
        deliver_escalation(EscalationSettings(command=command, timeout_seconds=0.2), EVENT)
    assert [record.getMessage() for record in caplog.records] == ["escalation command sh timed out after 0.2 s"]
    assert SECRET not in caplog.text
