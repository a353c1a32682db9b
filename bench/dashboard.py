"""Benchmark of the web dashboard on 10,000 runs / 1,000,000 tasks (issues #7 and #15).

Goals: every request a page makes (`/`, `/runs/<id>`, `/api/runs`, `/api/runs/<id>`, its
timeline and events, and the same for a run of 1,000 tasks) p99 under 100 ms with a concurrent
client; with 200
Server-Sent-Events clients connected while runs finish, the detection latency (commit ->
`RUN_COMPLETED` line, measured as `bench/detect.py` does, with its writer and follower)
at most 2x its p99 without them.

What it does, on the workspace `bench/detect.py` builds and caches (`demo/simulator.py` `bulk_populate`):

1. API: starts `orchestrator daemon` (the dashboard on a free port) on a fresh copy and,
   from two threads at once, requests `/api/runs` (random page, sort and status filter)
   and `/api/runs/<random id>` (random task sort and filter) over keep-alive connections;
   latency is request to full body, per endpoint.
2. SSE: daemon lifetimes alternating without and with 200 `/events` clients (asyncio
   streams in a thread of this process) and a console open (a real `orchestrator console`
   in a tmux session of 80x24, following the same log and database; `--no-console` leaves
   it out); in each, the writer finishes `--samples` runs one at a time and the follower
   times each `RUN_COMPLETED`; the SSE clients must each receive every one of those events,
   and the console must still be up, showing its runs list, at the end.

The machine is shared and noisy (2 cores, and the SSE clients run on them too), so read
percentiles and ratios, not single figures. Usage:

    .venv/bin/python bench/dashboard.py            # full size (the workspace is cached)
    .venv/bin/python bench/dashboard.py --quick    # small, a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shlex
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import detect

REFERENCE = detect.SCHEMA_INFO["reference"]
BIG_RUN = "big-1000"  # a run of 1,000 tasks (the run page), a tenth failed, some retried
BIG_TASKS = 1000
GOAL_API_P99_MS = 100.0
GOAL_DETECTION_RATIO = 2.0
SSE_CONNECT_TIMEOUT = 60.0
CONSOLE_START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_daemon(workspace: Path, port: int, follower: detect.LogFollower) -> detect.Measured:
    sets = ["events.sinks=", f"dashboard.port={port}", "archive.quiet_seconds=3600"]  # archival is not measured
    argv = [*detect.orchestrator_command(), "daemon", "--workspace", str(workspace)]
    argv += [item for name in sets for item in ("--set", name)]
    process = detect.Measured("daemon", argv, workspace)
    follower.wait(lambda: "MONITOR_STARTED" in follower.first or not process.alive(), detect.START_TIMEOUT, "start")
    if not process.alive():
        raise detect.BenchError(f"daemon exited: {process.output_tail()}")
    return process


def settle(workspace: Path, follower: detect.LogFollower, sentinel: detect.OpenRun) -> None:
    """Finish one run and wait for it: the daemon's first reconciliation is over."""
    spec = {"mode": "single", "gap_seconds": [0, 0], "seed": 0}
    detect.run_writer(workspace / detect.STATE_DB, [sentinel], workspace, spec, REFERENCE)
    follower.wait(lambda: sentinel.run_id in follower.completed, detect.START_TIMEOUT, "the sentinel run")
    follower.wait_quiet(1.0, 30.0)


def hammer(url: str, make_request: Callable[[random.Random], tuple[str, dict[str, str]]], count: int, seed: int):  # type: ignore[no-untyped-def]
    """`count` requests in a row on one keep-alive connection; their latencies in seconds."""
    rng = random.Random(seed)
    latencies: list[float] = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(count):
            path, params = make_request(rng)
            started = time.perf_counter()
            response = client.get(path, params=params)
            response.read()
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise detect.BenchError(f"{path} {params}: {response.status_code} {response.text[:200]}")
    return latencies


def runs_request(rng: random.Random, runs: int, sorts: Sequence[str]) -> tuple[str, dict[str, str]]:
    params = {"limit": "50", "offset": str(rng.randrange(0, max(1, runs - 50))), "sort": rng.choice(sorts)}
    if rng.random() < 0.3:
        params = {"status": rng.choice(["COMPLETED", "RUNNING", "FAILED", "PARTIAL"]), "limit": "50"}
    return "/api/runs", params


def run_request(rng: random.Random, runs: int) -> tuple[str, dict[str, str]]:
    params = {"sort": rng.choice(["task_id", "attempts", "started_at", "status"]), "limit": "100"}
    if rng.random() < 0.3:
        params["status"] = "FAILED"
    return f"/api/runs/run-{rng.randrange(runs):06d}", params


def add_big_run(database: Path) -> None:
    """`BIG_RUN`: 1,000 tasks over ten workstreams, one second apart, every tenth FAILED after 2 attempts."""
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(
            "INSERT INTO runs (run_id, name, status, created_at, started_at, finished_at) VALUES "
            "(?, 'big run', 'PARTIAL', '2026-11-24T10:00:00Z', '2026-11-24T10:00:00Z', '2026-11-24T11:00:00Z')",
            (BIG_RUN,),
        )
        connection.executemany(
            "INSERT INTO workstreams (workstream_id, run_id, name, status) VALUES (?, ?, ?, 'PARTIAL')",
            [(f"{BIG_RUN}.w{w}", BIG_RUN, f"workstream {w}") for w in range(10)],
        )
        connection.executemany(
            "INSERT INTO tasks (task_id, run_id, workstream_id, tool, status, attempts, error_type, error_message, "
            "started_at, finished_at) VALUES (?, ?, ?, 'test', ?, ?, ?, ?, ?, ?)",
            [
                (
                    f"{BIG_RUN}.t{t:04d}", BIG_RUN, f"{BIG_RUN}.w{t % 10}",
                    "FAILED" if t % 10 == 0 else "SUCCEEDED", 2 if t % 10 == 0 else 1,
                    "exit_code" if t % 10 == 0 else None, "tests failed" if t % 10 == 0 else None,
                    f"2026-11-24T10:{t // 60 % 60:02d}:{t % 60:02d}Z",
                    f"2026-11-24T10:{t // 60 % 60:02d}:{t % 60:02d}.5Z",
                )
                for t in range(BIG_TASKS)
            ],
        )  # fmt: skip
        connection.execute("COMMIT")
    finally:
        connection.close()


def random_run(rng: random.Random, runs: int) -> str:
    return f"run-{rng.randrange(runs):06d}"


def endpoint_pairs(
    runs: int, sorts: Sequence[str]
) -> list[dict[str, Callable[[random.Random], tuple[str, dict[str, str]]]]]:
    """The endpoints, two at a time (two clients at once): what the index and a run page request."""
    return [
        {
            "/api/runs": lambda rng: runs_request(rng, runs, sorts),
            "/api/runs/<id>": lambda rng: run_request(rng, runs),
        },
        {
            "/ (page)": lambda rng: ("/", {}),
            "/runs/<id> (page)": lambda rng: (f"/runs/{random_run(rng, runs)}", {}),
        },
        {
            "/runs/<id>/timeline.svg": lambda rng: (f"/runs/{random_run(rng, runs)}/timeline.svg", {}),
            "/api/runs/<id>/events": lambda rng: (f"/api/runs/{random_run(rng, runs)}/events", {}),
        },
        {
            "/api/runs/<1000 tasks>": lambda rng: (f"/api/runs/{BIG_RUN}", {"limit": "100"}),
            "/runs/<1000 tasks>/timeline.svg": lambda rng: (f"/runs/{BIG_RUN}/timeline.svg", {}),
        },
    ]


def measure_api(
    template: Path, open_runs: list[detect.OpenRun], scratch: Path, runs: int, count: int
) -> dict[str, list[float]]:
    """Each pair of endpoints from two threads at once; an endpoint this version does not serve is left out."""
    workspace = detect.fresh_copy(template, scratch / "api", open_runs, run_dirs=False, schema=REFERENCE)
    add_big_run(workspace / detect.STATE_DB)
    port = free_port()
    with detect.LogFollower(workspace / detect.MONITOR_LOG) as follower:
        process = start_daemon(workspace, port, follower)
        try:
            settle(workspace, follower, open_runs[0])
            url = f"http://127.0.0.1:{port}"
            results: dict[str, list[float]] = {}
            with httpx.Client(base_url=url, timeout=30) as probe:
                sorts = ["created_at", "run_id", "status"]
                if probe.get("/api/runs", params={"sort": "attention"}).status_code == 200:  # since #15
                    sorts.append("attention")
                hammer(url, lambda rng: runs_request(rng, runs, sorts), 20, 0)  # warm the page cache and the pool
                for pair in endpoint_pairs(runs, sorts):
                    served = {
                        name: make for name, make in pair.items()
                        if probe.get(*make(random.Random(0))[:1]).status_code != 404
                    }  # fmt: skip
                    threads = [
                        threading.Thread(
                            target=lambda n=name, m=make, k=seed: results.__setitem__(n, hammer(url, m, count, k))
                        )
                        for seed, (name, make) in enumerate(served.items(), 1)
                    ]
                    for thread in threads:
                        thread.start()
                    for thread in threads:
                        thread.join()
        finally:
            process.stop()
    shutil.rmtree(workspace, ignore_errors=True)
    return results


class SseClients:
    """`count` `/events` streams in one asyncio thread, each counting the RUN_COMPLETED events it receives."""

    def __init__(self, url: str, count: int) -> None:
        self.url = url
        self.count = count
        self.connected = 0
        self.completed: list[set[str]] = [set() for _ in range(count)]
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._main(),), daemon=True)

    def __enter__(self) -> SseClients:
        self._thread.start()
        give_up = time.monotonic() + SSE_CONNECT_TIMEOUT
        while self.connected < self.count:
            if time.monotonic() > give_up:
                raise detect.BenchError(f"only {self.connected} of {self.count} SSE clients connected")
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        limits = httpx.Limits(max_connections=self.count + 10)
        async with httpx.AsyncClient(base_url=self.url, timeout=None, limits=limits) as client:
            tasks = [asyncio.create_task(self._client(client, n)) for n in range(self.count)]
            await self._stop.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _client(self, client: httpx.AsyncClient, n: int) -> None:
        async with client.stream("GET", "/events") as response:
            self.connected += 1
            async for line in response.aiter_lines():
                if line.startswith("data:") and '"RUN_COMPLETED"' in line:
                    self.completed[n].add(line.split('"run_id":"', 1)[1].split('"', 1)[0])


class ConsoleSession:
    """`orchestrator console` on the workspace in a detached tmux session of 80x24, for as long as the block."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.name = f"bench-console-{time.monotonic_ns()}"

    def screen(self) -> str:
        out = subprocess.run(["tmux", "capture-pane", "-t", self.name, "-p"], capture_output=True, text=True)
        return out.stdout if out.returncode == 0 else ""

    def __enter__(self) -> ConsoleSession:
        if shutil.which("tmux") is None:
            raise detect.BenchError("the console runs in tmux, which is not installed (or pass --no-console)")
        command = shlex.join([*detect.orchestrator_command(), "console", "--workspace", str(self.workspace)])
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", "80", "-y", "24", command], check=True)
        give_up = time.monotonic() + CONSOLE_START_TIMEOUT
        while "quit" not in self.screen():
            if time.monotonic() > give_up:
                self.__exit__()
                raise detect.BenchError(f"the console did not start: {self.screen()!r}")
            time.sleep(0.1)
        return self

    def check(self) -> str:
        """A note that the console is still up and drawing its runs list (or what it shows instead)."""
        screen = self.screen()
        if "Traceback" in screen or "run " not in screen or "quit" not in screen:
            raise detect.BenchError(f"the console is not showing its runs list: {screen!r}")
        return "a console open (tmux 80x24) still showing its runs list"

    def __exit__(self, *_: object) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], check=False, capture_output=True)


def measure_detection(
    template: Path,
    open_runs: list[detect.OpenRun],
    scratch: Path,
    label: str,
    chosen: list[detect.OpenRun],
    clients: int,
    gap: tuple[float, float],
    console: bool,
) -> tuple[list[float], str]:
    workspace = detect.fresh_copy(template, scratch / label, open_runs, run_dirs=False, schema=REFERENCE)
    port = free_port()
    note = ""
    with detect.LogFollower(workspace / detect.MONITOR_LOG) as follower:
        process = start_daemon(workspace, port, follower)
        try:
            settle(workspace, follower, chosen[0])
            singles = chosen[1:]
            spec = {"mode": "single", "gap_seconds": list(gap), "seed": 7}
            if clients:
                session = ConsoleSession(workspace) if console else nullcontext()
                with session, SseClients(f"http://127.0.0.1:{port}", clients) as sse:
                    commits = detect.run_writer(workspace / detect.STATE_DB, singles, workspace, spec, REFERENCE)
                    done = {run_id for run_id, _, _ in commits}
                    follower.wait(lambda: done <= follower.completed.keys(), detect.SETTLE_TIMEOUT, "every run")
                    give_up = time.monotonic() + 10
                    while any(not done <= seen for seen in sse.completed) and time.monotonic() < give_up:
                        time.sleep(0.05)
                    complete = sum(done <= seen for seen in sse.completed)
                    note = f"{complete}/{clients} SSE clients received all {len(done)} RUN_COMPLETED events"
                    if isinstance(session, ConsoleSession):
                        note += f"; {session.check()}"
            else:
                commits = detect.run_writer(workspace / detect.STATE_DB, singles, workspace, spec, REFERENCE)
                done = {run_id for run_id, _, _ in commits}
                follower.wait(lambda: done <= follower.completed.keys(), detect.SETTLE_TIMEOUT, "every run")
            latencies = [follower.completed[run_id] - moment for run_id, moment, _ in commits]
        finally:
            process.stop()
    shutil.rmtree(workspace, ignore_errors=True)
    return latencies, note


def row(label: str, values: Sequence[float]) -> str:
    q = detect.percentiles(values)
    cells = " ".join(f"{q[name] * 1000:9.1f}" for name in ("p50", "p90", "p99", "max"))
    return f"{label:<34} {len(values):>6} {cells}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="500 runs x 20 tasks, fewer samples")
    parser.add_argument("--requests", type=int, default=1000, help="requests per endpoint (default 1000)")
    parser.add_argument("--samples", type=int, default=100, help="runs finished per lifetime (default 100)")
    parser.add_argument("--rounds", type=int, default=2, help="lifetimes with and without SSE clients each (default 2)")
    parser.add_argument("--clients", type=int, default=200, help="SSE clients (default 200)")
    parser.add_argument("--no-console", dest="console", action="store_false", help="no console beside the clients")
    parser.add_argument("--detection-only", action="store_true", help="leave out the API part")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "orchestrator-bench")
    args = parser.parse_args(argv)
    runs, tasks, opened = (500, 20, 150) if args.quick else (10_000, 100, 1500)
    requests, samples = (200, 20) if args.quick else (args.requests, args.samples)
    template = detect.prepare_workspace(args.workdir.absolute(), REFERENCE, runs, tasks, opened, rebuild=False)
    open_runs = detect.read_open_runs(template / detect.STATE_DB, REFERENCE)
    scratch = Path(tempfile.mkdtemp(prefix="dashboard-", dir=args.workdir))
    rng = random.Random(3)
    pool = rng.sample(open_runs[1:], 2 * args.rounds * (samples + 1))
    try:
        api: dict[str, list[float]] = {}
        if not args.detection_only:
            print(f"API: {runs} runs x {tasks} tasks (and one of {BIG_TASKS}), {requests} requests per endpoint, two "
                  "at once")  # fmt: skip
            api = measure_api(template, open_runs, scratch, runs, requests)
            print(f"{'ms':<34} {'n':>6} {'p50':>9} {'p90':>9} {'p99':>9} {'max':>9}")
            for name, values in api.items():
                print(row(name, values))
        latencies: dict[str, list[float]] = {"none": [], "sse": []}
        order = ["none", "sse", "sse", "none"] * args.rounds
        for n, kind in enumerate(order[: 2 * args.rounds]):
            chosen = pool[n * (samples + 1) : (n + 1) * (samples + 1)]
            values, note = measure_detection(
                template,
                open_runs,
                scratch,
                f"{kind}-{n}",
                chosen,
                args.clients if kind == "sse" else 0,
                (0.05, 0.15),
                args.console,
            )
            latencies[kind].extend(values)
            print(f"lifetime {n} ({kind}): {len(values)} runs finished. {note}", flush=True)
        print("detection latency (commit -> RUN_COMPLETED line), ms")
        print(row("without SSE clients", latencies["none"]))
        beside = " and a console" if args.console else ""
        print(row(f"with {args.clients} SSE clients{beside}", latencies["sse"]))
        api_p99 = {name: detect.percentiles(values)["p99"] * 1000 for name, values in api.items()}
        ratio = detect.percentiles(latencies["sse"])["p99"] / detect.percentiles(latencies["none"])["p99"]
        print("goals:")
        for name, p99 in api_p99.items():
            print(
                f"  {name} p99 {p99:.1f} ms < {GOAL_API_P99_MS:.0f} ms: {'met' if p99 < GOAL_API_P99_MS else 'NOT met'}"
            )
        print(
            f"  detection p99 with/without SSE clients{beside} {ratio:.2f}x <= {GOAL_DETECTION_RATIO:.0f}x: "
            + ("met" if ratio <= GOAL_DETECTION_RATIO else "NOT met")
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
