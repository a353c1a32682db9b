"""Real alert receivers on loopback: an HTTP server (apprise's json://, form://, and mmost:// whose payload is
Slack's incoming-webhook format) and an SMTP server (aiosmtpd). Each records what it received."""

from __future__ import annotations

import email
import email.policy
import threading
from collections.abc import Callable
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from support import free_port

RECEIVE_SECONDS = 30.0


class _Received:
    """Items and a condition to wait on, shared by both receivers."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = threading.Condition()

    def add(self, item: Any) -> None:
        with self._changed:
            self.items.append(item)
            self._changed.notify_all()

    def wait_for(self, condition: Callable[[list[Any]], bool], what: str, timeout: float = RECEIVE_SECONDS) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: condition(self.items), timeout):
                raise AssertionError(f"timed out waiting for {what}; received {len(self.items)}")


class HttpReceiver(_Received):
    """POSTs on `port` (chosen free, so it can be started after a sender already tried it): (path, body)."""

    def __init__(self, port: int | None = None) -> None:
        super().__init__()
        self.port = port or free_port()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> HttpReceiver:
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.add((self.path, self.headers.get("Content-Type", ""), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class MailReceiver(_Received):
    """An SMTP server (aiosmtpd) on loopback; `items` are the parsed messages."""

    def __init__(self) -> None:
        super().__init__()
        self.port = free_port()
        received = self

        class Handler:
            async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
                received.add(email.message_from_bytes(envelope.content, policy=email.policy.default))
                return "250 OK"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self) -> MailReceiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    @staticmethod
    def text(message: EmailMessage) -> str:
        part = message.get_body(preferencelist=("plain",))
        assert part is not None
        return str(part.get_content())


def write_alert_config(workspace: Path, rules: str, *, urls: tuple[str, ...] = (), extra: str = "") -> None:
    """`<workspace>/config/monitor.toml` with [alerts] (fast retries, for tests) and the given rules."""
    quoted = ", ".join(f'"{url}"' for url in urls)
    text = f"[alerts]\nurls = [{quoted}]\nretry_seconds = 0.2\nmax_retry_seconds = 1.0\n{extra}\n{rules}"
    (workspace / "config").mkdir(exist_ok=True)
    (workspace / "config" / "monitor.toml").write_text(text)
