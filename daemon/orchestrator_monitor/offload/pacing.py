"""A token bucket over the bytes read from the bags: `offload.bytes_per_second` for all targets and
threads together, a burst of at most one second's worth. A stop ends a wait at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

CHUNK_BYTES = 1 << 20


class OffloadStopped(Exception):
    """The daemon is stopping: the file being sent is left unconfirmed (sent again next time)."""


class TokenBucket:
    def __init__(
        self,
        bytes_per_second: int,
        stop: threading.Event,
        *,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        self._rate = bytes_per_second
        self._stop = stop
        self._clock = clock
        self._wait = wait or stop.wait
        self._lock = threading.Lock()
        self._tokens = float(bytes_per_second)
        self._at = clock()

    def take(self, size: int) -> None:
        """Wait until `size` bytes may be read (0: no limit); `OffloadStopped` when the daemon stops."""
        if self._stop.is_set():
            raise OffloadStopped
        if not self._rate:
            return
        with self._lock:  # each caller takes its bytes now, and waits for the debt it leaves
            now = self._clock()
            self._tokens = min(float(self._rate), self._tokens + (now - self._at) * self._rate) - size
            self._at = now
            debt = -self._tokens
        if debt > 0 and self._wait(debt / self._rate):
            raise OffloadStopped


def read_paced(path: Path, offset: int, length: int, bucket: TokenBucket) -> bytes:
    """`length` bytes of `path` from `offset`, taken from the bucket a chunk at a time."""
    parts = []
    with path.open("rb") as handle:
        handle.seek(offset)
        while length > 0 and (chunk := handle.read(min(length, CHUNK_BYTES))):
            bucket.take(len(chunk))
            parts.append(chunk)
            length -= len(chunk)
    return b"".join(parts)
