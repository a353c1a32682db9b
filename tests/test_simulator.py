"""The simulated executor behaves like an executor: every branch the monitor must handle shows up."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def test_simulated_runs_end_with_retries_failures_artifacts_and_logs(simulated: tuple[Path, list[str]]) -> None:
    workspace, _ = simulated
    with sqlite3.connect(workspace / ".state" / "orchestration.db") as connection:
        open_tasks = connection.execute("SELECT count(*) FROM tasks WHERE status NOT IN "
                                        "('SUCCEEDED', 'FAILED', 'SKIPPED', 'CANCELLED')").fetchone()[0]  # fmt: skip
        open_workstreams = connection.execute("SELECT count(*) FROM workstreams WHERE status IN "
                                              "('PENDING', 'RUNNING')").fetchone()[0]  # fmt: skip
        retried = connection.execute("SELECT count(*) FROM tasks WHERE attempts > 1").fetchone()[0]
        failed = connection.execute("SELECT count(*) FROM tasks WHERE status = 'FAILED'").fetchone()[0]
        tools = connection.execute("SELECT count(DISTINCT tool) FROM tasks").fetchone()[0]
        cancelled = connection.execute(
            "SELECT status, finished_at IS NOT NULL FROM runs WHERE run_id = 'sim-3'"
        ).fetchone()
    assert (open_tasks, open_workstreams) == (0, 0)
    assert retried > 0 and failed > 0 and tools >= 4
    assert cancelled == ("CANCELLED", 1)
    run_dir = workspace / "runs" / "sim-0"
    assert list((run_dir / "logs").glob("*.log"))
    assert list(run_dir.glob("*.out"))


def test_demo_command_runs_to_the_end_in_a_fresh_workspace(tmp_path: Path, cli) -> None:
    result = cli("demo", "--workspace", str(tmp_path / "demo"), "--runs", "3", "--tick", "0", "--seed", "3")
    assert result.code == 0, result.err
    status = cli("status", "--workspace", str(tmp_path / "demo"))
    lines = [line.split("\t") for line in status.out.splitlines()]
    assert len(lines) == 3
    assert all(fields[2].endswith("100%") for fields in lines)
