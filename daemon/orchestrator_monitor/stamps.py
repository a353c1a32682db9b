"""Time stamps and ids for events: RFC 3339 UTC times and monotonic ULIDs, cheap enough per event.

`Bus.publish` is on the daemon's hot path (the benchmark pushes a million events through it),
so both come from one `time.time_ns()` call and what only changes once a second (the date and
time of day) or once a millisecond (the time up to its milliseconds, a ULID's time and random
parts) is cached. ULIDs are built here rather than with python-ulid: a generic encoder costs
microseconds per id (base32 of 130 bits in Python), while a monotonic ULID (random part + 1
within the same millisecond, as the ULID spec allows) only needs its last four characters
re-encoded, from a table of 10-bit pairs.
Not thread-safe: the bus calls it under its lock, which also makes the ids monotonic.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

CROCKFORD_BASE32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = tuple(high + low for high in CROCKFORD_BASE32 for low in CROCKFORD_BASE32)  # 10 bits -> 2 characters
_LOW_BITS = 20  # the part of the random half re-encoded per id; the rest is cached
_LOW_MASK = (1 << _LOW_BITS) - 1
_RANDOM_BITS = 79  # one bit short of 80, so incrementing within a millisecond cannot overflow
_RANDOM_BYTES = 10  # what one millisecond's random part is drawn from (80 bits, the top one dropped)
_RANDOM_POOL_BYTES = 4000  # read from os.urandom at once: a system call per 400 ms, not per millisecond
_SUB_MILLISECOND = tuple(f"{micros:03d}Z" for micros in range(1000))  # a time's last digits, cached too


def encode_base32(value: int, length: int) -> str:
    """`value` as `length` (even) Crockford base32 characters, most significant first."""
    return "".join(_PAIRS[(value >> shift) & 1023] for shift in range(5 * (length - 2), -1, -10))


class EventStamper:
    """Hands out `(time, ulid)` pairs; `time` has microseconds and `Z`, ids increase strictly.

    `stamp` is a generator's `__next__`: its state lives in the generator's local variables,
    so a stamp costs no attribute lookups and no Python-level call frame of its own.
    """

    def __init__(self, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.stamp: Callable[[], tuple[str, str]] = _stamps(clock_ns).__next__


def _stamps(clock_ns: Callable[[], int]) -> Iterator[tuple[str, str]]:
    pairs, sub_millisecond = _PAIRS, _SUB_MILLISECOND
    pool, pool_at = b"", _RANDOM_POOL_BYTES
    second = millisecond = -1
    second_text = millisecond_text = ulid_prefix = ""
    random = 0
    while True:
        micros = clock_ns() // 1000
        if micros // 1000 != millisecond:
            millisecond = micros // 1000
            if millisecond // 1000 != second:
                second = millisecond // 1000
                second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            millisecond_text = f"{second_text}.{millisecond % 1000:03d}"
            if pool_at >= len(pool):
                # os.urandom releases the GIL, and under load getting it back means waiting for the
                # file sinks' writer threads: once per millisecond that showed as 16% of publish time.
                pool, pool_at = os.urandom(_RANDOM_POOL_BYTES), 0
            random = int.from_bytes(pool[pool_at : pool_at + _RANDOM_BYTES]) >> (8 * _RANDOM_BYTES - _RANDOM_BITS)
            pool_at += _RANDOM_BYTES
            ulid_prefix = encode_base32(millisecond, 10) + encode_base32(random >> _LOW_BITS, 12)
        else:
            random += 1
            if not random & _LOW_MASK:  # carried into the cached part
                ulid_prefix = ulid_prefix[:10] + encode_base32(random >> _LOW_BITS, 12)
        yield (
            millisecond_text + sub_millisecond[micros % 1000],
            ulid_prefix + pairs[(random >> 10) & 1023] + pairs[random & 1023],
        )
