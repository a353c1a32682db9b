"""Helpers for the retention tests: archived runs with files, policies in the workspace's file, a pass."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from archive_support import add_terminal_run
from orchestrator_monitor.config import load_settings
from orchestrator_monitor.ledger.store import open_store
from orchestrator_monitor.retention.prune import Confirm, PassReport, Retention
from orchestrator_monitor.workspace import Workspace

NOW = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)  # add_terminal_run's runs ended on 2026-11-24: 6.8 days before
EVERYTHING_AFTER_A_DAY = """
[retention]
enabled = true

[[retention.policies]]
keep_days = 1
applies_to = ["run_dirs", "bags"]
"""


def archive_runs(cli: Callable[..., Any], workspace: Path, run_ids: list[str], status: str = "COMPLETED") -> None:
    """Terminal runs with a few files each (one in a subdirectory), archived by the real archiver."""
    for run_id in run_ids:
        run_dir = add_terminal_run(workspace, run_id, status)
        (run_dir / "logs").mkdir()
        (run_dir / "logs" / "t0.log").write_text(f"{run_id} log\n")
        (run_dir / "out.bin").write_bytes(os.urandom(4096))
        (run_dir / "result.json").write_text('{"ok": true}\n')
        assert cli("archive", "--workspace", str(workspace), "--run", run_id).code == 0


def configure(workspace: Path, toml: str = EVERYTHING_AFTER_A_DAY) -> None:
    (workspace / "config").mkdir(exist_ok=True)
    (workspace / "config" / "monitor.toml").write_text(toml)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any], str | None]] = []

    def publish(self, type: Any, data: dict[str, Any], *, run_id: str | None = None) -> None:
        self.events.append((str(type), data, run_id))

    def of(self, type: str) -> list[tuple[dict[str, Any], str | None]]:
        return [(data, run_id) for kind, data, run_id in self.events if kind == type]


def one_pass(
    workspace: Path,
    recorder: Recorder,
    *,
    apply: bool = True,
    confirm: Confirm | None = None,
    safe_modes: frozenset[str] = frozenset(),
    now: datetime = NOW,
) -> PassReport:
    settings = load_settings(workspace)
    store = open_store(settings)
    assert store is not None
    try:
        retention = Retention(
            settings.retention,
            Workspace.from_settings(settings),
            store,
            recorder.publish,
            confirm_offloaded=confirm,
            safe_modes=lambda: safe_modes,
        )
        return retention.run_pass(now) if apply else retention.plan(now)
    finally:
        store.dispose()


def tree_digest(*roots: Path) -> str:
    """Every name, kind, mode and content under `roots`: equal digests, nothing changed."""
    digest = hashlib.sha256()
    for root in roots:
        for dirpath, dirnames, filenames in sorted(os.walk(root)):
            dirnames.sort()
            for name in sorted(filenames + dirnames):
                path = Path(dirpath) / name
                info = path.lstat()
                digest.update(f"{path.relative_to(root)}\0{stat.filemode(info.st_mode)}\0".encode())
                if stat.S_ISREG(info.st_mode):
                    digest.update(path.read_bytes())
    return digest.hexdigest()


def corrupt_bag_file(bag: Path, relative: str = "data/run/out.bin") -> None:
    target = bag / relative
    os.chmod(target.parent, stat.S_IRWXU)
    os.chmod(target, stat.S_IRUSR | stat.S_IWUSR)
    with target.open("r+b") as handle:
        handle.write(b"\0rot")
