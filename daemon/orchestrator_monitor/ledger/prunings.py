"""Retention's records: what it deleted (`monitor_prunings`), what it refused to (`monitor_retention_holds`),
and the catalog read it decides on, in a few whole-table queries however many runs there are.

A deleted local bag also loses its `local` row in `monitor_archive_locations`: the catalog still
knows the run and its other locations, and the audit, which reads bags under its own root, no
longer looks for it there.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select

from .catalog import LOCAL
from .store import (
    MonitorStore,
    monitor_archive_locations,
    monitor_archives,
    monitor_prunings,
    monitor_retention_holds,
    monitor_runs,
)

_A = monitor_archives
_L = monitor_archive_locations
_P = monitor_prunings
_H = monitor_retention_holds
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class CatalogRun:
    """One catalogued run as retention sees it."""

    run_id: str
    status: str
    ended_at: str
    name: str | None
    verify_result: str | None
    local_bag: str | None  # the bag's local location, None once deleted (or never local)
    pruned: frozenset[str]  # targets deleted already (run_dir, bag)
    reopened: bool  # the ledger has the run reopened: it changed after its archival


@dataclass(frozen=True, slots=True)
class Pruned:
    run_id: str
    target: str
    pruned_at: str
    why: str
    files: int
    bytes: int
    kept: int


class Prunings:
    def __init__(self, store: MonitorStore) -> None:
        self._store = store

    def catalog_runs(self, under: str | None = None) -> list[CatalogRun]:
        """Every catalogued run; `local_bag` only for a location below `under` (this daemon's archive root)."""
        prefix = None if under is None else under.rstrip("/") + "/"
        with self._store.engine.connect() as connection:
            local: dict[str, str] = {}
            for run_id, location in connection.execute(select(_L.c.run_id, _L.c.location).where(_L.c.kind == LOCAL)):
                if prefix is None or location.startswith(prefix):
                    local.setdefault(run_id, location)
            pruned: dict[str, set[str]] = {}
            for run_id, target in connection.execute(select(_P.c.run_id, _P.c.target)):
                pruned.setdefault(run_id, set()).add(target)
            query = select(monitor_runs.c.run_id).where(monitor_runs.c.phase == "reopened")
            reopened = {row[0] for row in connection.execute(query)}
            columns = (_A.c.run_id, _A.c.status, _A.c.ended_at, _A.c.name, _A.c.verify_result)
            rows = connection.execute(select(*columns)).all()
        return [
            CatalogRun(
                run_id=run_id,
                status=status,
                ended_at=ended_at,
                name=name,
                verify_result=result,
                local_bag=local.get(run_id),
                pruned=frozenset(pruned.get(run_id, ())),
                reopened=run_id in reopened,
            )
            for run_id, status, ended_at, name, result in rows
        ]

    def record(self, done: Pruned, *, drop_location: str | None = None) -> None:
        """One deletion, in one transaction: its row, its holds forgotten, the bag's location row gone."""
        row = {
            "run_id": done.run_id,
            "target": done.target,
            "pruned_at": done.pruned_at,
            "why": done.why,
            "files": done.files,
            "bytes": done.bytes,
            "kept": done.kept,
        }
        upsert = self._store.insert(_P)
        facts = {name: upsert.excluded[name] for name in row if name not in ("run_id", "target")}
        with self._store.write() as connection:
            connection.execute(upsert.on_conflict_do_update(index_elements=["run_id", "target"], set_=facts), [row])
            connection.execute(delete(_H).where(_H.c.run_id == done.run_id, _H.c.target == done.target))
            if drop_location is not None:
                connection.execute(delete(_L).where(_L.c.run_id == done.run_id, _L.c.location == drop_location))

    def holds(self) -> set[tuple[str, str, str]]:
        """(run id, target, reason) of every refusal said already: a pass says only the new ones."""
        with self._store.engine.connect() as connection:
            rows = connection.execute(select(_H.c.run_id, _H.c.target, _H.c.reason)).all()
        return {(run_id, target, reason) for run_id, target, reason in rows}

    def add_holds(self, holds: list[tuple[str, str, str]], at: str) -> None:
        """Remember refusals as said (in chunks, one transaction each: a first pass may hold thousands)."""
        rows = [{"run_id": r, "target": t, "reason": why, "at": at} for r, t, why in holds]
        insert = self._store.insert(_H).on_conflict_do_nothing(index_elements=["run_id", "target", "reason"])
        for start in range(0, len(rows), _CHUNK):
            with self._store.write() as connection:
                connection.execute(insert, rows[start : start + _CHUNK])

    def pruned_ids(self, target: str) -> set[str]:
        """The runs whose `target` retention deleted (a backfill must not archive them again)."""
        with self._store.engine.connect() as connection:
            return {row[0] for row in connection.execute(select(_P.c.run_id).where(_P.c.target == target))}

    def pruned(self, run_id: str) -> list[Pruned]:
        with self._store.engine.connect() as connection:
            rows = connection.execute(select(_P).where(_P.c.run_id == run_id).order_by(_P.c.target)).all()
        return [Pruned(r.run_id, r.target, r.pruned_at, r.why, int(r.files), int(r.bytes), int(r.kept)) for r in rows]
