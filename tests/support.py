"""Helpers the tests import: the CLI as a real process, driving the simulated executor."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

from orchestrator_monitor.simulator import SimulatedExecutor


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_process(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> CliResult:
    """Run the installed `orchestrator` command as a real process."""
    completed = subprocess.run(
        [sys.executable, "-m", "orchestrator_monitor.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}, **(env or {})},
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


def drive_to_end(executor: SimulatedExecutor) -> None:
    for _ in range(10_000):
        if not executor.active_runs:
            return
        executor.step()
    raise AssertionError("the simulated executor did not finish")
