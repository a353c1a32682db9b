from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from orchestrator_monitor.errors import BadInput
from orchestrator_monitor.ids import run_directory, validate_run_id

BAD_RUN_IDS = ["../x", "/etc/passwd", "a/b", "", ".hidden", "x" * 129, "rün", "a b", "a\nb", "..", "a\x00b", "a\\b"]


@pytest.mark.parametrize("run_id", BAD_RUN_IDS)
def test_malformed_run_ids_are_refused_naming_them(run_id: str) -> None:
    with pytest.raises(BadInput, match="invalid run id"):
        validate_run_id(run_id)


@pytest.mark.parametrize("run_id", ["run-1", "2026.11.24_a", "x" * 128, "A", "a..b", "-x"])
def test_valid_run_ids_are_kept_unchanged(run_id: str) -> None:
    assert validate_run_id(run_id) == run_id


@given(st.text(max_size=140))
def test_any_accepted_run_id_stays_inside_runs(run_id: str) -> None:
    root = Path("/ws")
    try:
        validate_run_id(run_id)
    except BadInput:
        return
    path = run_directory(root, run_id)
    assert path.parent == root / "runs"
    assert path.name == run_id


@pytest.mark.parametrize("run_dir", ["/etc", "../outside", "runs/../../x", ""])
def test_a_run_dir_column_leaving_the_workspace_is_refused(run_dir: str) -> None:
    with pytest.raises(BadInput, match="run_dir"):
        run_directory(Path("/ws"), "r1", run_dir)


def test_a_relative_run_dir_column_is_used() -> None:
    assert run_directory(Path("/ws"), "r1", "elsewhere/r1") == Path("/ws/elsewhere/r1")
    assert run_directory(Path("/ws"), "r1") == Path("/ws/runs/r1")
