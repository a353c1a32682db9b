"""`orchestrator archives list|show|search|reindex`: the archive catalog, read or rebuilt from the bags.

Exit codes as the other commands: 0 done; 1 a bag reindex could not read; 2 bad input (an
unknown run, a malformed time); 3 no workspace.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime

from rich.console import Console
from rich.table import Table

from ..archive.catalog import reindex
from ..config import Settings
from ..errors import BadInput
from ..events.log import parse_since
from ..ids import validate_run_id
from ..ledger.catalog import ArchiveEntry, ArchiveFilter, Catalog, glob_to_like
from ..ledger.prunings import Pruned, Prunings
from ..ledger.store import open_store
from ..state.access import configured_mapping
from ..workspace import Workspace
from .render import write_json, write_plain

COLUMNS = ("run_id", "name", "status", "finished_at", "files", "bytes", "verified_at", "verify_result")


def archive_filter(
    statuses: list[str] | None,
    since: str | None,
    until: str | None,
    name: str | None,
    tool: str | None,
    error_type: str | None,
    result: str | None,
    now: datetime,
) -> ArchiveFilter:
    """The search the options ask for; times as RFC 3339 or an age (`7d`), as `events --since` takes them."""
    return ArchiveFilter(
        statuses=tuple(statuses or ()),
        since=_moment(since, "--since", now),
        until=_moment(until, "--until", now),
        name_like=None if name is None else glob_to_like(name),
        tool=tool,
        error_type=error_type,
        result=result,
    )


def _moment(text: str | None, option: str, now: datetime) -> str | None:
    if text is None:
        return None
    try:
        _, moment = parse_since(text, now)  # a bare number is a seq there: no time here
    except BadInput:
        moment = None
    if moment is None:
        raise BadInput(f"{option} {text!r}: expected a time YYYY-MM-DDTHH:MM:SSZ or an age such as 7d")
    return moment


def _catalog(settings: Settings) -> tuple[Catalog, Prunings, Workspace]:
    workspace = Workspace.from_settings(settings)
    workspace.check_initialised()
    store = open_store(settings)
    assert store is not None
    return Catalog(store), Prunings(store), workspace


def archives_command(
    settings: Settings, action: str, run_id: str | None, where: ArchiveFilter, fmt: str, limit: int | None, out: Console
) -> int:
    catalog, prunings, workspace = _catalog(settings)
    if action == "reindex":
        return _reindex(catalog, workspace, settings, out)
    if action == "show":
        if run_id is None:
            raise BadInput("archives show needs a run id")
        entry = catalog.get(validate_run_id(run_id))
        if entry is None:
            raise BadInput(f"unknown run: {run_id} (not in the archive catalog; try 'orchestrator archives reindex')")
        _print([entry], fmt, out, single=True, pruned=prunings.pruned(run_id))
        return 0
    page = catalog.search(where, limit=limit)
    _print(page.entries, fmt, out, single=False)
    return 0


def _reindex(catalog: Catalog, workspace: Workspace, settings: Settings, out: Console) -> int:
    done = reindex(catalog, workspace.archive_root, configured_mapping(settings))
    for name, why in sorted(done.skipped.items()):
        sys.stderr.write(f"orchestrator: {workspace.archive_root / name}: not catalogued: {why}\n")
    write_plain(
        out,
        f"reindex: {len(done.recorded)} bags catalogued, {len(done.skipped)} unreadable, "
        f"{len(done.forgotten)} entries without a bag removed",
    )
    return 1 if done.skipped else 0


def _print(entries: list[ArchiveEntry], fmt: str, out: Console, *, single: bool, pruned: Sequence[Pruned] = ()) -> None:
    """`pruned` (show): what retention deleted of the run, said after the entry's facts."""
    if fmt == "json":
        write_json({**asdict(entries[0]), "pruned": pruned} if single else entries, sys.stdout)
    elif fmt == "tsv":
        write_plain(out, "\t".join((*COLUMNS, "tools", "error_types", "locations")))
        for entry in entries:
            row = asdict(entry)
            cells = [_cell(row[c]) for c in COLUMNS]
            cells += [",".join(entry.tools), ",".join(entry.error_types), ",".join(entry.locations)]
            write_plain(out, "\t".join(cells))
    elif single:
        table = Table(show_header=False, box=None)
        for key, value in asdict(entries[0]).items():
            table.add_row(key, ", ".join(value) if isinstance(value, tuple) else _cell(value))
        for done in pruned:
            what = f"{done.pruned_at}: {done.files} files, {done.bytes} bytes, {done.kept} kept; {done.why}"
            table.add_row(f"pruned {done.target}", what)
        out.print(table)
    else:
        table = Table(*COLUMNS, title=f"{len(entries)} archives")
        for entry in entries:
            row = asdict(entry)
            table.add_row(*(_cell(row[c]) for c in COLUMNS))
        out.print(table)


def _cell(value: object) -> str:
    return "" if value is None else str(value).replace("\t", " ").replace("\n", " ")
