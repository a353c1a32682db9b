"""Reading and writing the state database's ISO-8601 UTC timestamps.

Executors write times in several shapes (SQLite's `datetime('now')`, Python's
`isoformat()`, with or without `Z`, and the `uet` engine's `isoformat() + "Z"` of an aware
time: `2026-11-30T23:10:24.508258+00:00Z`, two zone markers); the spec lists what readers
accept. A time without a zone is UTC; any offset other than UTC's is unreadable (the spec's
times are UTC); a fraction beyond microseconds is cut. An unreadable value yields None so the
caller can warn, never crash.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_ACCEPTED = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[ T](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d{1,9}))?"
    r"(?:Z|\+00:?00Z?)?"
)


def parse_timestamp(value: object) -> datetime | None:
    """A timezone-aware UTC datetime, or None when `value` is NULL or unreadable."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if not isinstance(value, str):
        return None
    common = _common_shape(value)
    if common is not None:
        return common
    match = _ACCEPTED.fullmatch(value.strip())
    if match is None:
        return None
    fraction = (match["fraction"] or "")[:6].ljust(6, "0")
    try:
        parsed = datetime.fromisoformat(f"{match['date']}T{match['time']}.{fraction}")
    except ValueError:  # shape right, numbers wrong: 2026-13-45
        return None
    return parsed.replace(tzinfo=UTC)


def _common_shape(value: str) -> datetime | None:
    """`YYYY-MM-DD[ T]HH:MM:SS[.fraction][Z|+00:00]` read by `datetime.fromisoformat` alone: a mark reads
    every task's finish time, and this skips the pattern (about a fifth less per value, measured on a
    loaded machine). The separators are checked by position (fromisoformat also takes week dates, other
    separators and offsets, which the spec does not); None leaves anything else to the pattern."""
    body = value[:-1] if value.endswith("Z") else value[:-6] if value.endswith("+00:00") else value
    size = len(body)
    if not (size == 19 or (20 < size <= 29 and body[19] == ".")) or not body.isascii():
        return None
    if body[4] != "-" or body[7] != "-" or body[10] not in " T" or body[13] != ":" or body[16] != ":":
        return None
    try:
        parsed = datetime.fromisoformat(body)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else None


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds and `Z`, the shape the monitor writes."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_now() -> datetime:
    return datetime.now(UTC)
