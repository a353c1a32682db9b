"""Reading and writing the state database's ISO-8601 UTC timestamps.

Executors write times in several shapes (SQLite's `datetime('now')`, Python's
`isoformat()`, with or without `Z`); the spec lists what readers accept. An unreadable
value yields None so the caller can warn, never crash.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_ACCEPTED = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[ T](?P<time>\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?)(?P<zone>Z|\+00:00|\+0000)?"
)


def parse_timestamp(value: object) -> datetime | None:
    """A timezone-aware UTC datetime, or None when `value` is NULL or unreadable."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if not isinstance(value, str):
        return None
    match = _ACCEPTED.fullmatch(value.strip())
    if match is None:
        return None
    try:
        parsed = datetime.fromisoformat(f"{match['date']}T{match['time']}")
    except ValueError:  # shape right, numbers wrong: 2026-13-45
        return None
    return parsed.replace(tzinfo=UTC)


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds and `Z`, the shape the monitor writes."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_now() -> datetime:
    return datetime.now(UTC)
