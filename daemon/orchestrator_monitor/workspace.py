"""The workspace layout of the spec, and `orchestrator init`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import Settings
from .progress import create_progress_database
from .state.engine import (
    create_sqlite_database,
    create_tables,
    database_url,
    describe_database,
    open_engine,
    sqlite_path,
)


@dataclass(frozen=True)
class Workspace:
    """Where one orchestrator's state lives; every path the monitor uses comes from here."""

    root: Path
    archive_root: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> Workspace:
        return cls(root=settings.workspace, archive_root=settings.resolve(settings.archive.root))

    @property
    def state_dir(self) -> Path:
        return self.root / ".state"

    @property
    def monitor_dir(self) -> Path:
        return self.root / ".monitor"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def progress_db(self) -> Path:
        return self.monitor_dir / "monitor.db"

    def folders(self) -> tuple[Path, ...]:
        return (self.state_dir, self.monitor_dir, self.runs_dir, self.logs_dir, self.reports_dir, self.archive_root)


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
