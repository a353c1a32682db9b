"""Announce, then record: a retry after only the record failed does not announce again.

The monitor writes an event before it records in the ledger what it announced, so that a crash
repeats the event (same id) rather than losing it. When only the record failed (the database
went away) and the process lives on, it knows the event is out: the retry writes the record alone.
"""

from __future__ import annotations

from collections.abc import Callable


class Unrecorded:
    """Announcements out whose record is not written yet, by key (a run id)."""

    def __init__(self) -> None:
        self._out: set[str] = set()

    def announce_then_record(self, key: str, announce: Callable[[], None], record: Callable[[], object]) -> None:
        if key not in self._out:
            announce()
            self._out.add(key)
        record()
        self._out.discard(key)
