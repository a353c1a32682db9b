"""A blocking face on nats-py's asyncio JetStream client, for a sink that runs on a plain thread.

nats-py is asyncio only, so the client lives in an event loop of its own on a daemon thread;
the sink's thread hands it one coroutine at a time and waits for the answer, each bounded by
the configured timeouts, so nothing waits forever. Once connected, the client reconnects by
itself for a moment (`RECONNECT_ATTEMPTS` per server) and then gives up, so neither a first
connection nor a lost one can hang a call: the sink calls `connect` again, as often as it
chooses. The client's own error reports are kept, not logged: the sink logs an outage once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import os
import threading
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

try:
    import nats
    import nats.errors
    import nats.js.errors
    from nats.aio.client import Client
    from nats.js.client import JetStreamContext
except ImportError as missing:  # what `events.sinks = ["nats"]` then says, in its one line
    raise ImportError(f"{missing}: install the nats extra (pip install 'orchestrator-monitor[nats]')") from None

from ...config import NatsSettings, url_origin
from ..types import Event, encode_event

RECONNECT_SECONDS = 1.0  # nats-py's pause between attempts on one server
RECONNECT_ATTEMPTS = 1  # nats-py's further tries per server before `connect` fails or a lost connection closes
RETRY_PAUSE_SECONDS = 0.2  # before another try to publish one event
CLOSE_SECONDS = 3.0  # closing the connection and stopping the loop; SIGTERM must end the daemon in 10 s
RUN_HEADER = "Orchestrator-Run"
DAEMON_HEADER = "Orchestrator-Daemon"
MSG_ID_HEADER = "Nats-Msg-Id"  # JetStream stores a message once per id within the stream's duplicate window

T = TypeVar("T")


class JetStreamError(Exception):
    """NATS cannot take the events now (unreachable, no stream, no ack in time); the message says why."""


def event_subject(prefix: str, event: Event) -> str:
    return f"{prefix}.{event.type}"


def event_headers(event: Event) -> dict[str, str]:
    headers = {MSG_ID_HEADER: event.id}
    if event.run_id is not None:
        headers[RUN_HEADER] = event.run_id
    if event.daemon is not None:
        headers[DAEMON_HEADER] = event.daemon
    return headers


class JetStreamPublisher:
    """One connection and one stream; `publish` returns how many events JetStream acknowledged, in order."""

    def __init__(self, options: NatsSettings, *, token: str | None = None, credentials: Path | None = None) -> None:
        self.options = options
        self.last_error = ""  # what the client last reported (for the outage's log line and health)
        self._token = token
        self._credentials = credentials
        self._calls: set[concurrent.futures.Future[Any]] = set()  # under way, for `cancel`
        self._client: Client | None = None
        self._context: JetStreamContext | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nats-loop", daemon=True)
        self._thread.start()

    @property
    def servers(self) -> str:
        """The servers as a message may show them: scheme, host and port only."""
        return ", ".join(url_origin(url) for url in self.options.servers)

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    def connect(self) -> None:
        """Connect (unless connected or reconnecting) and create the stream when it is missing."""
        per_server = (RECONNECT_ATTEMPTS + 1) * self.options.connect_timeout_seconds + RECONNECT_SECONDS
        self._call(self._connect(), per_server * len(self.options.servers) + self.options.ack_timeout_seconds)

    def publish(self, events: Sequence[Event]) -> int:
        """Publish in order (several pipelined, then one by one from the first not acknowledged, with retries);
        stop at the first event that exhausts its retries."""
        return self._call(self._publish(events), None)

    def cancel(self) -> None:
        """End the calls under way now (from another thread): each raises `JetStreamError`."""
        for future in list(self._calls):
            future.cancel()

    def close(self) -> None:
        """Flush what is pending and close, then stop the loop; bounded by CLOSE_SECONDS."""
        if self._client is not None:
            with contextlib.suppress(JetStreamError):  # a connection that is gone: the cursor says what was sent
                self._call(asyncio.wait_for(self._client.close(), CLOSE_SECONDS), CLOSE_SECONDS + 1)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CLOSE_SECONDS)
        if not self._thread.is_alive():
            self._loop.close()

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout: float | None) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        self._calls.add(future)
        try:
            return future.result(timeout)
        except concurrent.futures.CancelledError:
            message = f"NATS ({self.servers}): cancelled, the sink is closing"
        except nats.errors.NoServersError:
            message = self.last_error or self._describe(nats.errors.NoServersError())  # the cause is in last_error
        except (nats.errors.Error, OSError) as exc:
            message = self._describe(exc)
        except TimeoutError:  # the call's own bound, or an asyncio timeout inside it
            future.cancel()
            message = f"NATS ({self.servers}): no answer in time"
        finally:
            self._calls.discard(future)
        self.last_error = message
        raise JetStreamError(message)

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, OSError) and exc.errno:  # asyncio words a refused connection "Connect call failed"
            return f"NATS ({self.servers}): {os.strerror(exc.errno)}"
        return f"NATS ({self.servers}): {str(exc) or type(exc).__name__}"

    async def _connect(self) -> None:
        if self._client is not None and not self._client.is_closed:
            if not self._client.is_connected:
                raise JetStreamError(self.last_error or f"NATS ({self.servers}): connection lost, reconnecting")
        else:
            options = self.options
            self._context = None
            self._client = await nats.connect(
                servers=options.servers,
                name="orchestrator-monitor",
                connect_timeout=options.connect_timeout_seconds,
                reconnect_time_wait=RECONNECT_SECONDS,
                max_reconnect_attempts=RECONNECT_ATTEMPTS,
                allow_reconnect=True,
                token=self._token,
                user_credentials=None if self._credentials is None else str(self._credentials),
                error_cb=self._keep_error,  # not nats-py's default, which logs every failed reconnect
            )
        await self._ensure_stream()

    async def _ensure_stream(self) -> None:
        assert self._client is not None
        options = self.options
        if self._context is None:  # one per connection, so one subscription for the pipelined acks
            self._context = self._client.jetstream(timeout=options.ack_timeout_seconds)
        try:
            await self._context.stream_info(options.stream)
        except nats.js.errors.NotFoundError:
            await self._context.add_stream(
                name=options.stream,
                subjects=[f"{options.subject_prefix}.>"],
                duplicate_window=options.duplicate_window_seconds,
            )

    async def _publish(self, events: Sequence[Event]) -> int:
        if self._client is None or not self._client.is_connected or self._context is None:
            return 0
        done = await self._publish_pipelined(self._context, events) if len(events) > 1 else 0
        return done + await self._publish_one_by_one(self._context, events[done:])

    async def _publish_pipelined(self, context: JetStreamContext, events: Sequence[Event]) -> int:
        """All at once, then the acknowledgements (one connection keeps the order); how many were acknowledged
        before the first that was not, which `_publish_one_by_one` then tries again with its retries."""
        prefix = self.options.subject_prefix
        acks: list[asyncio.Future[Any]] = []
        try:
            for event in events:
                acks.append(
                    await context.publish_async(
                        event_subject(prefix, event), encode_event(event), headers=event_headers(event)
                    )
                )
            for done, ack in enumerate(acks):
                try:
                    await asyncio.wait_for(ack, self.options.ack_timeout_seconds)
                except (nats.errors.Error, TimeoutError) as exc:
                    self.last_error = self._describe(exc)
                    return done
            return len(events)
        except (nats.errors.Error, OSError) as exc:
            self.last_error = self._describe(exc)
            return sum(1 for _ in itertools.takewhile(_acknowledged, acks))
        finally:
            for ack in acks:
                ack.cancel()  # no-op for those done

    async def _publish_one_by_one(self, context: JetStreamContext, events: Sequence[Event]) -> int:
        """Each acknowledged before the next, an event tried `retries` more times before giving up."""
        assert self._client is not None
        options = self.options
        for done, event in enumerate(events):
            for attempt in range(options.retries + 1):
                try:
                    await context.publish(
                        event_subject(options.subject_prefix, event),
                        encode_event(event),
                        headers=event_headers(event),
                    )
                    break
                except (nats.errors.Error, OSError, TimeoutError) as exc:
                    self.last_error = self._describe(exc)
                    if attempt == options.retries or not self._client.is_connected:
                        return done
                    await asyncio.sleep(RETRY_PAUSE_SECONDS * (attempt + 1))
        return len(events)

    async def _keep_error(self, exc: Exception) -> None:
        self.last_error = self._describe(exc)


def _acknowledged(ack: asyncio.Future[Any]) -> bool:
    return ack.done() and not ack.cancelled() and ack.exception() is None
