"""The workspace layout of the spec: where every file the monitor reads or writes lives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import Settings
from .errors import Unavailable


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

    def check_initialised(self) -> None:
        """Raise `Unavailable` unless `init` (or an executor) has set the root up: a mistyped `--workspace`
        must be said as such, before anything is created in it or read as if it were merely empty."""
        if not self.root.is_dir():
            raise Unavailable(f"workspace {self.root} does not exist (run 'orchestrator init' to create one)")
        if not (self.state_dir.is_dir() or self.logs_dir.is_dir()):
            raise Unavailable(
                f"{self.root} is not a workspace: no .state/ and no logs/ (run 'orchestrator init' to create one)"
            )

    def folders(self) -> tuple[Path, ...]:
        return (self.state_dir, self.monitor_dir, self.runs_dir, self.logs_dir, self.reports_dir, self.archive_root)
