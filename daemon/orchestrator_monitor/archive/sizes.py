"""The size of everything under the archive root, for the `archive_size_bytes` gauge, without walking the bags.

A scrape must stay cheap however many bags there are: a published bag is immutable, so its
size is read once from its `bag-info.txt` (Payload-Oxum) and remembered; a refresh lists the
root's entries and reads only the bags it has not seen, at most every `refresh_seconds`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .bag import read_payload_oxum
from .staging import STAGING_DIR

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 30.0  # a scrape every 15 s reads the root at most every other time


class ArchiveSizes:
    """Payload bytes of every published bag under `root`, cached per bag (bags never change)."""

    def __init__(
        self, root: Path, *, refresh_seconds: float = REFRESH_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._root = root
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._sizes: dict[str, int] = {}
        self._total = 0
        self._read_at: float | None = None
        self._lock = threading.Lock()

    def total_bytes(self) -> float:
        with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self._refresh_seconds:
                self._refresh()
                self._read_at = now
            return float(self._total)

    def _refresh(self) -> None:
        try:
            names = {entry.name for entry in os.scandir(self._root) if entry.is_dir(follow_symlinks=False)}
        except OSError as err:
            logger.warning("archive root %s cannot be listed: %s", self._root, err.strerror)
            return
        names.discard(STAGING_DIR)
        for gone in self._sizes.keys() - names:
            del self._sizes[gone]
        for name in names - self._sizes.keys():
            try:
                self._sizes[name] = read_payload_oxum(self._root / name)[0]
            except (OSError, ValueError):
                continue  # not a bag (yet): asked again at the next refresh
        self._total = sum(self._sizes.values())
