"""What the daemon's web server says in `logs/monitor.jsonl`: its address once, no ANSI codes, no error for an
event stream still open when it stops."""

from __future__ import annotations

import socket
from pathlib import Path

from support import DaemonProcess, EventLog


def test_the_address_is_logged_plainly_and_an_open_stream_ends_quietly_on_stop(workspace: Path, start_daemon) -> None:
    daemon: DaemonProcess = start_daemon(workspace)
    log = EventLog(workspace)
    address = f"dashboard on http://127.0.0.1:{daemon.port}/"
    log.wait_for(lambda log: any(line.get("message") == address for line in log.read()), what="the address")
    stream = socket.create_connection(("127.0.0.1", daemon.port))
    try:
        stream.sendall(b"GET /events HTTP/1.1\r\nHost: test\r\n\r\n")
        assert stream.recv(64).startswith(b"HTTP/1.1 200")
        code, _ = daemon.stop()
        assert code == 0
    finally:
        stream.close()
    text = (workspace / "logs" / "monitor.jsonl").read_text()
    assert "color_message" not in text and "\\u001b" not in text and "\x1b" not in text
    noisy = [line for line in log.read() if line.get("level") in ("WARNING", "ERROR", "CRITICAL")]
    assert noisy == [], noisy  # uvicorn cancelled the stream and logged an ERROR with a traceback before
