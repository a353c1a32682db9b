"""Which keys a SIGHUP takes: the code's list, the documentation's tags, and the merge."""

from __future__ import annotations

from pathlib import Path

from orchestrator_monitor.config import load_settings
from orchestrator_monitor.service.reload import RELOADABLE, merge_reloadable
from support import REPO


def test_the_reload_keys_in_code_are_the_ones_documented_as_reload() -> None:
    text = (REPO / "config" / "monitor.toml").read_text()
    section = ""
    documented: set[str] = set()
    for line in text.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "[reload]" in line and "=" in line:
            documented.add(f"{section}.{line.lstrip('# ').split('=')[0].strip()}")
    in_code = {f"{section}.{key}" for section, keys in RELOADABLE.items() for key in keys}
    assert in_code <= documented, in_code - documented


def test_a_reload_takes_reload_keys_and_names_the_ones_that_wait(tmp_path: Path) -> None:
    current = load_settings(tmp_path, environ={})
    new = load_settings(tmp_path, environ={}, overrides=["completion.settle_seconds=2", "dashboard.port=9999"])
    applied, waiting = merge_reloadable(current, new)
    assert applied.completion.settle_seconds == 2
    assert applied.dashboard.port == current.dashboard.port
    assert waiting == ["dashboard.port"]
