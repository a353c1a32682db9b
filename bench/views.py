"""Benchmark of the read views: `orchestrator status --json` and `orchestrator monitor --run ID --json`.

Issue #2: on a workspace of 10,000 runs and 1,000,000 tasks (built with the simulator's
SQL), each command should take under 0.5 s of wall time and under 150 MB of peak memory,
and its queries should be answered from indexes.

What it does:

1. builds the workspace (`orchestrator init`, then `demo/simulator.py` `bulk_populate`), timed, and
   caches it under `--workdir`; a later run reuses it when it has the right size;
2. records the SQL each command really runs (SQLAlchemy's `before_cursor_execute`, while
   calling the same reader functions as the CLI) and prints its `EXPLAIN QUERY PLAN`,
   flagging any `SCAN tasks` that is not a covering-index scan;
3. times, as subprocesses, round-robin over `--repeat` rounds after one warm-up round:
   - the interpreter start-up floor: `python -c "import orchestrator_monitor.cli.main"`;
   - the SQL floor: the same SQL with bare `sqlite3` (no SQLAlchemy, no views, no JSON);
   - the real CLI, its output going to a file;
   each with its wall time and its peak RSS (`os.wait4` on the child's pid);
4. prints medians, p90, min and max beside the baselines with ratios, and the goals.

The machine is shared and noisy, so read medians and ratios, not single figures. Usage:

    .venv/bin/python bench/views.py                         # full size (first build takes a while)
    .venv/bin/python bench/views.py --runs 200 --tasks-per-run 20 --repeat 3   # quick check
    .venv/bin/python bench/views.py --profile               # plus cProfile of both commands, import times
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from orchestrator_monitor.cli import main as cli
from orchestrator_monitor.config import STATE_DB, load_settings
from orchestrator_monitor.demo.simulator import bulk_populate
from orchestrator_monitor.timefmt import utc_now
from orchestrator_monitor.views.reader import read_run, read_status, state_reader
from sqlalchemy import event

GOAL_SECONDS = 0.5
GOAL_RSS_MB = 150.0
MARKER = "bench-workspace.json"
PYTHON = sys.executable
STARTUP_CODE = "import orchestrator_monitor.cli.main"
TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None  # GNU time, for peak RSS

# The SQL floor: the recorded queries in one read transaction with nothing but `sqlite3`.
# It prints how long the SQL itself took inside the process, to separate it from start-up.
FLOOR_CODE = """
import json, sqlite3, sys, time
from urllib.parse import quote
started = time.perf_counter()
with open(sys.argv[1], encoding="utf-8") as file:
    spec = json.load(file)
connection = sqlite3.connect(
    "file:" + quote(spec["database"]) + "?mode=ro", uri=True, isolation_level=None, timeout=5
)
connection.execute("BEGIN")
rows = 0
for query in spec["queries"]:
    rows += len(connection.execute(query["sql"], query["params"]).fetchall())
connection.execute("COMMIT")
connection.close()
print(json.dumps({"rows": rows, "sql_seconds": time.perf_counter() - started}))
"""


# Without GNU time: fork and exec the command from this small process, report its peak RSS
# (KiB on Linux) and the wall time from fork to exit.
LAUNCHER_CODE = """
import os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_pid, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - started
with open(sys.argv[1], "w", encoding="utf-8") as file:
    file.write(f"{usage.ru_maxrss} {seconds}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


@dataclass(frozen=True)
class Query:
    """One statement a command runs: the `queries` function that ran it, its SQL and parameters."""

    function: str
    sql: str
    params: list[Any]


@dataclass(frozen=True)
class Sample:
    seconds: float
    max_rss_mb: float
    stdout_bytes: int
    inner_sql_seconds: float | None = None


@dataclass
class Series:
    """Repeated measurements of one subprocess."""

    label: str
    argv: list[str]
    samples: list[Sample] = field(default_factory=list)

    def seconds(self) -> list[float]:
        return [sample.seconds for sample in self.samples]

    def rss(self) -> list[float]:
        return [sample.max_rss_mb for sample in self.samples]


# --- the workspace -----------------------------------------------------------------------------


def orchestrator_command() -> list[str]:
    """The venv's `orchestrator` script next to this interpreter, else the one on PATH."""
    beside = Path(PYTHON).parent / "orchestrator"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("orchestrator")
    if found is None:
        sys.exit("bench: cannot find the `orchestrator` command; install the package (pip install -e .)")
    return [found]


def count_rows(database: Path) -> tuple[int, int]:
    connection = sqlite3.connect(f"file:{quote(str(database))}?mode=ro", uri=True)
    try:
        runs = connection.execute("SELECT count(*) FROM runs").fetchone()[0]
        tasks = connection.execute("SELECT count(*) FROM tasks").fetchone()[0]
    finally:
        connection.close()
    return int(runs), int(tasks)


def prepare_workspace(workdir: Path, runs: int, tasks_per_run: int, *, rebuild: bool) -> Path:
    """The cached workspace of this size, built when missing, incomplete or `rebuild`."""
    workspace = workdir / f"views-{runs}x{tasks_per_run}"
    database = workspace / STATE_DB
    marker = workspace / MARKER
    if not rebuild and marker.is_file() and database.is_file():
        info = json.loads(marker.read_text(encoding="utf-8"))
        if count_rows(database) == (runs, runs * tasks_per_run):
            print(
                f"workspace: reusing {workspace} (built {info['built_at']}: init {info['init_seconds']:.2f} s, "
                f"bulk_populate {info['populate_seconds']:.1f} s); database {mb(database.stat().st_size):.0f} MB"
            )
            return workspace
        print(f"workspace: {workspace} does not have {runs} runs and {runs * tasks_per_run} tasks; rebuilding")
    if workspace.exists():
        shutil.rmtree(workspace)
    workspace.mkdir(parents=True)

    print(f"workspace: building {workspace}: {runs} runs x {tasks_per_run} tasks ...", flush=True)
    started = time.perf_counter()
    subprocess.run([*orchestrator_command(), "init", "--workspace", str(workspace)], check=True, capture_output=True)
    init_seconds = time.perf_counter() - started
    started = time.perf_counter()
    bulk_populate(database, runs=runs, tasks_per_run=tasks_per_run)
    populate_seconds = time.perf_counter() - started
    marker.write_text(
        json.dumps(
            {
                "runs": runs,
                "tasks_per_run": tasks_per_run,
                "init_seconds": init_seconds,
                "populate_seconds": populate_seconds,
                "built_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
        ),
        encoding="utf-8",
    )
    print(
        f"workspace: built: orchestrator init {init_seconds:.2f} s, bulk_populate {populate_seconds:.1f} s "
        f"({runs * tasks_per_run / populate_seconds:,.0f} tasks/s); database {mb(database.stat().st_size):.0f} MB"
    )
    return workspace


def pick_run(runs: int) -> str:
    """A finished run with failures (bulk_populate fails every third task of runs r % 7 == 0, r % 10 != 0)."""
    for r in range(runs // 2, -1, -1):
        if r % 7 == 0 and r % 10 != 0:
            return f"run-{r:06d}"
    return f"run-{runs // 2:06d}"


# --- the SQL the commands run ------------------------------------------------------------------


def _queries_function() -> str:
    """The name of the `state.queries` function on the current call stack."""
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_filename.endswith(os.path.join("state", "queries.py")):
            return frame.f_code.co_name
        frame = frame.f_back
    return "?"


def record_queries(workspace: Path, run_id: str) -> dict[str, list[Query]]:
    """The SELECTs of `status` and of `monitor --run`, recorded while the CLI's reader functions run them."""
    settings = load_settings(workspace)
    recorded: list[Query] = []
    result: dict[str, list[Query]] = {}
    with state_reader(settings) as state:

        @event.listens_for(state.engine, "before_cursor_execute")
        def _record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
            if statement.lstrip().upper().startswith("SELECT"):
                recorded.append(Query(_queries_function(), statement, list(parameters or ())))

        read_status(state, utc_now())
        result["status"], recorded = recorded, []
        read_run(state, run_id, utc_now())
        result["monitor"] = recorded
    return result


def print_query_plans(database: Path, commands: dict[str, list[Query]]) -> list[str]:
    """EXPLAIN QUERY PLAN of every recorded query; returns the flagged lines."""
    flagged: list[str] = []
    connection = sqlite3.connect(f"file:{quote(str(database))}?mode=ro", uri=True)
    try:
        for command, queries in commands.items():
            for query in queries:
                print(f"\n[{command}] queries.{query.function}  params={query.params}")
                print("  " + " ".join(query.sql.split()))
                depth: dict[int, int] = {0: 0}
                for node_id, parent, _unused, detail in connection.execute(
                    f"EXPLAIN QUERY PLAN {query.sql}", query.params
                ):
                    depth[node_id] = depth.get(parent, 0) + 1
                    note = ""
                    if "SCAN tasks" in detail and "COVERING INDEX" not in detail:
                        note = "   <-- FLAG: scans the tasks table, not a covering index"
                        flagged.append(f"[{command}] queries.{query.function}: {detail}")
                    elif "TEMP B-TREE" in detail:
                        note = "   (sort in a temporary b-tree)"
                    print(f"  {'  ' * depth[node_id]}{detail}{note}")
    finally:
        connection.close()
    return flagged


# --- timing subprocesses -----------------------------------------------------------------------


def mb(size_bytes: float) -> float:
    return size_bytes / (1024 * 1024)


def run_once(argv: Sequence[str], scratch: Path) -> Sample:
    """Wall time and peak RSS of one subprocess; stdout goes to a file, as to a redirect.

    Peak RSS is not read from this process's `os.wait4`: Python starts children with vfork, and
    Linux then counts the parent's own RSS (this script's, ~50 MB) in the child's `ru_maxrss`.
    A small intermediate process avoids that: GNU time when present (its wall time, measured
    here, includes its fork and exec, about a millisecond), else `LAUNCHER_CODE`, which
    measures the wall time itself so that its own start-up is not counted.
    """
    out_path, err_path, rss_path = scratch / "stdout", scratch / "stderr", scratch / "maxrss"
    if TIME:
        wrapped = [TIME, "-f", "%M", "-o", str(rss_path), *argv]
    else:
        wrapped = [PYTHON, "-c", LAUNCHER_CODE, str(rss_path), *argv]
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        returncode = subprocess.run(wrapped, stdout=out, stderr=err, stdin=subprocess.DEVNULL).returncode
        seconds = time.perf_counter() - started
    if returncode != 0:
        stderr = err_path.read_text(encoding="utf-8", errors="replace").strip()
        sys.exit(f"bench: {' '.join(argv)} exited {returncode}: {stderr[-2000:]}")
    fields = rss_path.read_text(encoding="utf-8").split()
    if TIME:
        max_rss_kib = int(fields[-1])  # KiB
    else:
        max_rss_kib, seconds = int(fields[0]), float(fields[1])
    inner = None
    if argv[1:2] == ["-c"] and argv[2] == FLOOR_CODE:
        inner = json.loads(out_path.read_text(encoding="utf-8"))["sql_seconds"]
    return Sample(seconds, max_rss_kib / 1024, out_path.stat().st_size, inner)


def check_output(command: str, path: Path, runs: int, tasks_per_run: int, run_id: str) -> str:
    """A sanity check that the CLI printed the whole answer; returns a one-line description."""
    document = json.loads(path.read_bytes())
    size = mb(path.stat().st_size)
    if command == "status":
        total = sum(line["tasks_total"] for line in document["runs"])
        if len(document["runs"]) != runs or total != runs * tasks_per_run:
            sys.exit(f"bench: status --json printed {len(document['runs'])} runs / {total} tasks")
        return f"{len(document['runs'])} runs, {total} tasks, {size:.2f} MB of JSON"
    run = document["run"]
    if run["run_id"] != run_id or run["tasks_total"] != tasks_per_run:
        sys.exit(f"bench: monitor --json printed run {run['run_id']} with {run['tasks_total']} tasks")
    return f"run {run_id} {run['status']}, {run['tasks_total']} tasks, errors {run_errors(document)}, {size:.3f} MB"


def run_errors(document: dict[str, Any]) -> dict[str, int]:
    return dict(document.get("errors", {}))


def quantile90(values: list[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def describe(series: Series) -> str:
    secs, rss = series.seconds(), series.rss()
    return (
        f"{series.label:<50} {statistics.median(secs):7.3f} {quantile90(secs):7.3f} {min(secs):7.3f} "
        f"{max(secs):7.3f}   {statistics.median(rss):7.1f} {max(rss):7.1f}"
    )


def report(
    command: str, description: str, startup: Series, floor: Series, real: Series, python_floor: Series
) -> list[str]:
    """Print one command's figures beside its baselines; returns the goals it missed."""
    print(f"\n== orchestrator {command} --json: {description}")
    print(f"{'':<50} {'median':>7} {'p90':>7} {'min':>7} {'max':>7}   {'RSS med':>7} {'RSS max':>7}   (seconds; MB)")
    for series in (python_floor, startup, floor, real):
        print(describe(series))
    cli_median = statistics.median(real.seconds())
    floor_median = statistics.median(floor.seconds())
    startup_median = statistics.median(startup.seconds())
    inner = [sample.inner_sql_seconds for sample in floor.samples if sample.inner_sql_seconds is not None]
    inner_median = statistics.median(inner)
    print(
        f"ratios (medians): CLI / sqlite3 floor {cli_median / floor_median:.2f}x, "
        f"CLI / start-up floor {cli_median / startup_median:.2f}x; "
        f"SQL alone inside the floor process {inner_median:.3f} s"
    )
    beyond = cli_median - startup_median - inner_median
    print(
        f"breakdown (medians): start-up {startup_median:.3f} s + SQL {inner_median:.3f} s "
        f"+ the rest (SQLAlchemy, settings, views, JSON) {beyond:.3f} s = CLI {cli_median:.3f} s"
    )
    missed: list[str] = []
    rss_max = max(real.rss())
    time_ok, rss_ok = cli_median < GOAL_SECONDS, rss_max < GOAL_RSS_MB
    print(
        f"goal: median wall < {GOAL_SECONDS} s: {'PASS' if time_ok else 'MISS'} ({cli_median:.3f} s); "
        f"peak RSS < {GOAL_RSS_MB:.0f} MB: {'PASS' if rss_ok else 'MISS'} ({rss_max:.1f} MB, worst of all rounds)"
    )
    if not time_ok:
        missed.append(f"{command}: median {cli_median:.3f} s >= {GOAL_SECONDS} s")
    if not rss_ok:
        missed.append(f"{command}: peak RSS {rss_max:.1f} MB >= {GOAL_RSS_MB:.0f} MB")
    return missed


# --- profiling (--profile) ---------------------------------------------------------------------


def profile_in_process(argv: list[str], top: int) -> None:
    """cProfile of `cli/main.py` `main(argv)` in this (already warm) process: where the time after imports goes."""
    profiler = cProfile.Profile()
    sink = io.StringIO()
    with redirect_stdout(sink):
        started = time.perf_counter()
        profiler.enable()
        code = cli.main(argv)
        profiler.disable()
        seconds = time.perf_counter() - started
    print(f"\n-- cProfile, in process, imports already done: orchestrator {' '.join(argv[:2])} ...")
    print(f"   exit {code}, {seconds:.3f} s, {mb(len(sink.getvalue())):.2f} MB printed; top {top} by cumulative time")
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(top)
    body = stream.getvalue()
    print(body[body.find("   ncalls") :].rstrip())


def profile_imports(min_seconds: float) -> None:
    """`python -X importtime`: the import tree of `orchestrator_monitor.cli.main`, two levels deep, cumulative."""
    result = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", STARTUP_CODE], capture_output=True, text=True, check=True
    )
    rows: list[tuple[int, int, str]] = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self, cumulative, name = line.removeprefix("import time:").split("|")
        depth = (len(name) - len(name.lstrip()) - 1) // 2  # one space, then two per nesting level
        if depth <= 2 and int(cumulative) >= min_seconds * 1e6:
            rows.append((depth, int(cumulative), name.strip()))
    print(f"\n-- import tree of {STARTUP_CODE!r}, two levels, >= {min_seconds * 1000:.0f} ms cumulative")
    print("   (python -X importtime, one cold-ish run: children are listed before their parent)")
    for depth, micros, name in rows:
        print(f"   {micros / 1e6:7.3f} s  {'  ' * depth}{name}")


# --- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000, help="runs in the workspace (default 10000)")
    parser.add_argument("--tasks-per-run", type=int, default=100, help="tasks per run (default 100)")
    parser.add_argument("--repeat", type=int, default=11, help="measured rounds after one warm-up (default 11)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "orchestrator-bench",
        help="where built workspaces are cached (default: %(default)s)",
    )
    parser.add_argument("--rebuild", action="store_true", help="build the workspace again even if cached")
    parser.add_argument("--run", metavar="ID", help="the run for `monitor` (default: a run with failures)")
    parser.add_argument("--profile", action="store_true", help="also print cProfile and import-time profiles")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.tasks_per_run < 1 or args.repeat < 1:
        parser.error("--runs, --tasks-per-run and --repeat must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"bench/views.py: python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"peak RSS by {'GNU time' if TIME else 'a fork-and-wait4 launcher'}"
    )
    workspace = prepare_workspace(args.workdir.absolute(), args.runs, args.tasks_per_run, rebuild=args.rebuild)
    database = (workspace / STATE_DB).absolute()
    run_id = args.run or pick_run(args.runs)

    commands = record_queries(workspace, run_id)
    print("\n== EXPLAIN QUERY PLAN of each query the two commands run")
    flagged = print_query_plans(database, commands)

    scratch = Path(tempfile.mkdtemp(prefix="views-", dir=args.workdir))
    try:
        orchestrator = orchestrator_command()
        python_floor = Series("python -c pass (bare interpreter)", [PYTHON, "-c", "pass"])
        startup = Series(f"start-up floor: {STARTUP_CODE}", [PYTHON, "-c", STARTUP_CODE])
        floors: dict[str, Series] = {}
        reals: dict[str, Series] = {}
        for command, queries in commands.items():
            spec = scratch / f"{command}-queries.json"
            spec.write_text(
                json.dumps({"database": str(database), "queries": [q.__dict__ for q in queries]}), encoding="utf-8"
            )
            floors[command] = Series("SQL floor: same SQL, bare sqlite3", [PYTHON, "-c", FLOOR_CODE, str(spec)])
            extra = ["--run", run_id] if command == "monitor" else []
            reals[command] = Series(
                f"orchestrator {command} --json",
                [*orchestrator, command, *extra, "--json", "--workspace", str(workspace)],
            )
        order = [python_floor, startup, *(s for c in commands for s in (floors[c], reals[c]))]

        print(f"\n== timing: 1 warm-up round + {args.repeat} measured rounds, round-robin over {len(order)} commands")
        descriptions: dict[str, str] = {}
        for series in order:  # warm-up: page cache, .pyc files; also checks every command works
            run_once(series.argv, scratch)
            for command, real in reals.items():
                if series is real:
                    descriptions[command] = check_output(
                        command, scratch / "stdout", args.runs, args.tasks_per_run, run_id
                    )
        for round_number in range(args.repeat):
            for series in order:
                series.samples.append(run_once(series.argv, scratch))
            print(f"   round {round_number + 1}/{args.repeat} done", end="\r", flush=True)
        print()

        missed: list[str] = []
        for command in commands:
            missed += report(command, descriptions[command], startup, floors[command], reals[command], python_floor)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    if args.profile:
        profile_imports(0.005)
        for command in commands:
            extra = ["--run", run_id] if command == "monitor" else []
            profile_in_process([command, *extra, "--json", "--workspace", str(workspace)], 25)

    print("\n== summary")
    print(f"query plans: {'every tasks access uses an index' if not flagged else 'FLAGGED:'}")
    for line in flagged:
        print(f"   {line}")
    print("goals: all met" if not missed else "goals missed:")
    for line in missed:
        print(f"   {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
