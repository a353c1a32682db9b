"""The chaos runner (bench/chaos.py) in small: a minute of random work and every kind of fault, then its invariants.

The same code as the benchmark, with small sizes: runs of up to 40 tasks, artifacts of up to
4 MiB (48 MiB in all), faults every 1.5 s on average, each held at most 2.5 s; every fault kind
is injected at least once (the runner goes on past its 30 s until each has happened). Seeded,
and it waits on conditions (events in the log, the executor's record), never on fixed sleeps.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

from chaos import FAULT_KINDS, ChaosConfig, print_result, run_chaos  # noqa: E402
from chaos_support import MIB, WorkloadConfig  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="the runner reads /proc (Linux only)")


@pytest.mark.slow
def test_chaos_in_small_breaks_no_invariant(tmp_path: Path) -> None:
    config = ChaosConfig(
        seconds=30.0,
        seed=13,
        workload=WorkloadConfig(
            runs_per_second=1.0,
            max_active=8,
            max_tasks=40,
            max_files=8,
            max_file_bytes=4 * MIB,
            budget_bytes=48 * MIB,
            budget_seconds=30.0,
            task_seconds=1.5,
        ),
        fault_gap_seconds=1.5,
        max_hold_seconds=2.5,
        drain_seconds=20.0,
        quiet_timeout_seconds=25.0,
        tmpfs_bytes=160 * MIB,
        reserve_bytes=8 * MIB,
        workdir=tmp_path,
    )
    result = run_chaos(config, out=None)
    shown = io.StringIO()
    print_result(result, config, shown)
    assert not result.harness_errors, shown.getvalue()
    assert all(result.faults[kind] >= 1 for kind in FAULT_KINDS), shown.getvalue()
    assert result.runs_ended >= 10, shown.getvalue()
    assert result.violations == 0, shown.getvalue()
