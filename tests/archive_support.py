"""Helpers for the archival and report tests: runs with files, independent checks of bags and reports."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from pathlib import Path

import bagit
import jsonschema

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schema"


def add_terminal_run(workspace: Path, run_id: str, status: str = "COMPLETED", tasks: int = 3) -> Path:
    """A finished run in the state database (with tasks and a workstream) and its empty directory."""
    connection = sqlite3.connect(workspace / ".state" / "orchestration.db", isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(
            "INSERT INTO runs (run_id, status, started_at, finished_at) VALUES (?, ?, ?, ?)",
            (run_id, status, "2026-11-24T10:00:00Z", "2026-11-24T10:05:00Z"),
        )
        connection.execute(
            "INSERT INTO workstreams (workstream_id, run_id, name, status) VALUES (?, ?, 'build', 'COMPLETED')",
            (f"{run_id}.w", run_id),
        )
        for n in range(tasks):
            connection.execute(
                "INSERT INTO tasks (task_id, run_id, workstream_id, tool, status, attempts, error_type, started_at, "
                "finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    f"{run_id}.t{n}",
                    run_id,
                    f"{run_id}.w",
                    ("lint", "test")[n % 2],
                    "FAILED" if n == 1 else "SUCCEEDED",
                    1 + (n == 1),
                    "timeout" if n == 1 else None,
                    f"2026-11-24T10:00:{n:02d}Z",
                    f"2026-11-24T10:01:{n:02d}.5Z",
                ),
            )
        connection.execute("COMMIT")
    finally:
        connection.close()
    run_dir = workspace / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def assert_bagit_valid(bag: Path) -> None:
    """The PyPI validator (an implementation that is not ours) accepts the bag, fixity included."""
    logging.getLogger("bagit").setLevel(logging.ERROR)
    bagit.Bag(str(bag)).validate(processes=1)


def assert_reports_valid(workspace: Path, run_id: str) -> dict[str, dict]:
    """Both JSON reports exist and match their schemas; the page exists. Returns the two documents."""
    documents = {}
    for kind in ("summary", "metrics"):
        schema = json.loads((SCHEMA_DIR / f"report-{kind}.schema.json").read_text())
        document = json.loads((workspace / "reports" / f"{run_id}_{kind}.json").read_text())
        jsonschema.validate(document, schema, cls=jsonschema.Draft202012Validator)
        documents[kind] = document
    assert (workspace / "reports" / f"{run_id}.html").read_text().startswith("<!DOCTYPE html>")
    return documents


def bag_files(bag: Path) -> list[Path]:
    return [Path(d) / f for d, _, files in os.walk(bag) for f in files]


def manifest_paths(bag: Path) -> set[str]:
    lines = (bag / "manifest-sha256.txt").read_text(encoding="utf-8").splitlines()
    return {line.split("  ", 1)[1] for line in lines}
