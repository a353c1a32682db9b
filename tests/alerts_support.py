"""Real alert receivers on loopback: an HTTP server (apprise's json://, form://, and mmost:// whose payload is
Slack's incoming-webhook format), an SMTP server (aiosmtpd), and an HTTPS proxy that answers in the place of
Slack and Teams (`HttpsInterceptor`). Each records what it received."""

from __future__ import annotations

import email
import email.policy
import http.client
import ssl
import threading
from collections.abc import Callable
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme
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


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return None


class _Served(_Received):
    """An HTTP server on loopback at `port`, on a thread of its own, until `stop`."""

    port: int
    _server: ThreadingHTTPServer | None = None

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class HttpReceiver(_Served):
    """POSTs on `port` (chosen free, so it can be started after a sender already tried it): (path, body)."""

    def __init__(self, port: int | None = None) -> None:
        super().__init__()
        self.port = port or free_port()

    def start(self) -> HttpReceiver:
        received = self

        class Handler(_Quiet):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.add((self.path, self.headers.get("Content-Type", ""), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._serve(Handler)
        return self


class HttpsInterceptor(_Served):
    """An HTTPS proxy on loopback that ends each tunnel itself, with a certificate for the host asked for, signed
    by a CA of its own (`ca_file`). A client told to use it (HTTPS_PROXY) and to trust that CA
    (REQUESTS_CA_BUNDLE) sends its real request, to the real URL, here: `items` are (host, path, body);
    every answer is 200 `ok` (what a Slack webhook says)."""

    def __init__(self, ca_file: Path) -> None:
        super().__init__()
        self.port = free_port()
        self.ca_file = ca_file
        self._ca = trustme.CA()
        self._ca.cert_pem.write_to_path(str(ca_file))
        self._contexts: dict[str, ssl.SSLContext] = {}

    def _context(self, host: str) -> ssl.SSLContext:
        if host not in self._contexts:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._ca.issue_cert(host).configure_cert(context)
            self._contexts[host] = context
        return self._contexts[host]

    def start(self) -> HttpsInterceptor:
        interceptor = self

        class Handler(_Quiet):
            def do_CONNECT(self) -> None:
                host = self.path.rpartition(":")[0]
                self.send_response(200, "Connection established")
                self.end_headers()
                with interceptor._context(host).wrap_socket(self.connection, server_side=True) as tls:
                    reader = tls.makefile("rb")
                    _, path, _ = reader.readline().decode("latin-1").split(" ", 2)
                    headers = http.client.parse_headers(reader)
                    body = reader.read(int(headers.get("Content-Length", 0)))
                    interceptor.add((host, path, body))
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                self.close_connection = True

        self._serve(Handler)
        return self


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
