"""Handing the C allocator's free memory back to the system, now and then.

glibc's malloc keeps what the daemon frees (SQLite's page caches of connections the pool closed,
the buffers of finished archivals, large query results) inside its heaps for reuse, and returns it
only from a heap's very top. `malloc_trim(0)` releases every whole free page of every arena
(madvise), which costs a few milliseconds; other C libraries (musl) have no such call and nothing
is done there. What it cannot release is a page that still holds one live block: the soak
(bench/soak.py --memory-detail) found its slow RSS growth there, in Python's arenas and glibc's
partly used pages, while the memory in use stayed level (README "Reliability").
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from datetime import datetime
from functools import cache

MEMORY = "memory_release"  # the job's name
RELEASE_SECONDS = 60.0


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    return trim


def release_free_memory(now: datetime | None = None) -> bool:
    """Return glibc's whole free pages to the system; False where the C library has no `malloc_trim`."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def memory_release_job() -> tuple[str, float, Callable[[datetime], object]] | None:
    """The scheduler's entry (name, interval, one pass), or None where there is nothing to call."""
    return None if _malloc_trim() is None else (MEMORY, RELEASE_SECONDS, release_free_memory)
