"""`orchestrator demo`: a workspace where runs start and finish, to see the monitor at work.

The simulated executor writes the database and run directories; beside it the monitor
daemon (in a thread) marks the runs it finishes, and a live status table shows both. Run
ids carry the start time, so a workspace can be reused by several demos.
"""

from __future__ import annotations

import math
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from rich.console import Console

from ..config import STATE_DB, Settings
from ..errors import Unavailable
from ..service.daemon import run_daemon
from ..state.setup import init_workspace
from ..timefmt import utc_now
from ..views.reader import read_status, state_reader
from ..views.runs import StatusView
from ..web.front import dashboard_address, web_front
from ..workspace import Workspace
from .simulator import SimulatedExecutor

TICKS_BETWEEN_RUNS = 4
MONITOR_GRACE_SECONDS = 30.0  # how long the demo waits for the monitor to mark, archive and report the last runs
GRACE_POLL_SECONDS = 0.1
CANCELLED_RUN_INDEX = 3  # one run is given up by the executor itself, as real ones sometimes are

Screen = Callable[[Console], AbstractContextManager[Callable[[StatusView], None]]]  # yields: show this view


def run_demo(
    settings: Settings,
    *,
    runs: int,
    tick_seconds: float,
    seed: int | None,
    console: Console,
    screen: Screen,
    stop: threading.Event,
    stay_seconds: float = 0.0,
) -> StatusView:
    """Drive `runs` simulated runs to their end with the monitor beside them; return the last view.

    `screen(console)` shows the runs as they go (the command's table, or lines when piped). The
    monitor and its dashboard stay up `stay_seconds` longer (`math.inf`: until `stop`).
    """
    init_workspace(settings)
    settings = _with_free_port(settings, console)
    executor = SimulatedExecutor(settings.resolve(STATE_DB), settings.workspace, random.Random(seed))
    prefix = f"demo-{utc_now():%Y%m%dT%H%M%S}"
    created = 0
    tick = 0
    # The monitor's events go to logs/monitor.jsonl only: the live table is the demo's screen.
    quiet = settings.model_copy(update={"events": settings.events.model_copy(update={"sinks": []})})
    with _monitor_beside(quiet, console), state_reader(settings) as state:

        def snapshot() -> StatusView:
            view = read_status(state, utc_now())
            return StatusView(runs=[line for line in view.runs if line.run_id.startswith(prefix)], warnings=[])

        with screen(console) as update:
            while not stop.is_set() and (created < runs or executor.active_runs):
                if created < runs and tick % TICKS_BETWEEN_RUNS == 0:
                    executor.create_run(f"{prefix}-{created + 1}", workstreams=3, tasks_per_workstream=4)
                    created += 1
                if created > CANCELLED_RUN_INDEX and tick % TICKS_BETWEEN_RUNS == 2:
                    victim = f"{prefix}-{CANCELLED_RUN_INDEX + 1}"
                    if victim in executor.active_runs:
                        executor.cancel_run(victim)
                executor.step()
                tick += 1
                update(snapshot())
                stop.wait(tick_seconds)
            final = snapshot()
            deadline = time.monotonic() + MONITOR_GRACE_SECONDS
            while not _all_reported(final, settings) and time.monotonic() < deadline:
                if stop.wait(GRACE_POLL_SECONDS):
                    break
                final = snapshot()
            update(final)
        if stay_seconds > 0 and not stop.is_set():
            until = "until Ctrl-C" if math.isinf(stay_seconds) else f"for {stay_seconds:g} s (Ctrl-C stops)"
            console.print(f"the runs are done; the monitor and its dashboard stay up {until}", markup=False)
            stop.wait(None if math.isinf(stay_seconds) else stay_seconds)
    workspace = Workspace.from_settings(settings)
    for line, where in (
        ("events", f"{workspace.logs_dir / 'monitor.jsonl'} (orchestrator events --workspace {workspace.root})"),
        ("archives", f"{workspace.archive_root} (orchestrator verify --workspace {workspace.root} --run ID)"),
        ("reports", f"{workspace.reports_dir}"),
    ):
        console.print(f"{line}: {where}", markup=False, highlight=False)
    return final


def _with_free_port(settings: Settings, console: Console) -> Settings:
    """The settings with a free dashboard port when the configured one is taken (another demo, a daemon): a
    demo should show something rather than exit 3. The daemon itself never does this: its port is its address."""
    dashboard = settings.dashboard
    if not dashboard.enabled or port_free(dashboard.host, dashboard.port):
        return settings
    port = free_port(dashboard.host)
    console.print(f"port {dashboard.port} is taken: the dashboard uses port {port} instead", markup=False)
    return settings.model_copy(update={"dashboard": dashboard.model_copy(update={"port": port})})


def port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _all_reported(view: StatusView, settings: Settings) -> bool:
    """Every run terminal, and every run the monitor finished archived and reported (its summary written)."""
    reports = Workspace.from_settings(settings).reports_dir
    return all(line.terminal and (reports / f"{line.run_id}_summary.json").exists() for line in view.runs)


@contextmanager
def _monitor_beside(settings: Settings, console: Console) -> Iterator[None]:
    """The monitor daemon in a thread of its own, for as long as the demo runs."""
    front = web_front(settings)
    stop, ready = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def monitor() -> None:
        try:
            run_daemon(settings, stop, on_ready=ready.set, front=front)
        except BaseException as exc:  # handed to the demo's thread, which reports it
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=monitor, name="demo-monitor", daemon=True)
    thread.start()
    ready.wait()
    if failure and isinstance(failure[0], Unavailable) and "daemon.lock" in str(failure[0]):
        console.print(f"not starting a monitor: {failure[0]}; the running one marks the runs", markup=False)
    elif failure:
        raise failure[0]
    elif front is not None:
        console.print(f"dashboard: {dashboard_address(settings.dashboard.host, settings.dashboard.port)}", markup=False)
    try:
        yield
    finally:
        stop.set()
        thread.join()
