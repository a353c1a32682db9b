"""The size of everything under the archive root, for the `archive_size_bytes` gauge, without walking the bags.

A scrape must stay cheap and the daemon's memory flat however many bags there are: the catalog
already holds each published bag's payload bytes (its `Payload-Oxum`), so the database sums them,
at most every `refresh_seconds`. Remembering each bag's size in the daemon instead (as before)
cost about 200 bytes per bag for the daemon's whole life, 200 MB at a million bags, and listing
the root every refresh. A bag the catalog missed (`archive ... not catalogued`) counts once
`orchestrator archives reindex` has read it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from ..ledger.catalog import Catalog

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 30.0  # a scrape every 15 s asks the database at most every other time


class ArchiveSizes:
    """Payload bytes of the catalogued bags stored under `root`, read again at most every `refresh_seconds`."""

    def __init__(
        self,
        catalog: Catalog,
        root: Path,
        *,
        refresh_seconds: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._catalog = catalog
        self._root = str(root)
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._total = 0
        self._read_at: float | None = None
        self._lock = threading.Lock()

    def total_bytes(self) -> float:
        with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self._refresh_seconds:
                self._read_at = now
                try:
                    self._total = self._catalog.payload_bytes(under=self._root)
                except SQLAlchemyError as err:  # the last reading stands; the database's own checks say why
                    logger.warning("archive size not read from the catalog: %s", type(err).__name__)
            return float(self._total)
