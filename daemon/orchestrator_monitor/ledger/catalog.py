"""The archive catalog: what each published bag holds and where, searchable without reading a bag.

The bags are the truth; these rows are an index of them (`archive.catalog` reads a bag's facts).
Recording a bag again replaces its facts and local location but keeps its last fixity check and its
offloaded copies (unless its manifest changed: copies of the old bag are no copies of it), so a
`reindex` never forgets that a bag was found corrupt or where else it is. The
audit reads the bags whose check is oldest (never checked first) and writes each result back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, exists, func, nulls_first, select, update

from ..inlists import chunks, padded
from .store import MonitorStore, monitor_archive_facets, monitor_archive_locations, monitor_archives

_A = monitor_archives
_F = monitor_archive_facets
_L = monitor_archive_locations
VERIFIED_OK = "ok"
VERIFIED_CORRUPT = "corrupt"
LOCAL = "local"
_CHUNK = 500  # entries recorded per transaction
_NARROW_TIME = 50_000  # a time range holding at most this many bags is read rather than a name's index
_FEW_MATCHES = 5_000  # a search matching more walks the bags newest first, checking each (see `search`)


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    """One bag as the catalog knows it."""

    run_id: str
    status: str
    archived_at: str
    files: int
    bytes: int
    manifest_sha256: str
    name: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    tools: tuple[str, ...] = ()
    error_types: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()  # the local bag first, then its offloaded copies
    verified_at: str | None = None
    verify_result: str | None = None
    verify_detail: str | None = None


@dataclass(frozen=True, slots=True)
class ArchiveFilter:
    """A search: every given field must hold. `since`/`until` bound the run's end (its bag's time without one)."""

    statuses: Sequence[str] = ()
    since: str | None = None
    until: str | None = None
    name_like: str | None = None  # a SQL LIKE pattern (`archive` globs translate to it)
    tool: str | None = None
    error_type: str | None = None
    result: str | None = None  # ok | corrupt | unverified


@dataclass(frozen=True, slots=True)
class Page:
    entries: list[ArchiveEntry]
    total: int
    offset: int
    limit: int


class Catalog:
    """Rows in `monitor_archives` and its two side tables; each write is short (`record`: one per 500 bags)."""

    def __init__(self, store: MonitorStore) -> None:
        self._store = store

    def record(self, entries: Iterable[ArchiveEntry], recorded_at: str) -> int:
        """Insert or replace each entry's facts, facets and locations (its last check is kept); in chunks,
        one transaction each (a reindex of many bags writes a few statements per chunk, not per bag)."""
        pending = list({entry.run_id: entry for entry in entries}.values())
        for start in range(0, len(pending), _CHUNK):
            self._record_chunk(pending[start : start + _CHUNK], recorded_at)
        return len(pending)

    def _record_chunk(self, chunk: list[ArchiveEntry], recorded_at: str) -> None:
        rows = [
            {
                "run_id": e.run_id,
                "name": e.name,
                "status": e.status,
                "started_at": e.started_at,
                "finished_at": e.finished_at,
                "archived_at": e.archived_at,
                "ended_at": e.finished_at or e.archived_at,
                "files": e.files,
                "bytes": e.bytes,
                "manifest_sha256": e.manifest_sha256,
            }
            for e in chunk
        ]
        facets = [
            {
                "run_id": e.run_id,
                "kind": kind,
                "value": value,
                "status": e.status,
                "ended_at": e.finished_at or e.archived_at,
            }
            for e in chunk
            for kind, values in (("tool", e.tools), ("error_type", e.error_types))
            for value in sorted(set(values))
        ]
        locations = [
            {"run_id": e.run_id, "kind": LOCAL, "location": where, "recorded_at": recorded_at}
            for e in chunk
            for where in dict.fromkeys(e.locations)
        ]
        ids = padded([e.run_id for e in chunk])
        upsert = self._store.insert(_A)
        facts = {name: upsert.excluded[name] for name in rows[0] if name != "run_id"}
        with self._store.write() as connection:
            before = dict(
                connection.execute(select(_A.c.run_id, _A.c.manifest_sha256).where(_A.c.run_id.in_(ids))).all()
            )
            rebagged = padded([e.run_id for e in chunk if before.get(e.run_id, e.manifest_sha256) != e.manifest_sha256])
            connection.execute(upsert.on_conflict_do_update(index_elements=["run_id"], set_=facts), rows)
            connection.execute(delete(_F).where(_F.c.run_id.in_(ids)))
            connection.execute(delete(_L).where(_L.c.run_id.in_(ids), _L.c.kind == LOCAL))
            connection.execute(delete(_L).where(_L.c.run_id.in_(rebagged)))  # its copies are of the old bag
            for table, new in ((_F, facets), (_L, locations)):
                if new:
                    connection.execute(table.insert(), new)

    def forget_except(self, run_ids: set[str], under: str | None = None) -> list[str]:
        """Drop the rows of bags no longer on disk (a reindex of the archive root `under` found no bag for
        them; rows of bags stored elsewhere, another daemon's root, are left alone); the ids dropped."""
        with self._store.engine.connect() as connection:
            known = [row[0] for row in connection.execute(select(_A.c.run_id).where(*_stored_under(under)))]
        gone = sorted(set(known) - run_ids)
        with self._store.write() as connection:
            for chunk in chunks(gone):
                for table in (_F, _L, _A):
                    connection.execute(delete(table).where(table.c.run_id.in_(chunk)))
        return gone

    def get(self, run_id: str) -> ArchiveEntry | None:
        page = self._select(select(_A).where(_A.c.run_id == run_id), 1, 0)
        return page[0] if page else None

    def search(self, where: ArchiveFilter, *, limit: int | None = None, offset: int = 0) -> Page:
        """Matching entries, the run's end newest first (run id breaking ties), and how many match in all."""
        with self._store.engine.connect() as connection:
            by_time = _narrow_time(connection, where)
            total = int(connection.execute(_count(where, by_time=by_time)).scalar_one())
        # Many matches: walk the bags newest first until the page is full; few: fetch them by id and sort.
        conditions = _conditions(where, walk_newest=total > _FEW_MATCHES, by_time=by_time)
        query = select(_A).where(*conditions).order_by(_A.c.ended_at.desc(), _A.c.run_id)
        return Page(self._select(query, limit, offset), total, offset, limit or 0)

    def due_for_audit(self, limit: int, under: str | None = None) -> list[ArchiveEntry]:
        """The `limit` bags whose last check is oldest, never-checked first, then the oldest bags;
        `under`: only those stored below this directory (a daemon audits its own archive root)."""
        query = select(_A).where(*_stored_under(under))
        query = query.order_by(nulls_first(_A.c.verified_at.asc()), _A.c.archived_at, _A.c.run_id)
        return self._select(query, limit, 0)

    def count(self, under: str | None = None) -> int:
        with self._store.engine.connect() as connection:
            query = select(func.count()).select_from(_A).where(*_stored_under(under))
            return int(connection.execute(query).scalar_one())

    def payload_bytes(self, under: str | None = None) -> int:
        """The payload bytes of every bag (`under`: stored below this directory), summed by the database."""
        with self._store.engine.connect() as connection:
            query = select(func.coalesce(func.sum(_A.c.bytes), 0)).where(*_stored_under(under))
            return int(connection.execute(query).scalar_one())

    def add_location(self, run_id: str, kind: str, location: str, recorded_at: str) -> None:
        """Another place the bag is stored (an offload target's copy, every file confirmed)."""
        row = {"run_id": run_id, "kind": kind, "location": location, "recorded_at": recorded_at}
        upsert = self._store.insert(_L).values(row)
        with self._store.write() as connection:
            connection.execute(upsert.on_conflict_do_update(index_elements=["run_id", "location"], set_=row))

    def not_stored_under(self, base: str, under: str, limit: int) -> list[ArchiveEntry]:
        """Up to `limit` bags stored below `under` (this daemon's archive root) with no location below `base`
        (an offload target's), the oldest first."""
        query = select(_A).where(*_stored_under(under), ~and_(*_stored_under(base)))
        return self._select(query.order_by(_A.c.archived_at, _A.c.run_id), limit, 0)

    def record_check(self, run_id: str, at: str, result: str, detail: str | None) -> None:
        with self._store.write() as connection:
            connection.execute(
                update(_A)
                .where(_A.c.run_id == run_id)
                .values(verified_at=at, verify_result=result, verify_detail=detail)
            )

    def _select(self, query: Any, limit: int | None, offset: int) -> list[ArchiveEntry]:
        if limit is not None:
            query = query.limit(limit)
        with self._store.engine.connect() as connection:
            rows = connection.execute(query.offset(offset)).all()
            ids = [row.run_id for row in rows]
            facets: dict[str, dict[str, list[str]]] = {i: {"tool": [], "error_type": []} for i in ids}
            locations: dict[str, list[str]] = {i: [] for i in ids}
            for chunk in chunks(ids):
                for f in connection.execute(select(_F).where(_F.c.run_id.in_(chunk)).order_by(_F.c.value)):
                    facets[f.run_id][f.kind].append(f.value)
                for loc in connection.execute(
                    select(_L).where(_L.c.run_id.in_(chunk)).order_by(_L.c.kind != LOCAL, _L.c.location)
                ):
                    locations[loc.run_id].append(loc.location)
        return [
            ArchiveEntry(
                run_id=row.run_id,
                status=row.status,
                archived_at=row.archived_at,
                files=int(row.files),
                bytes=int(row.bytes),
                manifest_sha256=row.manifest_sha256,
                name=row.name,
                started_at=row.started_at,
                finished_at=row.finished_at,
                tools=tuple(facets[row.run_id]["tool"]),
                error_types=tuple(facets[row.run_id]["error_type"]),
                locations=tuple(locations[row.run_id]),
                verified_at=row.verified_at,
                verify_result=row.verify_result,
                verify_detail=row.verify_detail,
            )
            for row in rows
        ]


def _narrow_time(connection: Any, where: ArchiveFilter) -> bool:
    """A name glob with a time range: is the range narrow enough (one covering index range to count,
    a fraction of a millisecond) to read it rather than every bag the glob matches? `--since 7d --name
    'pipeline-1*'` at a million bags: 10,080 bags in the week against 111,000 named so, 4 ms against 23."""
    if where.name_like is None or (where.since is None and where.until is None):
        return False
    in_range = (
        select(func.count())
        .select_from(_A)
        .where(*_status_and_time(ArchiveFilter(since=where.since, until=where.until), _A.c.status, _A.c.ended_at))
    )
    return int(connection.execute(in_range).scalar_one()) <= _NARROW_TIME


def _count(where: ArchiveFilter, *, by_time: bool = False) -> Any:
    """How many bags match: one tool or error type with status and time alone is a range of the facet index."""
    facets = _facets(where)
    if len(facets) == 1 and where.name_like is None and where.result is None:
        return select(func.count()).select_from(_F).where(*_facet_rows(where, *facets[0]))
    return select(func.count()).select_from(_A).where(*_conditions(where, walk_newest=False, by_time=by_time))


def _conditions(where: ArchiveFilter, *, walk_newest: bool, by_time: bool = False) -> list[Any]:
    """The filter as SQL, for one of two plans. `walk_newest` (many matches): the bags are read newest
    first and each is checked, so nothing may lead the planner to seek by another index and sort every
    match (`|| ''` hides a column's index). Else (few): a tool or error type is the facet rows' run ids,
    with status and time among them, and each bag is fetched by id. `by_time`: the name's index is
    hidden too, so a narrow time range is what is read (`_narrow_time`)."""
    facets = _facets(where)
    conditions: list[Any] = []
    if walk_newest or not facets:
        conditions.extend(_status_and_time(where, _A.c.status, _A.c.ended_at))
    if where.name_like is not None:
        name = _A.c.name.concat("") if walk_newest or by_time else _A.c.name
        conditions.append(name.like(where.name_like, escape="\\"))
    for kind, value in facets:
        if walk_newest:
            conditions.append(exists().where(_F.c.run_id == _A.c.run_id, _F.c.kind == kind, _F.c.value == value))
        else:
            conditions.append(_A.c.run_id.in_(select(_F.c.run_id).where(*_facet_rows(where, kind, value))))
    if where.result == "unverified":
        conditions.append(_A.c.verify_result.is_(None))
    elif where.result is not None:
        conditions.append(_A.c.verify_result == where.result)
    return conditions


def _facets(where: ArchiveFilter) -> list[tuple[str, str]]:
    given = (("tool", where.tool), ("error_type", where.error_type))
    return [(kind, value) for kind, value in given if value is not None]


def _facet_rows(where: ArchiveFilter, kind: str, value: str) -> list[Any]:
    return [_F.c.kind == kind, _F.c.value == value, *_status_and_time(where, _F.c.status, _F.c.ended_at)]


def _status_and_time(where: ArchiveFilter, status: Any, ended_at: Any) -> list[Any]:
    """The filter's status and time bounds on these columns (the catalog's, or the facets' copies)."""
    conditions = []
    if where.statuses:
        conditions.append(status.in_(list(where.statuses)))
    if where.since is not None:
        conditions.append(ended_at >= where.since)
    if where.until is not None:
        conditions.append(ended_at < where.until)
    return conditions


def _stored_under(directory: str | None) -> list[Any]:
    if directory is None:
        return []
    prefix = _literal(directory.rstrip("/")) + "/%"
    return [exists().where(and_(_L.c.run_id == _A.c.run_id, _L.c.location.like(prefix, escape="\\")))]


def _literal(text: str) -> str:
    """`text` matched literally by LIKE ... ESCAPE '\\'."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def glob_to_like(pattern: str) -> str:
    """A shell glob (`*`, `?`) as a SQL LIKE pattern with `\\` escaping LIKE's own wildcards."""
    return _literal(pattern).replace("*", "%").replace("?", "_")
