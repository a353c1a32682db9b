"""The code stays as ruff and mypy want it (both configured in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ruff_check_and_format_are_clean() -> None:
    for args in (["check", "--quiet", "."], ["format", "--check", "--quiet", "."]):
        completed = subprocess.run([sys.executable, "-m", "ruff", *args], cwd=REPO, capture_output=True, text=True)
        assert completed.returncode == 0, completed.stdout + completed.stderr


def test_mypy_finds_no_type_errors() -> None:
    completed = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stdout + completed.stderr
