"""One archival of one run: checks, bookkeeping and events around `staging.build_and_publish`.

Order matters for exactly-once: the bag is published first (its existence is the truth), then
the `archival_log` row, then the ledger, then `RUN_ARCHIVED`. A crash between any two leaves a
published bag, and the retry finds it, does no work, and records and announces what is missing
(the event repeats with the same id). Commands and the daemon's worker both take the run's lock,
so two archivals of one run never overlap.

A bag must not contradict itself: inside the snapshot's read transaction the run is read again
and compared with what its `Run-Status` was decided on (`contradiction`). Rows that changed since
the completion (a task retried after the mark) publish nothing: the staging goes, the run is
recorded reopened (one RUN_REOPENED, whoever saw it first) and is archived once it has ended again.
A change the detector records between that check and the rename stops the rename too (`_release`):
the rename and the ledger's `published` are one transaction, so a run is never both reopened and
out in a bag (which archived and announced it twice).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import exc as sa_exc

from ..errors import BadInput, ProblemFound
from ..events.once import Unrecorded
from ..events.sinks.spool import read_run_events
from ..events.types import Event, EventType, Publish
from ..ids import run_directory, validate_run_id
from ..ledger.catalog import Catalog
from ..ledger.prunings import Prunings
from ..ledger.runs import Ledger, RunRecord
from ..lock import hold_lock
from ..state.access import StateDatabase
from ..state.archival_log import ArchivalLog, ArchivalRow, now_text
from ..state.engine import read_transaction, translate_errors
from ..state.queries import fetch_run
from ..state.records import RUN_TERMINAL, RunSnapshot
from ..state.snapshots import fingerprint_text
from ..timefmt import utc_now
from ..workspace import Workspace
from .bag import BagSummary, read_summary, seal_top
from .catalog import UnreadableBag, read_entry
from .copier import Flag
from .failures import REOPENED, UNSAFE_RUN_DIR, ArchiveFailure
from .snapshot import snapshot_run_rows
from .staging import build_and_publish, remove_staging, staging_for
from .tree import Inventory, RunDir, scan_tree

logger = logging.getLogger(__name__)
ARCHIVABLE_PHASES = (None, "baseline", "announced", "published")  # where `Ledger.archived` moves a run on


@dataclass(frozen=True)
class Archival:
    """What archiving needs, passed in (the daemon's worker and the commands build one each)."""

    workspace: Workspace
    state: StateDatabase  # writable (archival_log)
    busy_timeout_seconds: float
    reserve_bytes: int
    publish: Publish
    flush_events: Callable[[], None]
    log: ArchivalLog
    ledger: Ledger
    stop: Flag
    unrecorded: Unrecorded = field(default_factory=Unrecorded)  # RUN_ARCHIVED out, its record not written yet


@dataclass(frozen=True, slots=True)
class RunRow:
    run_id: str
    status: str  # what bag-info.txt says: the monitor's outcome where the stored status cannot hold it
    run_dir: RunDir
    stored_status: str  # as archival read it (reference vocabulary): the snapshot must still say so
    decided_on: str | None  # the rows its completion was decided on (`completed_rows`); None: no decision of ours


@dataclass(frozen=True, slots=True)
class ArchiveOutcome:
    run_id: str
    path: Path
    summary: BagSummary
    seconds: float
    created: bool  # False: it was archived already
    copied_files: int = 0
    resumed_files: int = 0


def fetch_terminal_run(ctx: Archival, run_id: str) -> RunRow:
    """The run's status and directory, and what its bag must agree with; unknown is bad input (2), not
    terminal (or reopened and not ended again) a problem (1)."""
    validate_run_id(run_id)
    state = ctx.state
    with translate_errors(state.name), read_transaction(state.engine) as connection:
        row = fetch_run(connection, state.tables, run_id)
    if row is None:
        raise BadInput(f"unknown run: {run_id}")
    if row["status"] not in RUN_TERMINAL:
        raise ProblemFound(f"run {run_id} is {row['status']}, not terminal: it is archived once it has finished")
    record = ctx.ledger.record(run_id)
    if record is not None and record.phase == "reopened":
        raise ProblemFound(f"run {run_id} changed after it was marked: it is archived once it has ended again")
    if record is not None and record.phase in ("marking", "completed"):  # a bag now: a change would reopen it
        raise ProblemFound(f"run {run_id}'s completion is not announced yet: the daemon archives it once it is")
    if any(p.target == "bag" for p in Prunings(ctx.ledger.store).pruned(run_id)):
        raise ProblemFound(f"run {run_id} is archived: retention deleted its local bag, its offloaded copy confirmed")
    root = ctx.workspace.root
    try:
        directory = run_directory(root, run_id, row["run_dir"])
    except BadInput as err:
        raise _refused(ctx, run_id, ArchiveFailure(UNSAFE_RUN_DIR, str(err))) from None
    decided = record.status if record is not None and record.marked_by == "monitor" else None
    return RunRow(
        run_id,
        state.mapping.true_status(row["status"], decided),
        RunDir(root, directory.relative_to(root)),
        row["status"],
        completed_rows(record),
    )


def _refused(ctx: Archival, run_id: str, failure: ArchiveFailure) -> ArchiveFailure:
    """A run archival must never take (its directory leaves the workspace): ARCHIVE_FAILED and an
    archival_log row once per run (the ledger remembers across restarts); the worker does not retry it."""
    if ctx.ledger.refuse(run_id, failure.reason):
        final = ctx.workspace.archive_root / run_id
        _record_failure(ctx, run_id, final, now_text(), failure)
    return failure


def completed_rows(record: RunRecord | None) -> str | None:
    """What a run's bag must agree with beyond its status: the rows its completion was decided on.

    Every run the monitor completed has them in the ledger, whoever ended it: for its own mark the
    rows the rule decided on, for a status the executor set the rows seen with it (the outcome taken
    as it is was taken on those), for a reopened run that ended again the rows of that new end. A run
    the monitor never decided on (behind the first-start baseline, or archived by a command before
    any daemon saw it) has none: its status is the executor's word alone, and the snapshot must still
    show that status.
    """
    if record is None or record.phase not in ("completed", "announced"):
        return None
    return record.fingerprint


def contradiction(run: RunRow, seen: RunSnapshot | None) -> ArchiveFailure | None:
    """Why the run as the snapshot's transaction read it must not be bagged under `run.status`; None: it agrees.

    Rows changed since a completion make the run reopened (archived once it has ended again); a run
    gone, or one without a completion of ours whose status moved, is a source that changed (retried).
    """
    if seen is None:
        return ArchiveFailure("source_changed", f"run {run.run_id} is no longer in the state database")
    reason = REOPENED if run.decided_on is not None else "source_changed"
    if seen.status != run.stored_status:
        return ArchiveFailure(reason, f"run {run.run_id} is {seen.status} now, no longer {run.stored_status}")
    if run.decided_on is not None and fingerprint_text(seen) != run.decided_on:
        tasks = ", ".join(f"{count} {status}" for status, count in sorted(seen.tasks.items()))
        return ArchiveFailure(
            reason, f"run {run.run_id}: its rows changed after it was marked {run.status} (tasks now {tasks})"
        )
    return None


def run_lock(workspace: Workspace, run_id: str) -> Path:
    return workspace.monitor_dir / "locks" / f"{run_id}.lock"


def archive_run(ctx: Archival, run: RunRow, inventory: Inventory | None = None) -> ArchiveOutcome:
    """Archive `run` (idempotent); `ArchiveFailure` after ARCHIVE_FAILED, `Interrupted` on a stop."""
    final = ctx.workspace.archive_root / run.run_id
    with hold_lock(run_lock(ctx.workspace, run.run_id), f"run {run.run_id}", remove=True):
        if final.exists():
            remove_staging(staging_for(ctx.workspace.archive_root, run.run_id))
            if final.stat().st_mode & 0o222:  # killed between the rename and the sealing of the top
                seal_top(final)
            outcome = ArchiveOutcome(run.run_id, final, read_summary(final), 0.0, created=False)
            # killed between the rename and the SUCCEEDED row: the row is written now, once
            _record_success(ctx, run, outcome, log_row=not ctx.log.has_succeeded(run.run_id))
            return outcome
        started = time.monotonic()
        started_at = now_text()
        try:
            inventory = inventory or scan_tree(run.run_dir)
            check_storage(ctx.workspace.archive_root, inventory, ctx.reserve_bytes)
        except ArchiveFailure as failure:
            _record_failure(ctx, run.run_id, final, started_at, failure)
            raise
        ctx.log.record(ArchivalRow(run.run_id, "STARTED", str(final), started_at))
        started_event = ctx.publish(EventType.ARCHIVE_STARTED, {"archive_path": str(final)}, run_id=run.run_id)
        try:
            summary, payload = build_and_publish(
                run_id=run.run_id,
                status=run.status,
                run_dir=run.run_dir,
                final=final,
                inventory=inventory,
                snapshot=lambda path: _snapshot(ctx, run, path),
                events=lambda: _run_events(ctx, run.run_id, started_event),
                release=lambda rename: _release(ctx, run, rename),
                stop=ctx.stop,
                shown=str(run.run_dir.relative),
                now=utc_now(),
            )
        except ArchiveFailure as failure:
            _record_failure(ctx, run.run_id, final, started_at, failure)
            if failure.reopened:
                _reopen(ctx, run, failure.detail)
            raise
        outcome = ArchiveOutcome(
            run.run_id,
            final,
            summary,
            round(time.monotonic() - started, 3),
            created=True,
            copied_files=payload.copied_files,
            resumed_files=payload.resumed_files,
        )
        _record_success(ctx, run, outcome, log_row=True, started_at=started_at)
        return outcome


def check_storage(archive_root: Path, inventory: Inventory, reserve_bytes: int) -> None:
    """Refuse to start when the copy would leave less than `reserve_bytes` free (apparent sizes)."""
    try:
        archive_root.mkdir(parents=True, exist_ok=True)
        usage = os.statvfs(archive_root)
    except OSError as err:
        raise ArchiveFailure("storage_unavailable", f"archive root {archive_root}: {err.strerror}") from None
    if not os.access(archive_root, os.W_OK):
        raise ArchiveFailure("storage_unavailable", f"archive root {archive_root} is not writable")
    free = usage.f_bavail * usage.f_frsize
    need = inventory.apparent_bytes
    if free - need < reserve_bytes:
        raise ArchiveFailure(
            "storage_full",
            f"archiving needs {need} bytes and {free} are free in {archive_root}: that would leave less than "
            f"archive.reserve_bytes ({reserve_bytes})",
        )


def _snapshot(ctx: Archival, run: RunRow, path: Path) -> None:
    def check(seen: RunSnapshot | None) -> None:
        failure = contradiction(run, seen)
        if failure is not None:
            raise failure

    try:
        snapshot_run_rows(ctx.state, run.run_id, path, busy_timeout_seconds=ctx.busy_timeout_seconds, check=check)
    except (sqlite3.Error, sa_exc.SQLAlchemyError) as err:
        raise ArchiveFailure("database", f"snapshot of the run's rows failed: {err}") from None


def _release(ctx: Archival, run: RunRow, rename: Callable[[], None]) -> None:
    """The bag goes out only if the run is still as its snapshot was checked: the ledger renames it and
    records it published in one transaction, which a change seen since (reopened, completed anew) stops."""
    if not ctx.ledger.publish_bag(run.run_id, run.decided_on, rename):
        raise ArchiveFailure(REOPENED, f"run {run.run_id} changed after its rows were checked, before its bag was out")


def _reopen(ctx: Archival, run: RunRow, what: str) -> None:
    """Archival saw the change first: the ledger records the run reopened (unless the detector completed
    it anew meanwhile), and RUN_REOPENED goes out unless it did already (once per run)."""
    first, _ = ctx.ledger.reopen(run.run_id, decided_on=run.decided_on)
    if first:
        ctx.publish(EventType.RUN_REOPENED, {"what": what}, run_id=run.run_id)


def _run_events(ctx: Archival, run_id: str, started: object) -> list[Event]:
    """The run's spooled events (written out first), with ARCHIVE_STARTED even if the spool lags."""
    ctx.flush_events()
    events = {event.seq: event for event in read_run_events(ctx.workspace.monitor_dir, run_id)}
    if isinstance(started, Event):
        events.setdefault(started.seq, started)
    return list(events.values())


def _record_failure(ctx: Archival, run_id: str, final: Path, started_at: str, failure: ArchiveFailure) -> None:
    logger.warning("archiving run %s failed: %s", run_id, failure)
    ctx.log.record(ArchivalRow(run_id, "FAILED", str(final), started_at, now_text(), error=str(failure)))
    ctx.publish(EventType.ARCHIVE_FAILED, {"reason": failure.reason, "detail": failure.detail}, run_id=run_id)


def _record_success(
    ctx: Archival, run: RunRow, outcome: ArchiveOutcome, *, log_row: bool, started_at: str | None = None
) -> None:
    if log_row:
        ctx.log.record(
            ArchivalRow(
                run.run_id,
                "SUCCEEDED",
                str(outcome.path),
                started_at or now_text(),
                now_text(),
                outcome.summary.files,
                outcome.summary.bytes,
                outcome.summary.manifest_sha256,
            )
        )
    _catalogue(ctx, outcome.path)
    if ctx.ledger.phase(run.run_id) in ARCHIVABLE_PHASES:  # not recorded yet: RUN_ARCHIVED first, written
        data = {
            "archive_path": str(outcome.path),
            "files": outcome.summary.files,
            "bytes": outcome.summary.bytes,
            "seconds": outcome.seconds,
            "manifest_sha256": outcome.summary.manifest_sha256,
        }

        def announce() -> None:
            ctx.publish(EventType.RUN_ARCHIVED, data, run_id=run.run_id)
            ctx.flush_events()  # a crash from here on repeats the event (same id) rather than losing it

        ctx.unrecorded.announce_then_record(run.run_id, announce, lambda: ctx.ledger.archived(run.run_id, run.status))


def _catalogue(ctx: Archival, bag: Path) -> None:
    """The published bag's row in the catalog, read from the bag itself (what `reindex` would write)."""
    try:
        entry = read_entry(bag, ctx.state.mapping)
    except UnreadableBag as err:  # the bag stays the truth: `archives reindex` retries it
        logger.warning("archive %s not catalogued: %s", bag, err)
        return
    Catalog(ctx.ledger.store).record([entry], now_text())
