"""Does taking a bag's row snapshot hold memory? `snapshot_run_rows` called N times in one process.

Issue #13 (the soak's RSS). Each archival builds a SQLAlchemy engine and a sqlite3 connection with
the staging file attached (archive/snapshot.py), 3.3 times a second under bench/soak.py. This calls
it `--calls` times (default 20,000: about 100 minutes of that soak) over 200 finished runs of 10
tasks in a fresh workspace, and prints the process's RSS and the number of objects the garbage
collector tracks every 2,000 calls: a leak climbs, a level line does not.

    .venv/bin/python bench/snapshot_loop.py
    .venv/bin/python bench/snapshot_loop.py --calls 4000
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orchestrator_monitor.archive.snapshot import snapshot_run_rows
from orchestrator_monitor.config import load_settings
from orchestrator_monitor.state.access import open_state

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from archive_support import add_terminal_run

RUNS = 200


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return -1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "ws"
        command = [sys.executable, "-m", "orchestrator_monitor.cli", "init", "--workspace", str(root)]
        subprocess.run(command, check=True, capture_output=True)
        for n in range(RUNS):
            add_terminal_run(root, f"r-{n}", tasks=10)
        state = open_state(load_settings(root), readonly=True)
        destination = root / "snapshot.sqlite3"
        started = time.monotonic()
        try:
            for call in range(args.calls + 1):
                if call % 2000 == 0:
                    gc.collect()
                    print(f"{call:7d} calls  RSS {rss_mb():7.1f} MB  gc objects {len(gc.get_objects())}", flush=True)
                if call < args.calls:
                    run_id = f"r-{call % RUNS}"
                    snapshot_run_rows(state, run_id, destination, busy_timeout_seconds=5, check=lambda _: None)
        finally:
            state.dispose()
        per_call = (time.monotonic() - started) / max(1, args.calls) * 1000
        print(f"{per_call:.2f} ms a snapshot")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
