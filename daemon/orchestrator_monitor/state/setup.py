"""`orchestrator init`: the workspace's folders, the state schema and the monitor's own database."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from ..ledger.monitor_db import create_progress_database
from ..workspace import Workspace
from .engine import create_sqlite_database, create_tables, database_url, describe_database, open_engine, sqlite_path


@dataclass(frozen=True)
class InitResult:
    workspace: Path
    database: str
    created_database: bool


def init_workspace(settings: Settings) -> InitResult:
    """Create the folders, the state schema and the monitor's own database; safe to repeat."""
    workspace = Workspace.from_settings(settings)
    for folder in workspace.folders():
        folder.mkdir(parents=True, exist_ok=True)
    url = database_url(settings)
    busy = settings.database.busy_timeout_seconds
    path = sqlite_path(url)
    if path is not None:
        created = create_sqlite_database(path, busy_timeout_seconds=busy)
    else:
        engine = open_engine(url, busy_timeout_seconds=busy, readonly=False)
        try:
            create_tables(engine, describe_database(url))
        finally:
            engine.dispose()
        created = False
    create_progress_database(workspace.progress_db, busy_timeout_seconds=busy)
    return InitResult(workspace=workspace.root, database=describe_database(url), created_database=created)
