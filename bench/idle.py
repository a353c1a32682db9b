"""The daemon idle on a big workspace: CPU share, RSS at start and end, start-up to READY=1.

Goals (issue #6): CPU at most 0.5% of a core, RSS flat and under 100 MB, READY in under 1 s.

It builds (once, cached under --workdir) a workspace of --runs runs with `bulk_populate`,
starts `orchestrator daemon` with a stand-in NOTIFY_SOCKET (as systemd would give it), times
READY=1 from the exec, then lets it sit with nothing happening for --seconds (300 for the
issue's figure; the default is shorter for a quick run) and reads utime+stime and VmRSS /
VmHWM from /proc, as bench/detect.py does. Health checks, the web server, the watchdog
pings (WATCHDOG_USEC set) and the detection poll all run as in production.

    .venv/bin/python bench/idle.py --seconds 300
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orchestrator_monitor.config import STATE_DB
from orchestrator_monitor.demo.simulator import bulk_populate

GOAL_CPU_PERCENT = 0.5
GOAL_RSS_MB = 100.0
GOAL_READY_SECONDS = 1.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def proc_memory_mb(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM (peak RSS so far), MB."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def prepare_workspace(workdir: Path, runs: int, tasks_per_run: int) -> Path:
    workspace = workdir / f"idle-{runs}x{tasks_per_run}"
    marker = workspace / ".bench-ready"
    if marker.is_file():
        return workspace
    shutil.rmtree(workspace, ignore_errors=True)
    orchestrator = [sys.executable, "-m", "orchestrator_monitor.cli"]
    subprocess.run([*orchestrator, "init", "--workspace", str(workspace)], check=True, capture_output=True)
    started = time.perf_counter()
    bulk_populate(workspace / STATE_DB, runs=runs, tasks_per_run=tasks_per_run)
    print(f"workspace built in {time.perf_counter() - started:.1f} s: {runs} runs x {tasks_per_run} tasks")
    marker.touch()
    return workspace


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="idle time measured (the issue's figure: 300)")
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--tasks-per-run", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "orchestrator-bench")
    args = parser.parse_args()
    workspace = prepare_workspace(args.workdir, args.runs, args.tasks_per_run)
    shutil.rmtree(workspace / ".monitor", ignore_errors=True)  # a first start (baseline) each time
    notify_path = args.workdir / f"notify-{os.getpid()}.sock"
    notify_path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.settimeout(30)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(NOTIFY_SOCKET=str(notify_path), WATCHDOG_USEC="30000000")
    command = [sys.executable, "-m", "orchestrator_monitor.cli", "daemon", "--workspace", str(workspace)]
    started = time.perf_counter()
    daemon = subprocess.Popen([*command, "--set", "events.sinks="], env=env, stderr=subprocess.PIPE)
    try:
        while b"READY=1" not in sock.recv(4096):
            pass
        ready = time.perf_counter() - started
        time.sleep(2.0)  # let the start-up reconciliation and the first checks finish before measuring idle
        cpu_start, (rss_start, _) = proc_cpu_seconds(daemon.pid), proc_memory_mb(daemon.pid)
        measured = time.perf_counter()
        time.sleep(args.seconds)  # the measurement itself: nothing happens, on purpose
        cpu_end, (rss_end, hwm) = proc_cpu_seconds(daemon.pid), proc_memory_mb(daemon.pid)
        elapsed = time.perf_counter() - measured
    finally:
        daemon.terminate()
        _, err = daemon.communicate(timeout=15)
        sock.close()
        notify_path.unlink(missing_ok=True)
    cpu = 100.0 * (cpu_end - cpu_start) / elapsed
    verdict = {
        "cpu": cpu <= GOAL_CPU_PERCENT,
        "rss": rss_end <= GOAL_RSS_MB and rss_end <= rss_start * 1.05,
        "ready": ready < GOAL_READY_SECONDS,
    }
    print(f"workspace: {args.runs} runs x {args.tasks_per_run} tasks; idle {elapsed:.0f} s; exit {daemon.returncode}")
    print(
        f"start-up to READY=1: {ready:.3f} s (goal < {GOAL_READY_SECONDS} s) {'ok' if verdict['ready'] else 'MISSED'}"
    )
    print(f"CPU: {cpu:.3f}% of a core (goal <= {GOAL_CPU_PERCENT}%) {'ok' if verdict['cpu'] else 'MISSED'}")
    print(
        f"RSS: {rss_start:.1f} MB at start, {rss_end:.1f} MB at end, peak {hwm:.1f} MB "
        f"(goal flat, < {GOAL_RSS_MB:.0f} MB) {'ok' if verdict['rss'] else 'MISSED'}"
    )
    if daemon.returncode != 0:
        print(err.decode(errors="replace")[-2000:])
    return 0 if all(verdict.values()) and daemon.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
