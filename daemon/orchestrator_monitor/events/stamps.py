"""Time stamps and ids for events: RFC 3339 UTC times and monotonic ULIDs, cheap enough per event.

`Bus.publish` is on the daemon's hot path (the benchmark pushes a million events through it),
so both come from one `time.time_ns()` call and what only changes once a second (the date and
time of day) or once a millisecond (the time up to its milliseconds, a ULID's time and random
parts) is cached. ULIDs are built here rather than with python-ulid: a generic encoder costs
microseconds per id (base32 of 130 bits in Python), while a monotonic ULID (random part + 1
within the same millisecond, as the ULID spec allows) only changes in its last two characters,
which are the next entry of a table of 10-bit pairs: per stamp, the clock is read, compared
with the current millisecond's bounds, and two strings are concatenated (~0.3 us, half of
the earlier version that re-encoded four characters from the integer each time). A clock set
back shows in the times, never in the ids: they keep counting up from the last one.
Not thread-safe: the bus calls it under its lock, which also makes the ids monotonic.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

CROCKFORD_BASE32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = tuple(high + low for high in CROCKFORD_BASE32 for low in CROCKFORD_BASE32)  # 10 bits -> 2 characters
_PAIR_INDEX = {pair: index for index, pair in enumerate(_PAIRS)}
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
    second, second_text = -1, ""
    ulid_millisecond, time_part, random = -1, "", 0  # the ULIDs' clock never goes back, even when the clock does
    ns = clock_ns()
    while True:  # once per millisecond: its time text, and for a later one a fresh random part
        millisecond = ns // 1_000_000
        start = millisecond * 1_000_000
        end = start + 1_000_000
        if millisecond // 1000 != second:
            second = millisecond // 1000
            second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        millisecond_text = f"{second_text}.{millisecond % 1000:03d}"
        if millisecond > ulid_millisecond:
            if pool_at >= len(pool):
                # os.urandom releases the GIL, and under load getting it back means waiting for the
                # file sinks' writer threads: once per millisecond that showed as 16% of publish time.
                pool, pool_at = os.urandom(_RANDOM_POOL_BYTES), 0
            random = int.from_bytes(pool[pool_at : pool_at + _RANDOM_BYTES]) >> (8 * _RANDOM_BYTES - _RANDOM_BITS)
            pool_at += _RANDOM_BYTES
            ulid_millisecond, time_part = millisecond, encode_base32(millisecond, 10)
        # else the clock was set back: the time says so, the ids go on counting after the last one
        while True:  # once per 1024 ids: all but the last two characters
            prefix = time_part + encode_base32(random >> 10, 14)
            for last in pairs[random & 1023 :]:  # per id: the clock, two concatenations
                yield millisecond_text + sub_millisecond[(ns - start) // 1000], prefix + last
                ns = clock_ns()
                if not start <= ns < end:  # another millisecond (or the clock was set back)
                    break
            else:
                random = (random | 1023) + 1  # the last two characters wrap: carry into the prefix
                continue
            random = (random | 1023) - 1023 + _PAIR_INDEX[last] + 1  # the next unused id
            break
