"""Time stamps and ids for events: RFC 3339 UTC times and monotonic ULIDs, cheap enough per event.

`Bus.publish` is on the daemon's hot path (the benchmark pushes a million events through it),
so both come from one `time.time_ns()` call and what only changes once a second (the date and
time of day) or once a millisecond (a ULID's time and random parts) is cached. ULIDs are built
here rather than with python-ulid: a generic encoder costs microseconds per id (base32 of 130
bits in Python), while a monotonic ULID (random part + 1 within the same millisecond, as the
ULID spec allows) only needs its last four characters re-encoded, from a table of 10-bit pairs.
Not thread-safe: the bus calls it under its lock, which also makes the ids monotonic.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

CROCKFORD_BASE32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = tuple(high + low for high in CROCKFORD_BASE32 for low in CROCKFORD_BASE32)  # 10 bits -> 2 characters
_LOW_BITS = 20  # the part of the random half re-encoded per id; the rest is cached
_LOW_MASK = (1 << _LOW_BITS) - 1
_RANDOM_BITS = 79  # one bit short of 80, so incrementing within a millisecond cannot overflow


def encode_base32(value: int, length: int) -> str:
    """`value` as `length` (even) Crockford base32 characters, most significant first."""
    return "".join(_PAIRS[(value >> shift) & 1023] for shift in range(5 * (length - 2), -1, -10))


class EventStamper:
    """Hands out `(time, ulid)` pairs; `time` has microseconds and `Z`, ids increase strictly."""

    def __init__(self, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self._clock_ns = clock_ns
        self._second = -1
        self._second_text = ""
        self._millisecond = -1
        self._ulid_time = ""
        self._random = 0
        self._ulid_prefix = ""

    def stamp(self) -> tuple[str, str]:
        micros = self._clock_ns() // 1000
        if micros // 1000 != self._millisecond:
            self._new_millisecond(micros)
        else:
            self._random += 1
            if not self._random & _LOW_MASK:  # carried into the cached part
                self._ulid_prefix = self._ulid_time + encode_base32(self._random >> _LOW_BITS, 12)
        random = self._random
        ulid = self._ulid_prefix + _PAIRS[(random >> 10) & 1023] + _PAIRS[random & 1023]
        return f"{self._second_text}.{micros % 1_000_000:06d}Z", ulid

    def _new_millisecond(self, micros: int) -> None:
        second = micros // 1_000_000
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        self._millisecond = micros // 1000
        self._ulid_time = encode_base32(self._millisecond, 10)
        self._random = secrets.randbits(_RANDOM_BITS)
        self._ulid_prefix = self._ulid_time + encode_base32(self._random >> _LOW_BITS, 12)
