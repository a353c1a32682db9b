"""`orchestrator archive`, `verify` and `report`: call the pipeline, print one line per result, pick the exit code.

Exit codes as the spec has them: 0 done; 1 a problem found (verify mismatch, run not terminal
or not archived, a file the monitor may not read); 2 bad input (unknown or malformed run id);
3 storage unusable or full, or the run is being archived by someone else right now.
"""

from __future__ import annotations

import threading
from pathlib import Path

from rich.console import Console

from ..archive.archiver import fetch_terminal_run
from ..archive.failures import ArchiveFailure
from ..archive.verify import verify_bag
from ..config import Settings
from ..errors import BadInput, ProblemFound, Unavailable
from ..finish.pipeline import backfill, open_pipeline
from ..ids import validate_run_id
from ..ledger.catalog import Catalog
from ..ledger.store import open_store
from ..offload.journal import OffloadJournal
from ..offload.open import open_targets
from ..offload.remote import check_copy
from ..offload.targets import TargetError
from ..reports.reporter import report_run
from ..state.access import state_database
from ..state.engine import read_transaction, translate_errors
from ..state.queries import fetch_run
from ..timefmt import utc_now
from ..workspace import Workspace


def archive_command(settings: Settings, run_id: str | None, out: Console, err: Console) -> int:
    """Archive one run (`run_id`) or every terminal run without an archive (None)."""
    if run_id is not None:
        validate_run_id(run_id)
    with open_pipeline(settings, threading.Event()) as pipeline:
        if run_id is not None:
            try:
                outcome, _ = pipeline.process(fetch_terminal_run(pipeline.archival, run_id))
            except ArchiveFailure as failure:
                raise failure.as_monitor_error() from None
            what = "archived" if outcome.created else "already archived"
            out.print(f"{run_id}\t{what}\t{outcome.path}\t{outcome.summary.files} files\t{outcome.summary.bytes} bytes")
            return 0
        results = backfill(pipeline, settings.archive.parallel)
    for done_id, problem in results.items():
        if problem is None:
            out.print(f"{done_id}\tarchived", markup=False)
        else:
            err.print(f"orchestrator: {done_id}: {problem}", markup=False)
    out.print(f"backfill: {sum(p is None for p in results.values())} of {len(results)} runs archived", markup=False)
    failures = [p for p in results.values() if p is not None]
    if any(isinstance(p, ArchiveFailure) and p.storage for p in failures):
        return 3
    return 1 if failures else 0


def verify_command(settings: Settings, run_id: str, out: Console, err: Console) -> int:
    validate_run_id(run_id)
    bag = Workspace.from_settings(settings).archive_root / run_id
    if not bag.is_dir():
        if not _in_state_database(settings, run_id):
            raise BadInput(f"unknown run: {run_id} (not in the state database, no {bag})")
        raise ProblemFound(f"run {run_id} is not archived (no {bag})")
    return _verify(bag, out, err)


def verify_path_command(bag: Path, out: Console, err: Console) -> int:
    """Any bag on disk, whoever wrote it (RFC 8493); a path that is no directory is bad input."""
    if not bag.is_dir():
        raise BadInput(f"{bag}: no such directory")
    return _verify(bag, out, err)


def _verify(bag: Path, out: Console, err: Console) -> int:
    result = verify_bag(bag)
    for problem in result.problems:
        err.print(f"orchestrator: {bag}: {_printable(problem)}", markup=False)
    if not result.ok:
        return 1
    out.print(f"{bag}: valid ({result.payload_files} payload files, {result.tag_files} tag files)", markup=False)
    return 0


def verify_remote_command(settings: Settings, run_id: str, out: Console, err: Console) -> int:
    """The bag's copy at every offload target, read there now: exit 1 naming each bad or missing file,
    3 when a target cannot be reached."""
    validate_run_id(run_id)
    if not settings.offload.targets:
        raise BadInput("verify --remote: no offload targets are configured ([[offload.targets]])")
    store = open_store(settings, readonly=True)
    if store is None:
        raise ProblemFound(f"run {run_id} has no offloaded copy (no monitor database yet)")
    targets = open_targets(settings)
    try:
        checks = [check_copy(t, Catalog(store), OffloadJournal(store), run_id) for t in targets]
    except TargetError as failure:
        raise Unavailable(f"verify --remote: {failure.detail}") from None
    finally:
        for target in targets:
            target.close()
        store.dispose()
    for check in checks:
        for problem in check.problems:
            err.print(f"orchestrator: {check.location}: {problem}", markup=False)
        if check.ok:
            out.print(f"{check.location}: valid ({check.files} files, at {check.target})", markup=False)
    return 0 if all(check.ok for check in checks) else 1


def _printable(text: str) -> str:
    """One line whatever a bag's names hold: a control character (a CR or LF in a name) shown escaped."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _in_state_database(settings: Settings, run_id: str) -> bool:
    """Whether the executor's database has the run: a bag's absence means "not archived" only for a known run."""
    with state_database(settings) as state, translate_errors(state.name), read_transaction(state.engine) as connection:
        return fetch_run(connection, state.tables, run_id) is not None


def report_command(settings: Settings, run_id: str, out: Console, err: Console) -> int:
    validate_run_id(run_id)
    with open_pipeline(settings, threading.Event()) as pipeline:
        paths = report_run(pipeline.reporting, run_id, utc_now())
    for path in paths:
        out.print(str(path), markup=False)
    return 0
