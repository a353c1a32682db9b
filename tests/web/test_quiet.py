"""What the daemon's web server says in `logs/monitor.jsonl`: its address once, no ANSI codes, no error for an
event stream still open when it stops."""

from __future__ import annotations

import socket
import struct
import threading
from pathlib import Path

from support import DaemonProcess, EventLog, Writer


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


def _reset(stream: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a killed browser or a dropped network does."""
    stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.close()


def _open_events(port: int, last_event_id: int = 0) -> socket.socket:
    stream = socket.create_connection(("127.0.0.1", port))
    stream.sendall(b"GET /events HTTP/1.1\r\nHost: test\r\nLast-Event-ID: %d\r\n\r\n" % last_event_id)
    assert stream.recv(64).startswith(b"HTTP/1.1 200")
    return stream


def test_clients_leaving_event_streams_abruptly_log_nothing_and_uvicorn_says_nothing_at_info(
    workspace: Path, start_daemon
) -> None:
    daemon: DaemonProcess = start_daemon(workspace)
    log = EventLog(workspace)
    writer = Writer(workspace)
    streams = [_open_events(daemon.port) for _ in range(20)]
    for n, stream in enumerate(streams):  # while events flow: half reset, half closed (FIN) without a word
        writer.add_run(f"leave-{n}", ["SUCCEEDED"] * 10)
        if n % 2:
            _reset(stream)
        else:
            stream.close()
    slow = _open_events(daemon.port)  # reads nothing while many events come, then resets
    for n in range(100):
        writer.add_run(f"flood-{n}", ["SUCCEEDED"] * 5)
    log.wait_for(lambda log: len(log.events("RUN_COMPLETED")) == 120, timeout=120, what="every run completed")
    _reset(slow)
    for _ in range(10):  # resuming from the start: gone while its backlog of hundreds of events is written
        _reset(_open_events(daemon.port, last_event_id=1))
    last = _open_events(daemon.port)  # gone while the daemon stops
    stopping = threading.Thread(target=daemon.stop)
    stopping.start()
    _reset(last)
    stopping.join()
    assert daemon.process.returncode == 0
    lines = [line for line in log.read() if line.get("type") == "log"]
    noisy = [line for line in lines if line.get("level") in ("WARNING", "ERROR", "CRITICAL")]
    assert noisy == [], noisy  # asyncio logged "socket.send() raised exception." for each write to a client gone
    assert [line for line in lines if str(line.get("logger")).startswith("uvicorn")] == []
    assert any(line.get("message", "").startswith("dashboard on http://") for line in lines)
