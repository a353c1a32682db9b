"""Has a PostgreSQL state database changed, without triggers? A watermark read at every poll.

One tiny query: for each mapped table, PostgreSQL's cumulative count of rows inserted, updated
and deleted (`pg_stat_get_tuples_*`: a lookup in shared memory, no table read), and
`max(updated_at)` where the mapping names that column and an index leads with it (one index
seek). The `updated_at` part moves at the commit of a writer that stamps its rows; the counters
move for every write, but a backend publishes them only when it goes idle (at most once a second;
within a second of the last time, ten seconds later) or disconnects, so a writer that stamps
nothing is seen within a second or, busy, within ten. A quiet database costs this one query per
poll and no pass of the detector.

It can miss a change: a writer that neither stamps `updated_at` forward nor has its counters
published (statistics off, `track_counts = off`), or a counter reset that lands on the same
total. So the detection job runs its full reconciliation every period whatever this says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sqlalchemy import Connection, TextClause, inspect, text

from .mapping import SchemaMapping
from .probe import Change
from .triggers import literal, quote, watched_tables

COUNTERS = ("pg_stat_get_tuples_inserted", "pg_stat_get_tuples_updated", "pg_stat_get_tuples_deleted")


def watermark_query(mapping: SchemaMapping, indexed: Iterable[tuple[str, str]]) -> TextClause:
    """The watermark of the mapped tables; `indexed`: (table, column) pairs an index leads with."""
    leading = {(table.casefold(), column.casefold()) for table, column in indexed}
    parts: list[str] = []
    for table in watched_tables(mapping):
        regclass = f"{literal(quote(table))}::regclass"
        parts.append(" + ".join(f"{counter}({regclass})" for counter in COUNTERS))
    for part in (mapping.runs, mapping.workstreams, mapping.tasks):
        column = part.columns.get("updated_at") if part is not None else None
        if part is not None and column is not None and (part.table.casefold(), column.casefold()) in leading:
            parts.append(f"(SELECT max({quote(column)}) FROM {quote(part.table)})")
    return text("SELECT " + ", ".join(parts))


def leading_columns(connection: Connection, mapping: SchemaMapping) -> list[tuple[str, str]]:
    """(table, first column) of every index on the mapped tables."""
    inspector = inspect(connection)
    found = []
    for table in watched_tables(mapping):
        for index in inspector.get_indexes(table):
            columns = index["column_names"]
            if columns and columns[0] is not None:
                found.append((table, columns[0]))
    return found


class WatermarkProbe:
    """The watermark poll; see the module docstring."""

    def __init__(self, connection: Callable[[], Connection], query: TextClause) -> None:
        self._connection = connection
        self._query = query
        self._mark: tuple[object, ...] | None = None
        self.reads = 0  # watermark queries made (each one is a poll of a quiet database)

    def _read(self) -> tuple[object, ...]:
        connection = self._connection()
        with connection.begin():  # its own snapshot: the statistics are cached per transaction
            row = connection.execute(self._query).one()
        self.reads += 1
        return tuple(row)

    def reset(self) -> None:
        self._mark = self._read()

    def touched(self) -> frozenset[str] | None:
        """A watermark says that something changed, never what."""
        return None

    def check(self) -> Change:
        mark = self._read()
        if mark == self._mark:
            return Change.NONE
        self._mark = mark
        return Change.CHANGED
