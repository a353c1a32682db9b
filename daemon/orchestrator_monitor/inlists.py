"""Value lists for `IN (...)`: bounded chunks, each padded to a power of two.

SQLAlchemy sends an expanding `IN` as one placeholder per value, so every length of list is
another SQL text, and another prepared statement in the driver's cache (Python's sqlite3
keeps 128 a connection, about 20 kB each, the least recently used one evicted). The daemon's
lists change length on every wake-up: its connections prepared statements without end, and
SQLite's heap swung between 5 and 20 MB while the churn fragmented glibc's arenas (the soak,
`bench/soak.py --memory-detail`). Padded with its last value, as Hibernate's
`in_clause_parameter_padding` does, a list has one of ten lengths (1, 2, 4 .. 512), so each
statement has at most ten texts, prepared once; a repeated value changes no result of `IN`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

CHUNK = 500  # values per list at most: short statements, far below any database's parameter limit

T = TypeVar("T")


def padded(values: Sequence[T]) -> list[T]:
    """`values` with its last one repeated up to the next power of two in length (empty stays empty)."""
    if not values:
        return []
    return [*values, *[values[-1]] * ((1 << (len(values) - 1).bit_length()) - len(values))]


def chunks(values: Sequence[T], size: int = CHUNK) -> Iterator[list[T]]:
    """`values` in padded lists of at most `size` distinct values each."""
    for start in range(0, len(values), size):
        yield padded(values[start : start + size])
