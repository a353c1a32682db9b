"""What happens to a finished run after its mark: archive, then reports; for the daemon and the commands.

`Pipeline` bundles the two passes with what they need; `open_pipeline` builds one for a
command (its own bus without console or plug-in sinks, the state database, the ledger), the
daemon's worker builds one from the daemon's resources with `pipeline_for`. `backfill` archives
every terminal run that has no archive yet, `archive.parallel` at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ..archive.archiver import Archival, ArchiveOutcome, RunRow, archive_run, fetch_terminal_run
from ..archive.bag import read_summary
from ..archive.copier import Flag
from ..archive.tree import Inventory
from ..config import Settings
from ..errors import MonitorError
from ..events.publishing import open_bus
from ..events.types import Publish
from ..ledger.prunings import Prunings
from ..ledger.runs import Ledger
from ..ledger.store import open_store
from ..reports.numbers import ArchiveFacts
from ..reports.reporter import Reporting, report_run
from ..state.access import StateDatabase, open_state
from ..state.archival_log import ArchivalLog
from ..state.engine import read_transaction, translate_errors
from ..state.records import RUN_TERMINAL
from ..state.snapshots import fetch_all_runs
from ..timefmt import utc_now
from ..workspace import Workspace

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pipeline:
    archival: Archival
    reporting: Reporting

    def process(self, run: RunRow, inventory: Inventory | None = None) -> tuple[ArchiveOutcome, list[Path]]:
        """Archive the run (idempotent), then write its reports unless they were written already."""
        outcome = archive_run(self.archival, run, inventory)
        reports: list[Path] = []
        if outcome.created or self.archival.ledger.phase(run.run_id) == "archived":
            reports = report_run(self.reporting, run.run_id, utc_now())
        return outcome, reports


def archive_facts(archive_root: Path, run_id: str) -> ArchiveFacts:
    """What the reports say of the run's published bag (nothing yet when it has none)."""
    bag = archive_root / run_id
    if not bag.exists():
        return ArchiveFacts(None, 0, 0, None)
    facts = read_summary(bag)
    return ArchiveFacts(str(bag), facts.files, facts.bytes, facts.manifest_sha256)


def pipeline_for(
    settings: Settings,
    *,
    state: StateDatabase,
    publish: Publish,
    flush: Callable[[], None],
    ledger: Ledger,
    stop: Flag,
    escalate: bool = True,
) -> Pipeline:
    workspace = Workspace.from_settings(settings)
    busy = settings.database.busy_timeout_seconds
    archival = Archival(
        workspace=workspace,
        state=state,
        busy_timeout_seconds=settings.database.busy_timeout_seconds,
        reserve_bytes=settings.archive.reserve_bytes,
        publish=publish,
        flush_events=flush,
        log=ArchivalLog(
            state.engine, state.tables.archival_log, outbox=workspace.progress_db, busy_timeout_seconds=busy
        ),
        ledger=ledger,
        stop=stop,
    )
    read_archive = partial(archive_facts, workspace.archive_root)
    return Pipeline(archival, Reporting(workspace, state, publish, flush, ledger, read_archive, escalate))


@contextmanager
def open_pipeline(settings: Settings, stop: Flag) -> Iterator[Pipeline]:
    """A pipeline for one command; archival_log rows that had to wait are tried once more at the end."""
    state = open_state(settings, readonly=False)
    store = open_store(settings)
    assert store is not None
    ledger = Ledger(store)
    try:
        with open_bus(settings, extra_sinks=False, store=store) as bus:
            pipeline = pipeline_for(
                settings, state=state, publish=bus.publish, flush=bus.flush, ledger=ledger, stop=stop
            )
            try:
                yield pipeline
            finally:
                if not pipeline.archival.log.flush():
                    logger.error("%d archival_log rows could not be written", pipeline.archival.log.pending)
    finally:
        store.dispose()
        state.dispose()


def unarchived_terminal_runs(pipeline: Pipeline) -> list[str]:
    archival = pipeline.archival
    state = archival.state
    with translate_errors(state.name), read_transaction(state.engine) as connection:
        all_runs = fetch_all_runs(connection, state.tables)
    root = archival.workspace.archive_root
    offloaded = Prunings(archival.ledger.store).pruned_ids("bag")  # archived: only the local copy is gone
    return sorted(
        r
        for r, (status, _) in all_runs.items()
        if status in RUN_TERMINAL and not (root / r).exists() and r not in offloaded
    )


def backfill(pipeline: Pipeline, parallel: int) -> dict[str, MonitorError | Exception | None]:
    """Archive (and report) every terminal run without an archive; run id -> None or what went wrong."""

    def one(run_id: str) -> MonitorError | Exception | None:
        try:
            pipeline.process(fetch_terminal_run(pipeline.archival, run_id))
        except Exception as err:  # one run's failure never stops the others
            logger.warning("backfill: run %s: %s", run_id, err)
            return err
        return None

    run_ids = unarchived_terminal_runs(pipeline)
    with ThreadPoolExecutor(max(1, parallel), thread_name_prefix="backfill") as pool:
        return dict(zip(run_ids, pool.map(one, run_ids), strict=True))
