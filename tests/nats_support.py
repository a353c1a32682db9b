"""NATS for the tests: a private nats-server process to stop and start, and reading a JetStream stream back."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
import orjson

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
SHARED_NATS_URL = "nats://127.0.0.1:4222"


@dataclass(frozen=True)
class StoredMessage:
    subject: str
    headers: dict[str, str]
    line: dict[str, Any]


@dataclass(frozen=True)
class NatsStream:
    """A stream and subject prefix of one test's own (the names a daemon gets with `--set`)."""

    url: str
    name: str
    prefix: str
    token: str | None = None

    @classmethod
    def fresh(cls, url: str, token: str | None = None) -> NatsStream:
        tag = uuid.uuid4().hex[:12]
        return cls(url, f"T_{tag}", f"t{tag}", token)

    def settings(self) -> tuple[str, ...]:
        return (
            "events.sinks=nats",
            f"nats.servers={self.url}",
            f"nats.stream={self.name}",
            f"nats.subject_prefix={self.prefix}",
        )

    def messages(self) -> list[StoredMessage]:
        return asyncio.run(_read_stream(self.url, self.name, self.token))

    def wait_for(self, condition: Callable[[list[StoredMessage]], bool], timeout: float = 30.0, what: str = "") -> None:
        """Re-read the stream until `condition` holds (a condition, not a fixed sleep)."""
        deadline = time.monotonic() + timeout
        while not condition(messages := self.messages()):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the stream holds {len(messages)} messages")
            time.sleep(0.1)

    def delete(self) -> None:
        asyncio.run(_delete_stream(self.url, self.name))


async def _read_stream(url: str, name: str, token: str | None) -> list[StoredMessage]:
    client = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=1, token=token)
    try:
        stream = client.jetstream()
        try:
            info = await stream.stream_info(name)
        except nats.js.errors.NotFoundError:
            return []
        found = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1) if info.state.messages else ():
            message = await stream.get_msg(name, seq)
            assert message.data is not None
            found.append(StoredMessage(message.subject, dict(message.headers or {}), orjson.loads(message.data)))
        return found
    finally:
        await client.close()


async def _delete_stream(url: str, name: str) -> None:
    client = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=1)
    try:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await client.jetstream().delete_stream(name)
    finally:
        await client.close()


def nats_listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


class NatsServer:
    """A nats-server process of a test's own, with JetStream storing under `store`: killed and started at will."""

    def __init__(self, store: Path, port: int, *options: str) -> None:
        self.store = store
        self.port = port
        self.options = options  # more nats-server flags (`--auth TOKEN`)
        self.url = f"nats://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store), *self.options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not nats_listening(self.port):
            assert self.process.poll() is None, "nats-server exited at start"
            assert time.monotonic() < deadline, "nats-server did not listen within 20 s"
            time.sleep(0.02)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(timeout=20)
        self.process = None
