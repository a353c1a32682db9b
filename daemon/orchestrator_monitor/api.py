"""The Python entry points of the seed, for programs that embed the monitor.

`monitor` is filled in with the service issue (#6).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from .archive.archiver import ArchiveOutcome, fetch_terminal_run
from .archive.failures import ArchiveFailure
from .config import Settings, choose_workspace, load_settings
from .finish.pipeline import open_pipeline
from .reports.reporter import report_run
from .timefmt import utc_now
from .views.reader import read_run, state_reader
from .views.runs import RunDetail


def _settings(workspace: str | Path | None, config_file: Path | None) -> Settings:
    return load_settings(choose_workspace(str(workspace) if workspace else None, os.environ), config_file=config_file)


def run_status(run_id: str, *, workspace: str | Path | None = None, config_file: Path | None = None) -> RunDetail:
    """One run's status, workstreams, tool health and error counts (what `orchestrator monitor` shows)."""
    settings = _settings(workspace, config_file)
    with state_reader(settings) as state:
        return read_run(state, run_id, utc_now())


def monitor(*, workspace: str | Path | None = None, config_file: Path | None = None) -> None:
    """Run the monitor daemon in the foreground until stopped."""
    raise NotImplementedError("the daemon arrives with the detection and service issues (#4, #6)")


def archive_run(run_id: str, *, workspace: str | Path | None = None, config_file: Path | None = None) -> ArchiveOutcome:
    """Archive a terminal run now (idempotent) and write its reports; `MonitorError` says why not."""
    settings = _settings(workspace, config_file)
    with open_pipeline(settings, threading.Event()) as pipeline:
        try:
            outcome, _ = pipeline.process(fetch_terminal_run(pipeline.archival, run_id))
        except ArchiveFailure as failure:
            raise failure.as_monitor_error() from None
    return outcome


def generate_report(run_id: str, *, workspace: str | Path | None = None, config_file: Path | None = None) -> list[Path]:
    """Write the run's reports; returns their paths."""
    settings = _settings(workspace, config_file)
    with open_pipeline(settings, threading.Event()) as pipeline:
        return report_run(pipeline.reporting, run_id, utc_now())
