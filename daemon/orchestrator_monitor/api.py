"""The Python entry points of the seed, for programs that embed the monitor.

`run_status` works now; the others are filled in as detection, archival and reports land.
"""

from __future__ import annotations

import os
from pathlib import Path

from .config import choose_workspace, load_settings
from .reader import read_run, state_reader
from .timefmt import utc_now
from .views import RunDetail


def run_status(run_id: str, *, workspace: str | Path | None = None, config_file: Path | None = None) -> RunDetail:
    """One run's status, workstreams, tool health and error counts (what `orchestrator monitor` shows)."""
    settings = load_settings(
        choose_workspace(str(workspace) if workspace else None, os.environ), config_file=config_file
    )
    with state_reader(settings) as (engine, name):
        return read_run(engine, name, run_id, utc_now())


def monitor(*, workspace: str | Path | None = None, config_file: Path | None = None) -> None:
    """Run the monitor daemon in the foreground until stopped."""
    raise NotImplementedError("the daemon arrives with the detection and service issues (#4, #6)")


def archive_run(run_id: str, *, workspace: str | Path | None = None, config_file: Path | None = None) -> None:
    """Archive a terminal run now (idempotent)."""
    raise NotImplementedError("archival arrives with issue #5")


def generate_report(run_id: str, *, workspace: str | Path | None = None, config_file: Path | None = None) -> None:
    """Write the run's reports."""
    raise NotImplementedError("reports arrive with issue #5")
