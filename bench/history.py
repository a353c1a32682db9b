"""How the daemon's full reconciliation and its memory grow with a workspace's history.

No issue names this figure yet; it is here because a daemon that runs for months sees the
executor's `runs` table grow (10,000 runs a day is a million in a hundred days, unless the
executor prunes). For each size it builds (once, cached under --workdir) a state database of
N finished runs with T tasks each and a ledger where all of them are done (the baseline),
then, in a fresh process per size, starts a `Detector` on it and times three full
reconciliation passes, reading the process's peak RSS. Beside each size it prints the period
the detection job gives the full pass (`RECONCILE_COST_FACTOR` times its duration, at least
`completion.reconcile_seconds`) and the share of a core that costs. The smallest size is the
baseline (the workspace size of bench/detect.py).

    .venv/bin/python bench/history.py                           # 10k, 100k runs
    .venv/bin/python bench/history.py --sizes 10000 100000 1000000

With --daemon it measures the real `orchestrator daemon` instead (issue 14's goal: under
100 MB RSS and under 2 s to start with a million runs of history). Each size is an `orchestrator
init` workspace holding the same runs and ledger; each of --starts starts runs on a fresh copy of
it, with the default configuration (the dashboard on a free port) and `NOTIFY_SOCKET` set as
systemd does: start-up is process start to `READY=1`; RSS and RssAnon are read from /proc at
READY, once the whole process is idle after its start-up reconciliation (less than 20 ms of CPU
in a second), and --idle seconds after READY; peak is VmHWM. Medians over the starts, the
smallest size (default: an empty workspace) the baseline.

    .venv/bin/python bench/history.py --daemon                  # 0, 10k, 100k runs
    .venv/bin/python bench/history.py --daemon --sizes 0 10000 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from chaos_support import PYTHON, clean_environment, free_port, init_workspace, process_sample
from orchestrator_monitor.config import CompletionSettings
from orchestrator_monitor.detect.detector import Detector
from orchestrator_monitor.detect.job import RECONCILE_COST_FACTOR
from orchestrator_monitor.ledger.runs import Ledger
from orchestrator_monitor.ledger.store import sqlite_store
from orchestrator_monitor.state.engine import create_sqlite_database, open_engine
from orchestrator_monitor.state.mapping import built_in
from orchestrator_monitor.state.tables import build_tables

TASKS_BY_SIZE = {10_000: 10, 100_000: 10}  # larger sizes: 2 tasks per run, to keep the build short


def build(directory: Path, runs: int, tasks: int) -> None:
    """A state database of `runs` finished runs and a ledger that has all of them done."""
    if (directory / "ready").exists():
        return
    directory.mkdir(parents=True, exist_ok=True)
    create_sqlite_database(directory / "state.db", busy_timeout_seconds=5)
    fill(directory / "state.db", directory / "monitor.db", runs, tasks)
    (directory / "ready").touch()


def build_workspace(directory: Path, runs: int, tasks: int) -> None:
    """An `orchestrator init` workspace holding what `build` makes, where the daemon looks for it."""
    if (directory / "ready").exists():
        return
    shutil.rmtree(directory, ignore_errors=True)
    init_workspace(directory)
    fill(directory / ".state" / "orchestration.db", directory / ".monitor" / "monitor.db", runs, tasks)
    (directory / "ready").touch()


def fill(state_db: Path, monitor_db: Path, runs: int, tasks: int) -> None:
    # closed, so that its last close removes the WAL file: a workspace at rest, not one the size of the build
    with closing(sqlite3.connect(state_db)) as connection, connection:
        stamp = "2026-01-01T00:00:00Z"
        connection.executemany(
            "INSERT INTO runs (run_id, status, created_at, updated_at, finished_at) VALUES (?, 'COMPLETED', ?, ?, ?)",
            ((f"run-{n:07d}", stamp, stamp, stamp) for n in range(runs)),
        )
        connection.executemany(
            "INSERT INTO tasks (task_id, run_id, status, attempts) VALUES (?, ?, 'SUCCEEDED', 1)",
            ((f"run-{n:07d}.{t}", f"run-{n:07d}") for n in range(runs) for t in range(tasks)),
        )
    store = sqlite_store(monitor_db, busy_timeout_seconds=5)
    Ledger(store).take_baseline({f"run-{n:07d}": "COMPLETED" for n in range(runs)})
    store.dispose()


def peak_rss_mb() -> float:
    """This process's VmHWM: `ru_maxrss` would count the parent, whose RSS after a build (the
    baseline of every run in memory) a child started by vfork + exec inherits as its maximum."""
    status = Path("/proc/self/status").read_text(encoding="utf-8")
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024


def measure(directory: Path) -> dict[str, float]:
    """In this process: start a detector on the copy at `directory`, time three full passes."""
    engine = open_engine(f"sqlite:///{directory / 'state.db'}", busy_timeout_seconds=5, readonly=False)
    connection = engine.connect()
    store = sqlite_store(directory / "monitor.db", busy_timeout_seconds=5)
    ledger = Ledger(store)
    detector = Detector(
        ledger=ledger,
        publish=lambda *args, **kwargs: 0,
        flush=lambda: None,
        handoff=lambda *args: None,  # type: ignore[arg-type]
        settle_seconds=0,
        stall_after_seconds=3600,
        connection=lambda: connection,
        tables=build_tables(built_in("reference"), "archival_log"),
    )
    started = time.perf_counter()
    detector.start()
    start_seconds = time.perf_counter() - started
    passes = []
    for n in range(3):
        began = time.perf_counter()
        detector.run_reconcile_iteration(now=datetime.now(UTC), mono=float(n))
        passes.append(time.perf_counter() - began)
    connection.close()
    store.dispose()
    return {
        "start_s": start_seconds,
        "reconcile_s": statistics.median(passes),
        "rss_mb": peak_rss_mb(),
    }


IDLE_TICKS = 2  # the process used less than this much CPU (10 ms ticks) in a second: its start-up is over
READY_TIMEOUT_SECONDS = 600.0
AT = ("ready", "settled", "idle")  # the readings: at READY, settled, after --idle
RATIOS = (("start-up", "ready_s"), ("idle RSS", "idle_rss"), ("peak", "idle_peak"))


def mib(kib_line: str) -> float:
    return int(kib_line.split()[0]) / 1024


def memory(pid: int) -> dict[str, float]:
    """VmRSS, RssAnon and VmHWM of `pid`, in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss": mib(fields["VmRSS"]), "anon": mib(fields["RssAnon"]), "peak": mib(fields["VmHWM"])}


def wait_ready(notify: socket.socket, process: subprocess.Popen[bytes]) -> None:
    """Until the daemon sends READY=1 on the notify socket, as systemd would wait for it."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if b"READY=1" in notify.recv(4096).split(b"\n"):
                return
        except TimeoutError:
            continue
    raise RuntimeError(f"the daemon did not get ready (exit {process.poll()})")


def wait_idle(pid: int) -> None:
    """Until the process used under IDLE_TICKS of CPU in a second: its start-up reconciliation is done."""
    before = process_sample(pid)
    while before is not None:
        time.sleep(1.0)
        after = process_sample(pid)
        if after is None or after.cpu_ticks - before.cpu_ticks < IDLE_TICKS:
            return
        before = after


def start_daemon(cached: Path, scratch: Path, idle_seconds: float) -> dict[str, float]:
    """One start of the real daemon on a fresh copy of `cached`: start-up time and RSS along its first minute."""
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(cached, scratch / "workspace")
    workspace = scratch / "workspace"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify, (scratch / "daemon.err").open("wb") as err:
        notify.bind(str(scratch / "notify.sock"))
        notify.settimeout(0.2)
        command = [PYTHON, "-m", "orchestrator_monitor.cli", "daemon", "--workspace", str(workspace)]
        command += ["--set", f"dashboard.port={free_port()}"]
        env = clean_environment(NOTIFY_SOCKET=str(scratch / "notify.sock"))
        began = time.monotonic()
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env)
        try:
            wait_ready(notify, process)
            result = {"ready_s": time.monotonic() - began}
            result.update({f"ready_{k}": v for k, v in memory(process.pid).items()})
            wait_idle(process.pid)
            result["settled_s"] = time.monotonic() - began
            result.update({f"settled_{k}": v for k, v in memory(process.pid).items()})
            time.sleep(max(0.0, began + result["ready_s"] + idle_seconds - time.monotonic()))
            result.update({f"idle_{k}": v for k, v in memory(process.pid).items()})
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    shutil.rmtree(scratch)
    return result


def measure_daemons(args: argparse.Namespace) -> None:
    """The --daemon table: each size's medians over --starts, beside the smallest size's."""
    print(f"python {sys.version.split()[0]}; medians of {args.starts} starts; RSS / RssAnon in MiB")
    print(
        f"{'runs':>10} {'tasks':>9} {'start-up':>9} {'settled':>8} {'at READY':>11} {'settled':>11} "
        f"{f'{args.idle:.0f} s idle':>11} {'peak':>6}"
    )
    baseline: dict[str, float] | None = None
    for runs in sorted(args.sizes):
        tasks = TASKS_BY_SIZE.get(runs, 2)
        cached = args.workdir / "daemon" / f"{runs}x{tasks}"
        build_workspace(cached, runs, tasks)
        starts = [start_daemon(cached, args.workdir / "scratch", args.idle) for _ in range(args.starts)]
        result = {key: statistics.median(start[key] for start in starts) for key in starts[0]}
        baseline = baseline or result
        readings = " ".join(f"{result[f'{at}_rss']:>5.0f} / {result[f'{at}_anon']:<3.0f}" for at in AT)
        ratios = ", ".join(f"{name} x{result[key] / baseline[key]:.2f}" for name, key in RATIOS)
        print(
            f"{runs:>10,} {runs * tasks:>9,} {result['ready_s']:>7.2f} s {result['settled_s']:>6.1f} s {readings} "
            f"{result['idle_peak']:>6.0f}   (the smallest's {ratios})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", help="runs of history (default 10k 100k; --daemon: 0 10k 100k)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/orchestrator-bench/history"))
    parser.add_argument("--daemon", action="store_true", help="measure the real `orchestrator daemon` process")
    parser.add_argument("--starts", type=int, default=3, help="--daemon: starts per size (medians)")
    parser.add_argument("--idle", type=float, default=60.0, help="--daemon: seconds after READY of the last reading")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return 0
    if args.daemon:
        args.sizes = args.sizes or [0, 10_000, 100_000]
        measure_daemons(args)
        return 0
    args.sizes = args.sizes or [10_000, 100_000]
    configured = CompletionSettings().reconcile_seconds
    rule = f"max({configured:.0f} s, {RECONCILE_COST_FACTOR:.0f} x its duration)"
    print(f"python {sys.version.split()[0]}; the full pass's period = {rule}")
    columns = ("runs", "tasks", "detector start", "full pass", "peak RSS", "period", "core share")
    print(" ".join(f"{name:>{width}}" for name, width in zip(columns, (10, 9, 15, 10, 9, 8, 11), strict=True)))
    baseline = None
    for runs in sorted(args.sizes):
        tasks = TASKS_BY_SIZE.get(runs, 2)
        directory = args.workdir / f"{runs}x{tasks}"
        build(directory, runs, tasks)
        child = subprocess.run(
            [sys.executable, __file__, "--measure", str(directory)], capture_output=True, text=True, check=True
        )
        result = json.loads(child.stdout)
        period = max(configured, RECONCILE_COST_FACTOR * result["reconcile_s"])
        share = 100 * result["reconcile_s"] / period
        baseline = baseline or result
        print(
            f"{runs:>10,} {runs * tasks:>9,} {result['start_s']:>13.2f} s {result['reconcile_s']:>8.2f} s "
            f"{result['rss_mb']:>6.0f} MB {period:>6.0f} s {share:>9.1f} %   (the smallest's pass "
            f"x{result['reconcile_s'] / baseline['reconcile_s']:.0f}, RSS x{result['rss_mb'] / baseline['rss_mb']:.1f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
