"""What a published bag says of itself, for the catalog: read from the bag alone, never the live database.

`bag-info.txt` gives the run id, status, bagging time and Payload-Oxum; the manifest's digest
is hashed; the run's name, times, tools and error types come from the bag's own snapshot of the
run's rows (`data/state/run.sqlite3`), through the schema mapping's column names (a column the
executor does not have is simply absent). `reindex` rebuilds the catalog from every bag under the
archive root: a bag it cannot read is reported and skipped, never fatal.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from ..ids import run_id_problem
from ..ledger.catalog import ArchiveEntry, Catalog
from ..state.mapping import SchemaMapping, TableMap
from ..timefmt import format_timestamp, parse_timestamp, utc_now
from .bag import BAG_INFO, MANIFEST, SNAPSHOT_PATH, hash_file
from .staging import STAGING_DIR


class UnreadableBag(Exception):
    """A bag whose tag files or snapshot cannot be read as ours (named in the message)."""


def read_bag_info(bag: Path) -> dict[str, str]:
    try:
        text = (bag / BAG_INFO).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UnreadableBag(f"{BAG_INFO}: {getattr(err, 'strerror', None) or err}") from None
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info.setdefault(key.strip(), value.strip())
    return info


def read_entry(bag: Path, mapping: SchemaMapping) -> ArchiveEntry:
    """The catalog entry of the published bag `bag`; `UnreadableBag` naming what is wrong."""
    info = read_bag_info(bag)
    run_id = info.get("Run-Id")
    status = info.get("Run-Status")
    if not run_id or not status:
        raise UnreadableBag(f"{BAG_INFO}: no Run-Id or Run-Status")
    if run_id != bag.name:
        raise UnreadableBag(f"{BAG_INFO}: Run-Id {run_id} but the bag is named {bag.name}")
    size, _, count = info.get("Payload-Oxum", "").partition(".")
    if not (size.isdigit() and count.isdigit()):
        raise UnreadableBag(f"{BAG_INFO}: no valid Payload-Oxum")
    bagged = parse_timestamp(info.get("Bagging-Time"))
    try:
        digest, _ = hash_file(bag / MANIFEST)
    except OSError as err:
        raise UnreadableBag(f"{MANIFEST}: {err.strerror}") from None
    rows = _run_rows(bag / SNAPSHOT_PATH, mapping, run_id)
    return ArchiveEntry(
        run_id=run_id,
        status=status,
        archived_at=format_timestamp(bagged) if bagged else rows.finished_at or "",
        files=int(count),
        bytes=int(size),
        manifest_sha256=digest,
        name=rows.name,
        started_at=rows.started_at,
        finished_at=rows.finished_at,
        tools=rows.tools,
        error_types=rows.error_types,
        locations=(str(bag),),
    )


@dataclass(frozen=True, slots=True)
class _RunRows:
    name: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    tools: tuple[str, ...] = ()
    error_types: tuple[str, ...] = ()


def _run_rows(snapshot: Path, mapping: SchemaMapping, run_id: str) -> _RunRows:
    if not snapshot.is_file():
        raise UnreadableBag(f"{SNAPSHOT_PATH}: missing")
    uri = f"file:{quote(str(snapshot.absolute()))}?mode=ro&immutable=1"  # a sealed bag never changes
    try:
        with closing(sqlite3.connect(uri, uri=True)) as connection:
            runs = mapping.runs
            row = _select(connection, runs, ("name", "started_at", "finished_at"), f"{_q(runs.key)} = ?", (run_id,))
            found = next(row, None)
            tasks = mapping.tasks
            tools = _distinct(connection, tasks, "tool")
            errors = _distinct(connection, tasks, "error_type")
    except sqlite3.Error as err:
        raise UnreadableBag(f"{SNAPSHOT_PATH}: {err}") from None
    if found is None:
        return _RunRows(tools=tools, error_types=errors)
    name, started, finished = found
    return _RunRows(None if name is None else str(name), _timestamp(started), _timestamp(finished), tools, errors)


def _select(
    connection: sqlite3.Connection, table: TableMap, names: tuple[str, ...], where: str, params: tuple[str, ...]
) -> Iterator[tuple[object, ...]]:
    """The reference-named columns `names` of `table` (NULL for one the executor lacks)."""
    columns = ", ".join(_q(table.columns[n]) if n in table.columns else "NULL" for n in names)
    return iter(connection.execute(f"SELECT {columns} FROM {_q(table.table)} WHERE {where}", params).fetchall())


def _distinct(connection: sqlite3.Connection, table: TableMap, name: str) -> tuple[str, ...]:
    column = table.columns.get(name)
    if column is None:
        return ()
    query = f"SELECT DISTINCT {_q(column)} FROM {_q(table.table)} WHERE {_q(column)} IS NOT NULL"
    return tuple(sorted(str(value) for (value,) in connection.execute(query)))


def _timestamp(value: object) -> str | None:
    moment = parse_timestamp(value)
    return None if moment is None else format_timestamp(moment)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class Reindexed:
    recorded: list[str]
    skipped: dict[str, str]  # bag directory name -> why it was not read
    forgotten: list[str]  # catalog rows whose bag is gone


def published_bags(archive_root: Path) -> list[Path]:
    """Every directory under the archive root named like a run (the staging area left out)."""
    if not archive_root.is_dir():
        return []
    return sorted(
        p for p in archive_root.iterdir() if p.name != STAGING_DIR and p.is_dir() and run_id_problem(p.name) is None
    )


def reindex(catalog: Catalog, archive_root: Path, mapping: SchemaMapping) -> Reindexed:
    """Rebuild the catalog from the bags on disk (idempotent: each bag's row replaced, its last check kept)."""
    entries, skipped = [], {}
    for bag in published_bags(archive_root):
        try:
            entries.append(read_entry(bag, mapping))
        except UnreadableBag as err:
            skipped[bag.name] = str(err)
    catalog.record(entries, format_timestamp(utc_now()))
    forgotten = catalog.forget_except({e.run_id for e in entries} | set(skipped), under=str(archive_root))
    return Reindexed([e.run_id for e in entries], skipped, forgotten)
