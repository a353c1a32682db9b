"""The event numbering and the jobs' heartbeats, in the monitor's own database (`ledger.store`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import exc, select, update

from ..timefmt import format_timestamp, parse_timestamp
from .store import MonitorStore, monitor_heartbeats, monitor_sequences


class EventSeqBlocks:
    """Reserves blocks of event sequence numbers (for `Bus`), per daemon.

    The bus reserves blocks of numbers (hi/lo), so a million events cost a hundred writes, not a
    million; a crash loses at most the rest of a block, which leaves a gap and never a repeat
    ("strictly increasing"). Several daemons on one database number their events each on its own.
    """

    def __init__(self, store: MonitorStore) -> None:
        self._store = store

    def reserve(self, count: int) -> range:
        """The next `count` numbers, durable before they are handed out."""
        key = self._store.seq_key
        with self._store.write() as connection:
            row = connection.execute(
                select(monitor_sequences.c.next_seq).where(monitor_sequences.c.daemon_id == key).with_for_update()
            ).first()
            first = 1 if row is None else int(row[0])
            connection.execute(
                self._store.insert(monitor_sequences)
                .values(daemon_id=key, next_seq=first + count)
                .on_conflict_do_update(index_elements=["daemon_id"], set_={"next_seq": first + count})
            )
        return range(first, first + count)

    def release(self, unused: range) -> None:
        """Give back the unused end of the last block on a clean stop, unless someone reserved after it."""
        if not unused:
            return
        table = monitor_sequences
        with self._store.write() as connection:
            connection.execute(
                update(table)
                .where(table.c.daemon_id == self._store.seq_key, table.c.next_seq == unused.stop)
                .values(next_seq=unused.start)
            )


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A job's last sign of progress: when, the daemon's pid, its recent errors, and what it reports."""

    job: str
    pid: int
    beat_at: datetime
    errors: tuple[str, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)
    daemon_id: str = ""

    def age_seconds(self, now: datetime) -> float:
        return max(0.0, (now - self.beat_at).total_seconds())


def record_heartbeats(store: MonitorStore, beats: Iterable[Heartbeat]) -> None:
    """Write this daemon's jobs' heartbeats in one transaction (rewritten every `health.heartbeat_seconds`,
    so `orchestrator health`, another process, can tell a live daemon from a stale one)."""
    rows = [
        {
            "daemon_id": store.daemon_id,
            "job": b.job,
            "pid": b.pid,
            "beat_at": format_timestamp(b.beat_at),
            "errors": orjson.dumps(list(b.errors)).decode(),
            "detail": orjson.dumps(b.detail).decode(),
        }
        for b in beats
    ]
    if not rows:
        return
    insert = store.insert(monitor_heartbeats)
    upsert = insert.on_conflict_do_update(
        index_elements=["daemon_id", "job"],
        set_={name: insert.excluded[name] for name in ("pid", "beat_at", "errors", "detail")},
    )
    with store.write() as connection:
        connection.execute(upsert, rows)


def read_heartbeats(store: MonitorStore | None) -> list[Heartbeat]:
    """Every daemon's jobs' heartbeats; empty when no daemon ever ran here."""
    if store is None:
        return []
    t = monitor_heartbeats
    try:
        with store.engine.connect() as connection:
            query = select(t.c.daemon_id, t.c.job, t.c.pid, t.c.beat_at, t.c.errors, t.c.detail)
            rows = connection.execute(query).all()
    except exc.DBAPIError:  # the tables of an earlier version, which only a daemon's start upgrades
        return []
    beats = []
    for daemon_id, job, pid, beat_at, errors, detail in rows:
        moment = parse_timestamp(beat_at)
        if moment is not None:
            beats.append(Heartbeat(job, int(pid), moment, tuple(orjson.loads(errors)), orjson.loads(detail), daemon_id))
    return beats
