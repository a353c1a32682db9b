"""`orchestrator demo`: a workspace where runs start and finish, to see the monitor at work.

The simulated executor writes the database and run directories; beside it the monitor's
status view shows what the monitor reads. Run ids carry the start time, so a workspace can
be reused by several demos.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.live import Live

from .config import Settings
from .reader import read_status, state_reader
from .render import plain_run_line, status_table, write_plain
from .simulator import SimulatedExecutor
from .state.engine import STATE_DB
from .timefmt import utc_now
from .views import StatusView
from .workspace import init_workspace

TICKS_BETWEEN_RUNS = 4
CANCELLED_RUN_INDEX = 3  # one run is given up by the executor itself, as real ones sometimes are


def run_demo(
    settings: Settings,
    *,
    runs: int,
    tick_seconds: float,
    seed: int | None,
    console: Console,
    stop: threading.Event,
) -> StatusView:
    """Drive `runs` simulated runs to their end (or until `stop`); return the last status view."""
    init_workspace(settings)
    executor = SimulatedExecutor(settings.resolve(STATE_DB), settings.workspace, random.Random(seed))
    prefix = f"demo-{utc_now():%Y%m%dT%H%M%S}"
    created = 0
    tick = 0
    with state_reader(settings) as (engine, name):

        def snapshot() -> StatusView:
            view = read_status(engine, name, utc_now())
            return StatusView(runs=[line for line in view.runs if line.run_id.startswith(prefix)], warnings=[])

        show = _live_view(console) if console.is_terminal else _plain_view(console)
        with show as update:
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
            update(final)
    return final


@contextmanager
def _live_view(console: Console) -> Iterator[Callable[[StatusView], None]]:
    """A rich Live table redrawn on every update."""
    with Live(console=console, auto_refresh=False) as live:
        yield lambda view: live.update(status_table(view), refresh=True)


@contextmanager
def _plain_view(console: Console) -> Iterator[Callable[[StatusView], None]]:
    """When piped: one line per run whenever its status or progress changes."""
    last: dict[str, tuple[str, int]] = {}
    started = time.monotonic()

    def update(view: StatusView) -> None:
        for line in view.runs:
            key = (line.status, line.tasks_terminal)
            if last.get(line.run_id) != key:
                last[line.run_id] = key
                elapsed = time.monotonic() - started
                write_plain(console, f"{elapsed:6.1f}s\t{plain_run_line(line)}")

    yield update
