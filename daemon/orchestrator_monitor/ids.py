"""Run id validation and the only place that turns a run id into a path.

A run id is opaque and comes from the executor's database or from a user's command line;
either may be hostile. It is checked before it touches any path.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import BadInput

RUN_ID_MAX_LENGTH = 128
_RUN_ID = re.compile(r"[A-Za-z0-9_.-]+")


def run_id_problem(run_id: object) -> str | None:
    """Why `run_id` is not a valid run id, or None when it is."""
    if not isinstance(run_id, str):
        return "a run id must be a string"
    if not run_id:
        return "a run id must not be empty"
    if len(run_id) > RUN_ID_MAX_LENGTH:
        return f"a run id has at most {RUN_ID_MAX_LENGTH} characters, this one has {len(run_id)}"
    if run_id.startswith("."):
        return "a run id must not start with '.'"
    if not _RUN_ID.fullmatch(run_id):
        return "a run id may only hold the characters A-Z a-z 0-9 . _ -"
    return None


def validate_run_id(run_id: object) -> str:
    """Return `run_id` unchanged if valid, else raise `BadInput` naming it."""
    problem = run_id_problem(run_id)
    if problem is not None:
        raise BadInput(f"invalid run id {run_id!r}: {problem}")
    assert isinstance(run_id, str)
    return run_id


def run_dir_problem(run_dir: str) -> str | None:
    """Why an executor's `run_dir` value cannot be followed (it leaves the workspace), or None."""
    relative = Path(run_dir)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        return "must be a relative path inside the workspace"
    return None


def run_directory(workspace: Path, run_id: str, run_dir: str | None = None) -> Path:
    """The run's directory: `run_dir` (relative to the workspace) or `runs/<run_id>`.

    The executor's `run_dir` column is data too: a value that leaves the workspace (absolute,
    `..`) is refused rather than followed.
    """
    validate_run_id(run_id)
    if run_dir is None:
        return workspace / "runs" / run_id
    problem = run_dir_problem(run_dir)
    if problem is not None:
        raise BadInput(f"run {run_id}: run_dir {run_dir!r} {problem}")
    return workspace / run_dir


def task_log_path(workspace: Path, run_id: str, run_dir: object, task_id: str) -> Path | None:
    """Where a task's log file is by convention, `<run dir>/logs/<task_id>.log`; None when the run id, the
    run directory or the task id (held to the run id's rules, as it becomes a file name) cannot be followed."""
    if run_id_problem(run_id) is not None or run_id_problem(task_id) is not None:
        return None
    if run_dir is not None and (not isinstance(run_dir, str) or run_dir_problem(run_dir) is not None):
        return None
    return run_directory(workspace, run_id, run_dir) / "logs" / f"{task_id}.log"
