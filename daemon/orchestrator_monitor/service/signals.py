"""Signal handling for the foreground daemon: handlers only set flags.

SIGTERM and SIGINT set the stop event; a second SIGINT forces the exit (an operator who
presses Ctrl-C twice means it). SIGHUP sets the reload flag, which the daemon's main loop
acts on (never the handler itself). SIGCONT asks the detection loop for a full comparison.
The previous handlers are put back on the way out.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

HANDLED = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_on_signals(stop: threading.Event, reload: threading.Event | None = None) -> Iterator[None]:
    def handle_exit(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and stop.is_set():
            os._exit(130)
        stop.set()

    def handle_hup(signum: int, frame: FrameType | None) -> None:
        if reload is not None:
            reload.set()

    previous = {signum: signal.signal(signum, handle_exit) for signum in HANDLED}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, handle_hup)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def on_continue(resumed: Callable[[], None]) -> Iterator[None]:
    """SIGCONT (after SIGSTOP, `kill -STOP`, a debugger): call `resumed`, which only sets a flag.

    What came and went while the process was stopped (a retry after a mark) left nothing for the
    cheap pass to see; the flag makes the detection loop compare everything. Only the main thread
    may install a handler: elsewhere (a daemon run in a test's thread) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGCONT, lambda signum, frame: resumed())
    try:
        yield
    finally:
        signal.signal(signal.SIGCONT, previous)
