"""Benchmark of change detection on PostgreSQL: commit -> `RUN_COMPLETED`, by LISTEN/NOTIFY, watermark and poll.

Issue #14 item 3: with the triggers of `orchestrator init --triggers`, single-run detection p99
should be at most 50 ms after the commit. In one run, on the loopback server, for each mode:

- `notify`: the triggers installed, the daemon LISTENs (`database.change_detection = "auto"`);
- `watermark`: no triggers, one watermark query per `completion.poll_seconds` (the default 0.5 s);
- `poll`: `database.change_detection = "poll"`, the way before: every poll is a cheap pass;

a schema of its own gets the reference tables with `--runs` terminal runs of `--tasks-per-run`
tasks (history) and `--singles` open runs of one running task; the daemon is started as a real
process (`completion.settle_seconds=0`, no console sink, no dashboard); once its start-up
reconciliation is over (a sentinel run marked), a writer finishes the open runs one at a time
(an UPDATE of its task, in its own transaction, `time.monotonic()` right after the COMMIT,
then a random pause of up to `--gap` seconds, longer than a poll so that the commits fall anywhere
between two polls), and this process follows `logs/monitor.jsonl`
(a 1 ms poll) for each run's `RUN_COMPLETED`. Latency = the line's appearance - the commit;
the 1 ms poll adds up to a millisecond to each. The machine is shared (2 cores): read
percentiles, not single figures. Usage:

    .venv/bin/python bench/notify.py                 # 100 singles per mode
    .venv/bin/python bench/notify.py --singles 20    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
MODES = ("notify", "watermark", "poll")
# A reference executor stamps the rows it writes (the watermark's index seek sees that at once).
FINISH = (
    "UPDATE tasks SET status = 'SUCCEEDED', "
    "updated_at = to_char(clock_timestamp(), 'YYYY-MM-DD\"T\"HH24:MI:SS.US') WHERE task_id = %s"
)


def orchestrator(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "orchestrator_monitor.cli", *args], stdout=subprocess.DEVNULL)


def settings(url: str, mode: str) -> list[str]:
    items = [f"database.url={url}", "events.sinks=", "dashboard.enabled=false", "completion.settle_seconds=0"]
    items.append(f"database.change_detection={'auto' if mode == 'notify' else mode}")
    return [arg for item in items for arg in ("--set", item)]


def populate(connection: psycopg.Connection, runs: int, tasks_per_run: int, singles: int) -> None:
    connection.execute(
        "INSERT INTO runs (run_id, status) SELECT 'h' || r, 'COMPLETED' FROM generate_series(1, %s) r", (runs,)
    )
    connection.execute(
        "INSERT INTO tasks (task_id, run_id, status) SELECT 'h' || r || '.' || t, 'h' || r, 'SUCCEEDED' "
        "FROM generate_series(1, %s) r, generate_series(1, %s) t",
        (runs, tasks_per_run),
    )
    connection.execute(
        "INSERT INTO runs (run_id, status) SELECT 's' || r, 'RUNNING' FROM generate_series(0, %s) r", (singles,)
    )
    connection.execute(
        "INSERT INTO tasks (task_id, run_id, status) SELECT 's' || r || '.a', 's' || r, 'RUNNING' "
        "FROM generate_series(0, %s) r",
        (singles,),
    )


class Follower:
    """Reads appended lines of the event log; `wait(run_id)` returns when its RUN_COMPLETED is there."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0
        self._completed: dict[str, float] = {}

    def wait(self, run_id: str, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        while run_id not in self._completed:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no RUN_COMPLETED for {run_id} within {timeout} s")
            self._read()
            time.sleep(0.001)
        return self._completed[run_id]

    def _read(self) -> None:
        try:
            with self._path.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n") + 1
        self._offset += end
        seen = time.monotonic()
        for line in chunk[:end].splitlines():
            event = json.loads(line)
            if event["type"] == "RUN_COMPLETED":
                self._completed.setdefault(event["run_id"], seen)


def measure(mode: str, args: argparse.Namespace, root: Path) -> list[float]:
    schema = f"bench_{mode}_{uuid.uuid4().hex[:8]}"
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    workspace = root / mode
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        init = ["init", "--workspace", str(workspace), *settings(url, mode)]
        assert orchestrator(*init).wait() == 0
        if mode == "notify":
            assert orchestrator(*init, "--triggers").wait() == 0
        with psycopg.connect(ADMIN, autocommit=True) as writer:
            writer.execute(f"SET search_path = {schema}")
            populate(writer, args.runs, args.tasks_per_run, args.singles)
            daemon = orchestrator("daemon", "--workspace", str(workspace), *settings(url, mode))
            try:
                follower = Follower(workspace / "logs" / "monitor.jsonl")
                writer.execute("UPDATE tasks SET status = 'SUCCEEDED' WHERE task_id = 's0.a'")
                follower.wait("s0", timeout=120)  # the start-up reconciliation is over
                latencies = []
                for n in range(1, args.singles + 1):
                    writer.execute(FINISH, (f"s{n}.a",))
                    committed = time.monotonic()
                    latencies.append(follower.wait(f"s{n}") - committed)
                    time.sleep(random.uniform(0, args.gap))  # a writer's pace, not a condition to await
            finally:
                daemon.terminate()
                daemon.wait(timeout=30)
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="terminal runs of history")
    parser.add_argument("--tasks-per-run", type=int, default=50)
    parser.add_argument("--singles", type=int, default=100, help="runs finished one at a time, per mode")
    parser.add_argument("--gap", type=float, default=1.0, help="the writer's longest pause between two runs, s")
    parser.add_argument("--mode", action="append", choices=MODES, help="repeatable; default: all three")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-notify-") as root:
        for mode in args.mode or MODES:
            results[mode] = measure(mode, args, Path(root))
    print(f"{'mode':<10} {'n':>4} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for mode, values in results.items():
        ms = [1000 * v for v in values]
        print(f"{mode:<10} {len(ms):>4} {statistics.median(ms):>8.1f} {percentile(ms, 0.99):>8.1f} {max(ms):>8.1f}")
    if "notify" in results:
        p99 = 1000 * percentile(results["notify"], 0.99)
        print(f"goal: NOTIFY p99 <= 50 ms: {'met' if p99 <= 50 else 'NOT met'} ({p99:.1f} ms)")


if __name__ == "__main__":
    main()
