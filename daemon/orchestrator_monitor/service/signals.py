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

HANDLED = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_on_signals(stop: threading.Event, reload: threading.Event | None = None) -> Iterator[None]:
    """Act on SIGTERM, SIGINT and SIGHUP as soon as they come, whichever thread the kernel hands them to.

    Python runs a handler in the main thread, between two of its bytecodes. A handler that set the
    stop event could run while the main thread held that very event's lock (the main loop waits on
    it, taking the lock again every tick) and wait for it forever: a daemon of CI's was still alive
    40 minutes after its SIGTERM, its main thread in `Event.set` under the signal check. And a
    signal taken by another thread waited for the main loop's next tick (one stop in eight of an
    idle daemon took 1.07 s instead of 0.06 s). So the handlers do nothing themselves; the C-level
    handler writes each signal's number to a pipe (`signal.set_wakeup_fd`, as asyncio's loop does)
    and a thread reading it sets the flags at once.
    """
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # the wakeup fd must never block a signal handler

    def act(signum: int) -> None:
        if signum == signal.SIGHUP:
            if reload is not None:
                reload.set()
        elif signum in HANDLED:
            if signum == signal.SIGINT and stop.is_set():
                os._exit(130)
            stop.set()

    def read() -> None:
        while chunk := os.read(read_end, 64):  # b"" once the write end is closed on the way out
            for signum in chunk:
                act(signum)

    reader = threading.Thread(target=read, name="signals", daemon=True)
    reader.start()
    previous = {signum: signal.signal(signum, lambda signum, frame: None) for signum in (*HANDLED, signal.SIGHUP)}
    previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        os.close(write_end)
        reader.join()
        os.close(read_end)


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
