"""The daemon's HTTP server: uvicorn in a thread of its own, on a socket bound before it starts.

Binding here, in the daemon's main thread, makes a taken port or a refused address one clear
error at start (uvicorn would log it and `sys.exit` inside its thread). uvicorn only installs
signal handlers in the main thread, so in its own thread it leaves SIGTERM, SIGINT and
SIGHUP to the daemon; stopping is asking it to exit and joining the thread.

uvicorn's own loop wakes ten times a second to see whether it should stop: on an idle daemon
that was about half of all its CPU time (bench/idle.py). `_QuietServer` wakes once a second,
the resolution of the `Date` header it refreshes then, and at once when it is asked to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading

import uvicorn
from starlette.applications import Starlette

from ..errors import Unavailable

logger = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_SECONDS = 2  # open connections (an SSE client) get this long on stop
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
# asyncio's words when the server writes to a connection whose client has gone (a browser tab closed, curl
# killed, a reset) before the connection's loss reaches uvicorn: the client left, nothing went wrong.
CLIENT_GONE = "socket.send() raised exception."


class PlainMessages(logging.Filter):
    """uvicorn gives some records a `color_message` (the message with ANSI colour codes) that a JSON log
    would carry as a field of escape sequences; the plain `message` says the same."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)
        return True


class Demote(logging.Filter):
    """Lowers to DEBUG the records at `level` (or with the message `message`) of the logger it is put on, so
    that the JSONL sink (INFO and above) leaves them out: uvicorn's start and stop lines repeat what the
    daemon says itself, and a client leaving is not a warning."""

    def __init__(self, level: int | None = None, message: str | None = None) -> None:
        super().__init__()
        self.level, self.message = level, message

    def filter(self, record: logging.LogRecord) -> bool:
        if (self.level is None or record.levelno == self.level) and (self.message in (None, record.msg)):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def plain_uvicorn_logs() -> None:
    """Put `PlainMessages` on uvicorn's loggers and `Demote` on its INFO lines and on asyncio's note of a client
    gone, once however many servers start."""
    wanted: list[tuple[str, logging.Filter]] = [(name, PlainMessages()) for name in UVICORN_LOGGERS]
    wanted += [(name, Demote(level=logging.INFO)) for name in UVICORN_LOGGERS]
    wanted += [("asyncio", Demote(message=CLIENT_GONE))]
    for name, wanted_filter in wanted:
        logger_ = logging.getLogger(name)
        if not any(type(f) is type(wanted_filter) for f in logger_.filters):
            logger_.addFilter(wanted_filter)


class WebServer:
    """`start()` serves `app` on the bound socket; `close()` stops and joins."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
        # without it a response written in two parts waits ~40 ms for the client's delayed ACK (Nagle).
        self._socket = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
        except OSError as err:
            self._socket.close()
            raise Unavailable(f"dashboard cannot listen on {host}:{port}: {err.strerror}") from None
        self._socket.listen(128)
        self.port = self._socket.getsockname()[1]
        plain_uvicorn_logs()
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )
        self._server = _QuietServer(config)
        self._thread = threading.Thread(target=self._serve, name="web", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        except BaseException:  # SystemExit too: uvicorn exits on a failed start-up; say so, once
            logger.exception("the web server stopped")

    def close(self, timeout: float) -> None:
        self._server.stop()
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error("the web server did not stop within %.0f s", timeout)
        self._socket.close()


class _QuietServer(uvicorn.Server):
    """`uvicorn.Server` whose main loop ticks once a second, and wakes at once for `stop()`."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        counter = 0  # on_tick refreshes the Date header when counter % 10 == 0, as at every 10th of its ticks
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 1.0)

    def stop(self) -> None:
        """From any thread: exit (before the loop runs, the first tick sees `should_exit`)."""
        self.should_exit = True
        if self._loop is not None and self._stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed already
                self._loop.call_soon_threadsafe(self._stopping.set)
