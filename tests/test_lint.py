"""The code stays as ruff, mypy and import-linter want it (all three configured in pyproject.toml)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def test_ruff_check_and_format_are_clean() -> None:
    for args in (["check", "--quiet", "."], ["format", "--check", "--quiet", "."]):
        completed = subprocess.run([sys.executable, "-m", "ruff", *args], cwd=REPO, capture_output=True, text=True)
        assert completed.returncode == 0, completed.stdout + completed.stderr


def test_mypy_finds_no_type_errors() -> None:
    completed = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def lint_imports(tree: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, capture_output=True, text=True, env=env)


def test_every_stage_imports_only_the_stages_below_it() -> None:
    completed = lint_imports(REPO)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "2 kept, 0 broken" in completed.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # a stage reaching up the chain: the monitor's record importing the daemon's wiring
        ("ledger/runs.py", "from ..service import daemon", "orchestrator_monitor.ledger is not allowed to import"),
        # two siblings kept apart: the reports reading a bag themselves
        ("reports/numbers.py", "from ..archive import bag", "orchestrator_monitor.reports is not allowed to import"),
        # a ground module that would drag a stage under everything
        ("timefmt.py", "from .state import engine", "orchestrator_monitor.timefmt is not allowed to import"),
        # a pure decision opening a database
        ("detect/rule.py", "import sqlalchemy", "orchestrator_monitor.detect.rule is not allowed to import sqlalchemy"),
        # a new module at the top that nobody gave a place in the chain
        ("stray.py", "STRAY = 1", "not listed as layers: - orchestrator_monitor.stray"),
    ],
)
def test_an_import_against_the_order_fails_the_lint(tmp_path: Path, module: str, line: str, broken: str) -> None:
    """The contracts are not vacuous: the same tree with one wrong import (or a stray module) is refused, naming it."""
    copy = tmp_path / "daemon" / "orchestrator_monitor"
    shutil.copytree(REPO / "daemon" / "orchestrator_monitor", copy, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    with (copy / module).open("a", encoding="utf-8") as file:
        file.write(f"\n{line}  # noqa\n")
    completed = lint_imports(tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path / "daemon")})
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert broken in " ".join(completed.stdout.split()), completed.stdout
