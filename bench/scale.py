"""Benchmark of scale-out on PostgreSQL: a burst marked by one daemon, by three, and by a 1 s poller, side by side.

Issue #14 (Benchmark): on a state database of 10,000 runs and 1,000,000 tasks, a burst of 1,000 runs
finishing within a second is fully marked at least 3x faster by the daemons than by a naive poller
that re-reads every open run's tasks once a second, and three daemons have at least 2x the
throughput of one; single-run detection by LISTEN/NOTIFY has p99 <= 50 ms.

What it does, in one run, on the loopback server (127.0.0.1:5432, user postgres, db test):

1. builds a template schema (`bench_scale_<runs>x<tasks>`, kept between runs unless --rebuild,
   dropped by --drop-template): `--runs` runs of `--tasks-per-run` tasks, all terminal but the
   last `--open` runs, which are RUNNING with their last task RUNNING (server-side
   `INSERT ... SELECT generate_series`);
2. for each lifetime, a schema of its own (created, then dropped): `orchestrator init`, a copy of
   the template (`INSERT ... SELECT`, then ANALYZE), `orchestrator init --triggers` (not for the
   watermark lifetime), then the system starts:
   - `1 daemon`: `orchestrator daemon` as a real process, NOTIFY (`database.change_detection=auto`);
   - `3 daemons`: three such processes (`cluster.daemon_id` a, b, c; a workspace each, one shared
     archive root), sharing the runs by rendezvous hashing;
   - `poller`: the baseline, a process that every 1 s reads the open runs (`status` not terminal),
     their tasks' counts (`GROUP BY run_id, status`), decides with the monitor's `detect/rule.py`
     `decide`, marks with a compare-and-set UPDATE in one transaction and appends `RUN_COMPLETED`
     lines to its own JSONL file (the idea of bench/detect.py's poller, on PostgreSQL);
   - `watermark`: one daemon without triggers, `database.change_detection=watermark`;
   every daemon has `completion.settle_seconds=0`, no console sink, no dashboard, and no run
   directories, so archival makes empty bags (there is no knob that turns archival off; the
   measurement stops at `RUN_COMPLETED`, which comes before archival);
3. waits until it is watching: each daemon's `MONITOR_STARTED`, then sentinel runs finished and
   marked (for three daemons, one per daemon until each is marked by its owner: the membership
   has settled);
4. singles (1 daemon, watermark): `--singles` runs finished one at a time (an UPDATE of the last
   task with its `updated_at` stamp, autocommit, `time.monotonic()` right after the commit, a
   random pause of `--gap-ms`), latency = the `RUN_COMPLETED` line's appearance - the commit;
5. burst (1 daemon, 3 daemons, poller, and watermark too): an executor process finishes `--burst`
   runs' last tasks in `--burst-batches` transactions over `--burst-seconds`; the time from its
   first commit, and from its last (what the goals read: the commits alone take most of a second
   of every system's time from the first), until the last run's `RUN_COMPLETED` appears (in any
   daemon's log); afterwards the database is checked: every burst run terminal, exactly one
   `RUN_COMPLETED` each; and the daemons' logs are counted for `RUN_REOPENED` events and ERROR
   lines (none is expected: no run is reopened here).

Rounds alternate the order of the systems; the report gives the median of each system's figures,
ratios, the goals, and the load average at start and end. The machine is shared (2 cores): read
medians and ratios, not single figures. The follower polls the logs every 1 ms (adds up to 1 ms).

    .venv/bin/python bench/scale.py               # 10,000 runs x 100 tasks, 2 rounds
    .venv/bin/python bench/scale.py --quick       # a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from orchestrator_monitor.detect.shares import owner_of
from orchestrator_monitor.state.records import RUN_TERMINAL

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
SYSTEMS = ("1 daemon", "3 daemons", "poller", "watermark")
SINGLES_SYSTEMS = ("1 daemon", "watermark")
DAEMON_IDS = ("a", "b", "c")
SENTINELS = 15  # open runs kept for the readiness check (up to 5 rounds of 3)
GOAL_BURST_RATIO = 3.0  # daemons against the poller
GOAL_SCALE_RATIO = 2.0  # three daemons' throughput against one's
GOAL_P99_MS = 50.0
START_TIMEOUT = 180.0
SETTLE_TIMEOUT = 120.0
STAMP = "to_char(clock_timestamp(), 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"
FINISH = f"UPDATE tasks SET status = 'SUCCEEDED', updated_at = {STAMP} WHERE task_id = ANY(%s)"
TERMINAL = sorted(RUN_TERMINAL)

# The executor: finishes the burst's last tasks. argv: spec.json result.json. Connects, says "ready",
# waits for "go" on stdin, commits its batches over the span, writes the commit times.
WRITER_CODE = """
import json, sys, time
import psycopg
with open(sys.argv[1], encoding="utf-8") as file:
    spec = json.load(file)
connection = psycopg.connect(spec["url"], autocommit=True)
connection.execute(f"SET search_path = {spec['schema']}")
print("ready", flush=True)
sys.stdin.readline()
tasks, batches = spec["tasks"], spec["batches"]
size = -(-len(tasks) // batches)
commits = []
start = time.monotonic()
for index in range(batches):
    delay = start + index * spec["seconds"] / batches - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    group = tasks[index * size : (index + 1) * size]
    if group:
        connection.execute(spec["finish"], (group,))
        commits.append(time.monotonic())
connection.close()
with open(sys.argv[2], "w", encoding="utf-8") as file:
    json.dump(commits, file)
"""

# The baseline: every `interval` seconds (fixed rate) read the open runs and their tasks' counts,
# decide with the monitor's rule, mark with a compare-and-set UPDATE in one transaction, append a
# RUN_COMPLETED line per run (one write per tick). argv: url, schema, log path, interval.
POLLER_CODE = """
import json, os, signal, sys, time
import psycopg
from orchestrator_monitor.detect.rule import Verdict, decide
from orchestrator_monitor.state.records import RUN_TERMINAL, RunSnapshot

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
url, schema, log_path, interval = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
terminal = sorted(RUN_TERMINAL)
connection = psycopg.connect(url, autocommit=True)
connection.execute(f"SET search_path = {schema}")
fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
os.write(fd, (json.dumps({"type": "POLLER_STARTED", "data": {"pid": os.getpid()}}) + "\\n").encode())
next_tick = time.monotonic()
while True:
    with connection.transaction():
        statuses = dict(connection.execute("SELECT run_id, status FROM runs WHERE status <> ALL(%s)", (terminal,)))
        ids = list(statuses)
        tasks, workstreams = {}, {}
        for run_id, status, count in connection.execute(
            "SELECT run_id, status, count(*) FROM tasks WHERE run_id = ANY(%s) GROUP BY run_id, status", (ids,)
        ):
            tasks.setdefault(run_id, {})[status] = count
        for run_id, status, count in connection.execute(
            "SELECT run_id, status, count(*) FROM workstreams WHERE run_id = ANY(%s) GROUP BY run_id, status", (ids,)
        ):
            workstreams.setdefault(run_id, {})[status] = count
    marks = []
    for run_id, status in statuses.items():
        snapshot = RunSnapshot(run_id, status, tasks.get(run_id, {}), workstreams.get(run_id, {}), ())
        decision = decide(snapshot, changed_at=0.0, now=0.0, settle_seconds=0.0)
        if decision.verdict is Verdict.MARK:
            marks.append((run_id, status, decision.status, snapshot.tasks))
    if marks:
        with connection.transaction():
            with connection.cursor() as cursor:
                cursor.executemany(
                    "UPDATE runs SET status = %s, finished_at = now()::text, updated_at = now()::text "
                    "WHERE run_id = %s AND status = %s",
                    [(final, run_id, status) for run_id, status, final, _ in marks],
                )
        lines = [
            {"type": "RUN_COMPLETED", "run_id": run_id, "daemon": "poller", "data": {"status": final, "tasks": counts}}
            for run_id, _, final, counts in marks
        ]
        os.write(fd, "".join(json.dumps(line) + "\\n" for line in lines).encode())
    next_tick += interval
    delay = next_tick - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    else:
        next_tick = time.monotonic()
"""


class BenchError(Exception):
    """A lifetime that could not be measured (a daemon that did not start, runs never marked)."""


@dataclass
class Lifetime:
    system: str
    round_number: int
    startup_seconds: float = 0.0
    singles: list[float] = field(default_factory=list)
    burst_seconds: float = float("nan")
    burst_span: float = 0.0  # first commit to last commit
    missing: int = 0  # burst runs without a RUN_COMPLETED line
    repeated: int = 0  # burst runs with more than one
    left_open: int = 0  # burst runs not terminal in the database
    by_daemon: dict[str, int] = field(default_factory=dict)
    reopened: int = 0  # RUN_REOPENED events: none is expected (no run is reopened here)
    errors: int = 0  # ERROR lines in the daemons' logs


# --- the database --------------------------------------------------------------------------------


def url_for(schema: str) -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"


def admin() -> psycopg.Connection:
    return psycopg.connect(ADMIN, autocommit=True)


def run_id(n: int) -> str:
    return f"run-{n:05d}"


def build_template(schema: str, runs: int, tasks: int, open_runs: int, *, rebuild: bool) -> None:
    """The history and the open runs, once: later runs of the bench copy it."""
    with admin() as connection:
        exists = connection.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
        if exists and not rebuild:
            print(f"template: schema {schema} (cached; --rebuild builds it again)", flush=True)
            return
        started = time.monotonic()
        connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        connection.execute(f"CREATE SCHEMA {schema}")
        first_open = runs - open_runs
        connection.execute(
            f"CREATE TABLE {schema}.runs AS SELECT 'run-' || lpad(r::text, 5, '0') AS run_id, "
            f"CASE WHEN r >= %(first)s THEN 'RUNNING' ELSE 'COMPLETED' END AS status, "
            f"'2026-01-01T00:00:00.000000' AS updated_at FROM generate_series(0, %(runs)s - 1) r",
            {"first": first_open, "runs": runs},
        )
        connection.execute(
            f"CREATE TABLE {schema}.tasks AS SELECT 'run-' || lpad(r::text, 5, '0') || '.' || t AS task_id, "
            f"'run-' || lpad(r::text, 5, '0') AS run_id, "
            f"CASE WHEN r >= %(first)s AND t = %(tasks)s - 1 THEN 'RUNNING' ELSE 'SUCCEEDED' END AS status, "
            f"1 AS attempts, '2026-01-01T00:00:00.000000' AS updated_at "
            f"FROM generate_series(0, %(runs)s - 1) r, generate_series(0, %(tasks)s - 1) t",
            {"first": first_open, "runs": runs, "tasks": tasks},
        )
        print(f"template: built schema {schema} in {time.monotonic() - started:.1f} s", flush=True)


def orchestrator(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator_monitor.cli", *args]


def settings(schema: str, archive: Path, system: str, daemon_id: str) -> list[str]:
    items = [
        f"database.url={url_for(schema)}",
        f"archive.root={archive}",
        "archive.quiet_seconds=0",
        "archive.reserve_bytes=0",
        "events.sinks=",
        "dashboard.enabled=false",
        "completion.settle_seconds=0",
        f"cluster.daemon_id={daemon_id}",
        "cluster.lease_seconds=3",  # membership refreshed every second: the three settle quickly
        "health.heartbeat_seconds=0.5",
        f"database.change_detection={'watermark' if system == 'watermark' else 'auto'}",
    ]
    return [arg for item in items for arg in ("--set", item)]


def check(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv[3:5])} failed: {done.stderr.strip()[-500:]}")


def prepare(schema: str, template: str, root: Path, system: str) -> None:
    """A schema of this lifetime's own: the monitor's tables, the template's rows, the triggers."""
    with admin() as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    ids = DAEMON_IDS if system == "3 daemons" else DAEMON_IDS[:1]
    for daemon_id in ids:
        check(
            orchestrator(
                "init", "--workspace", str(root / daemon_id), *settings(schema, root / "archive", system, daemon_id)
            )
        )
    with admin() as connection:
        connection.execute(
            f"INSERT INTO {schema}.runs (run_id, status, updated_at) "
            f"SELECT run_id, status, updated_at FROM {template}.runs"
        )
        connection.execute(
            f"INSERT INTO {schema}.tasks (task_id, run_id, status, attempts, updated_at) "
            f"SELECT task_id, run_id, status, attempts, updated_at FROM {template}.tasks"
        )
        connection.execute(f"ANALYZE {schema}.runs")
        connection.execute(f"ANALYZE {schema}.tasks")
    if system != "watermark":
        check(
            orchestrator(
                "init", "--triggers", "--workspace", str(root / "a"), *settings(schema, root / "archive", system, "a")
            )
        )


# --- following the logs --------------------------------------------------------------------------


class Follower:
    """Reads the appended lines of several JSONL logs; remembers when each run's RUN_COMPLETED appeared."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self._offsets = dict.fromkeys(paths, 0)
        self.completed: dict[str, float] = {}
        self.by_run: Counter[str] = Counter()
        self.daemon_of: dict[str, str] = {}
        self.types: Counter[str] = Counter()  # event types, and ERROR log lines as "ERROR"

    def read(self) -> None:
        for path, offset in self._offsets.items():
            try:
                with path.open("rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
            except FileNotFoundError:
                continue
            end = chunk.rfind(b"\n") + 1
            self._offsets[path] = offset + end
            seen = time.monotonic()
            for line in chunk[:end].splitlines():
                event = json.loads(line)
                self.types[event["type"]] += 1
                if event.get("level") == "ERROR":
                    self.types["ERROR"] += 1
                if event["type"] == "RUN_COMPLETED":
                    self.completed.setdefault(event["run_id"], seen)
                    self.by_run[event["run_id"]] += 1
                    self.daemon_of.setdefault(event["run_id"], event.get("daemon", "?"))

    def wait(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.read()
            if done():
                return
            if time.monotonic() > deadline:
                raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.001)


# --- a lifetime ----------------------------------------------------------------------------------


@contextlib.contextmanager
def started(system: str, schema: str, root: Path, log: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    if system == "poller":
        argv = [sys.executable, "-c", POLLER_CODE, ADMIN, schema, str(log), "1.0"]
        processes = [subprocess.Popen(argv)]
    else:
        ids = DAEMON_IDS if system == "3 daemons" else DAEMON_IDS[:1]
        processes = [
            subprocess.Popen(
                orchestrator("daemon", "--workspace", str(root / d), *settings(schema, root / "archive", system, d)),
                stdout=subprocess.DEVNULL,
                stderr=open(root / f"{d}.stderr", "wb"),  # noqa: SIM115 (the child owns it)
            )
            for d in ids
        ]
    try:
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def finish_now(connection: psycopg.Connection, runs: Sequence[str], tasks_per_run: int) -> float:
    connection.execute(FINISH, ([f"{r}.{tasks_per_run - 1}" for r in runs],))
    return time.monotonic()


def wait_ready(
    system: str, follower: Follower, writer: psycopg.Connection, sentinels: list[str], tasks_per_run: int
) -> None:
    """Each daemon is watching and past its first reconciliation; three daemons agree on who owns what."""
    count = 3 if system == "3 daemons" else 1
    follower.wait(lambda: follower.types["MONITOR_STARTED"] + follower.types["POLLER_STARTED"] >= count,
                  START_TIMEOUT, "the start")  # fmt: skip
    live = list(DAEMON_IDS[:count])
    for attempt in range(5):
        chosen = [next(r for r in sentinels if owner_of(r, live) == d) for d in live]
        for r in chosen:
            sentinels.remove(r)
        finish_now(writer, chosen, tasks_per_run)
        follower.wait(lambda c=chosen: all(r in follower.completed for r in c), START_TIMEOUT, "the sentinel runs")
        if system != "3 daemons" or all(follower.daemon_of[r] == owner_of(r, live) for r in chosen):
            return
        time.sleep(1.0 + attempt)  # the membership refresh is periodic (lease / 3), not an event to await
    raise BenchError("the three daemons never agreed on the owners of the sentinel runs")


def measure_lifetime(
    system: str, round_number: int, template: str, args: argparse.Namespace, scratch: Path, keep: bool
) -> Lifetime:
    schema = f"bench_scale_{uuid.uuid4().hex[:8]}"
    root = Path(tempfile.mkdtemp(prefix=f"{system.replace(' ', '-')}-", dir=scratch))
    lifetime = Lifetime(system, round_number)
    first_open = args.runs - args.open
    sentinels = [run_id(first_open + n) for n in range(SENTINELS)]
    singles = [run_id(first_open + SENTINELS + n) for n in range(args.singles)]
    burst = [run_id(first_open + SENTINELS + args.singles + n) for n in range(args.burst)]
    try:
        prepare(schema, template, root, system)
        ids = DAEMON_IDS if system == "3 daemons" else DAEMON_IDS[:1]
        logs = [root / "poller.jsonl"] if system == "poller" else [root / d / "logs" / "monitor.jsonl" for d in ids]
        follower = Follower(logs)
        with psycopg.connect(ADMIN, autocommit=True) as writer:
            writer.execute(f"SET search_path = {schema}")
            spawned = time.monotonic()
            with started(system, schema, root, logs[0]) as processes:
                wait_ready(system, follower, writer, sentinels, args.tasks_per_run)
                lifetime.startup_seconds = time.monotonic() - spawned
                if system in SINGLES_SYSTEMS:
                    rng = random.Random(args.seed + round_number)
                    for r in singles:
                        committed = finish_now(writer, [r], args.tasks_per_run)
                        follower.wait(lambda r=r: r in follower.completed, SETTLE_TIMEOUT, f"run {r}")
                        lifetime.singles.append(follower.completed[r] - committed)
                        time.sleep(rng.uniform(*args.gap_ms) / 1000)  # a writer's pace, not a condition
                measure_burst(lifetime, follower, schema, burst, args, root)
                if any(p.poll() is not None for p in processes):
                    raise BenchError(f"{system}: a process exited during the lifetime")
            lifetime.missing = sum(1 for r in burst if r not in follower.completed)
            lifetime.repeated = sum(1 for r in burst if follower.by_run[r] > 1)
            lifetime.reopened, lifetime.errors = follower.types["RUN_REOPENED"], follower.types["ERROR"]
            lifetime.by_daemon = dict(Counter(follower.daemon_of[r] for r in burst if r in follower.daemon_of))
            lifetime.left_open = writer.execute(
                "SELECT count(*) FROM runs WHERE run_id = ANY(%s) AND status <> ALL(%s)", (burst, TERMINAL)
            ).fetchone()[0]  # type: ignore[index]
    finally:
        with admin() as connection:
            connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return lifetime


def measure_burst(
    lifetime: Lifetime, follower: Follower, schema: str, burst: list[str], args: argparse.Namespace, root: Path
) -> None:
    spec = {
        "url": ADMIN,
        "schema": schema,
        "tasks": [f"{r}.{args.tasks_per_run - 1}" for r in burst],
        "batches": args.burst_batches,
        "seconds": args.burst_seconds,
        "finish": FINISH,
    }
    (root / "burst.json").write_text(json.dumps(spec), encoding="utf-8")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER_CODE, str(root / "burst.json"), str(root / "commits.json")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdin is not None and writer.stdout is not None
    if writer.stdout.readline().strip() != "ready":
        raise BenchError("the burst writer did not start")
    writer.stdin.write("go\n")
    writer.stdin.flush()
    follower.wait(lambda: all(r in follower.completed for r in burst), SETTLE_TIMEOUT, "the burst")
    if writer.wait(timeout=30) != 0:
        raise BenchError("the burst writer failed")
    commits = json.loads((root / "commits.json").read_text(encoding="utf-8"))
    lifetime.burst_seconds = max(follower.completed[r] for r in burst) - commits[0]
    lifetime.burst_span = commits[-1] - commits[0]


# --- the report ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(lifetimes: list[Lifetime], args: argparse.Namespace, load_start: tuple[float, ...]) -> list[str]:
    by_system = {s: [lt for lt in lifetimes if lt.system == s] for s in SYSTEMS}
    burst = {s: median([lt.burst_seconds for lt in group]) for s, group in by_system.items()}
    tail = {s: median([lt.burst_seconds - lt.burst_span for lt in group]) for s, group in by_system.items()}
    print(f"\n== per lifetime (burst of {args.burst} runs in {args.burst_batches} transactions)")
    for lt in lifetimes:
        singles = (
            f"; singles n={len(lt.singles)} p50 {1000 * percentile(lt.singles, 0.5):.1f} ms "
            f"p99 {1000 * percentile(lt.singles, 0.99):.1f} ms"
            if lt.singles
            else ""
        )
        print(
            f"   round {lt.round_number + 1} {lt.system:<10} ready after {lt.startup_seconds:5.1f} s; burst "
            f"{lt.burst_seconds:6.2f} s (commits spanned {lt.burst_span:.2f} s), {args.burst / lt.burst_seconds:6.0f} "
            f"runs/s; missing {lt.missing}, repeated {lt.repeated}, left open {lt.left_open}; RUN_REOPENED "
            f"{lt.reopened}, ERROR lines {lt.errors}; marked by "
            f"{', '.join(f'{k} {v}' for k, v in sorted(lt.by_daemon.items()))}{singles}"
        )
    one, three, poller = burst["1 daemon"], burst["3 daemons"], burst["poller"]
    singles = {s: [x for lt in by_system[s] for x in lt.singles] for s in SINGLES_SYSTEMS}
    notify_p99 = 1000 * percentile(singles["1 daemon"], 0.99)
    print(f"\n== figures (median of {args.rounds} lifetimes each; singles: all samples pooled)")
    print(f"   {'figure':<44} {'value':>10} {'baseline':>22} {'ratio':>7} {'goal':>16}")

    def row(name: str, value: str, baseline: str = "", ratio: str = "", goal: str = "") -> None:
        print(f"   {name:<44} {value:>10} {baseline:>22} {ratio:>7} {goal:>16}")

    for system in ("1 daemon", "3 daemons", "watermark"):
        seconds = burst[system]
        row(
            f"burst, {system}: fully marked, s (runs/s)",
            f"{seconds:.2f} ({args.burst / seconds:.0f})",
            f"poller {poller:.2f} ({args.burst / poller:.0f})",
            f"{poller / seconds:.2f}x",
            f">= {GOAL_BURST_RATIO:.0f}x" if system != "watermark" else "",
        )
    row("burst, poller: fully marked, s (runs/s)", f"{poller:.2f} ({args.burst / poller:.0f})")
    for system in ("1 daemon", "3 daemons", "watermark"):
        row(
            f"burst, {system}: last commit -> last marked, s",
            f"{tail[system]:.2f}",
            f"poller {tail['poller']:.2f}",
            f"{tail['poller'] / tail[system]:.2f}x",
            f">= {GOAL_BURST_RATIO:.0f}x" if system != "watermark" else "",
        )
    row(
        "throughput, 3 daemons against 1",
        f"{one / three:.2f}x",
        f"1 daemon {one:.2f} s",
        "",
        f">= {GOAL_SCALE_RATIO:.0f}x",
    )
    row(
        "throughput, 3 daemons against 1, after last commit",
        f"{tail['1 daemon'] / tail['3 daemons']:.2f}x",
        f"1 daemon {tail['1 daemon']:.2f} s",
    )
    span = median([lt.burst_span for lt in lifetimes])
    print(
        f"   (the burst goals against the poller are read from its last commit: from its first, the commits take "
        f"{span:.2f} s of every system's figure, so a poller at most a scan behind them can never be "
        f"{GOAL_BURST_RATIO:.0f}x slower by construction)"
    )
    for system, label in (("1 daemon", "NOTIFY"), ("watermark", "watermark")):
        values = singles[system]
        p50, p99 = 1000 * percentile(values, 0.5), 1000 * percentile(values, 0.99)
        goal = f"p99 <= {GOAL_P99_MS:.0f} ms" if system == "1 daemon" else ""
        row(f"single run, {label}: p50 / p99 ms (n={len(values)})", f"{p50:.1f} / {p99:.1f}", "", "", goal)
    if singles["watermark"]:
        p99_watermark = 1000 * percentile(singles["watermark"], 0.99)
        row("single run p99, NOTIFY against watermark", f"{notify_p99:.1f} ms", f"watermark {p99_watermark:.1f} ms",
            f"{p99_watermark / notify_p99:.2f}x")  # fmt: skip
    load_end = os.getloadavg()
    print(
        f"   load average at start {' '.join(f'{x:.2f}' for x in load_start)}, at end "
        f"{' '.join(f'{x:.2f}' for x in load_end)} ({os.cpu_count()} CPUs)"
    )
    missed: list[str] = []
    print("\n== goals")

    def goal(ok: bool, text: str) -> None:
        print(f"   {'PASS' if ok else 'MISS'}: {text}")
        if not ok:
            missed.append(text)

    for system in ("1 daemon", "3 daemons"):
        faster = tail["poller"] / tail[system]
        goal(
            faster >= GOAL_BURST_RATIO,
            f"{system}: burst marked >= {GOAL_BURST_RATIO:.0f}x faster than the poller after its last commit: "
            f"{faster:.2f}x ({tail[system]:.2f} s against {tail['poller']:.2f} s)",
        )
    goal(
        one / three >= GOAL_SCALE_RATIO, f"3 daemons >= {GOAL_SCALE_RATIO:.0f}x the throughput of 1: {one / three:.2f}x"
    )
    goal(notify_p99 <= GOAL_P99_MS, f"single-run NOTIFY p99 <= {GOAL_P99_MS:.0f} ms: {notify_p99:.1f} ms")
    exact = all(not lt.missing and not lt.repeated and not lt.left_open for lt in lifetimes)
    goal(exact, "every burst run marked, exactly one RUN_COMPLETED each, terminal in the database")
    clean = sum(lt.reopened + lt.errors for lt in lifetimes)
    goal(clean == 0, f"no RUN_REOPENED and no ERROR line in any daemon's log: {clean}")
    return missed


# --- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, help="runs in the database (default 10000; --quick 1000)")
    parser.add_argument("--tasks-per-run", type=int, help="tasks per run (default 100; --quick 20)")
    parser.add_argument("--burst", type=int, help="runs finished in the burst (default 1000; --quick 200)")
    parser.add_argument("--burst-batches", type=int, default=10, help="transactions in the burst (default 10)")
    parser.add_argument("--burst-seconds", type=float, default=1.0, help="the burst's commits span (default 1 s)")
    parser.add_argument(
        "--singles", type=int, help="runs finished one at a time per lifetime (default 100; --quick 20)"
    )
    parser.add_argument("--gap-ms", type=float, nargs=2, default=(50.0, 150.0), metavar=("MIN", "MAX"),
                        help="random pause between single runs (default 50 150 ms)")  # fmt: skip
    parser.add_argument("--rounds", type=int, help="lifetimes per system, in alternating order (default 2; --quick 1)")
    parser.add_argument("--system", action="append", choices=SYSTEMS, help="repeatable; default: all four")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rebuild", action="store_true", help="build the template schema again even if kept")
    parser.add_argument("--drop-template", action="store_true", help="drop the template schema at the end")
    parser.add_argument("--keep", action="store_true", help="keep each lifetime's workspaces (debugging)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args(argv)
    defaults = {
        "runs": 1000 if args.quick else 10_000,
        "tasks_per_run": 20 if args.quick else 100,
        "burst": 200 if args.quick else 1000,
        "singles": 20 if args.quick else 100,
        "rounds": 1 if args.quick else 2,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.open = SENTINELS + args.singles + args.burst
    if args.open > args.runs or min(args.tasks_per_run, args.rounds, args.burst_batches, args.burst) < 1:
        parser.error("--runs must hold the open runs (15 + singles + burst); sizes must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load_start = os.getloadavg()
    with admin() as connection:
        version = connection.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    print(
        f"bench/scale.py: python {sys.version.split()[0]}, PostgreSQL {version}, {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{x:.2f}' for x in load_start)}; {args.runs:,} runs x {args.tasks_per_run} tasks, "
        f"{args.open} open; burst {args.burst} runs in {args.burst_batches} transactions over {args.burst_seconds} s; "
        f"{args.singles} singles per lifetime (1 daemon, watermark); {args.rounds} round(s)"
    )
    template = f"bench_scale_{args.runs}x{args.tasks_per_run}_o{args.open}"
    build_template(template, args.runs, args.tasks_per_run, args.open, rebuild=args.rebuild)
    systems = [s for s in SYSTEMS if s in (args.system or SYSTEMS)]
    scratch = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    lifetimes: list[Lifetime] = []
    try:
        for round_number in range(args.rounds):
            for system in systems if round_number % 2 == 0 else systems[::-1]:
                print(f"round {round_number + 1}/{args.rounds}: {system} ...", flush=True)
                lifetimes.append(measure_lifetime(system, round_number, template, args, scratch, args.keep))
    except BenchError as err:
        print(f"bench: {err}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
        if args.drop_template:
            with admin() as connection:
                connection.execute(f"DROP SCHEMA IF EXISTS {template} CASCADE")
    missed = report(lifetimes, args, load_start)
    print("\n== summary")
    print("goals: all met" if not missed else "goals missed:")
    for line in missed:
        print(f"   {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
