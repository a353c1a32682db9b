"""SIGTERM and SIGHUP are acted on at once, whichever of the daemon's threads the kernel hands them to."""

from __future__ import annotations

import signal
import threading

from orchestrator_monitor.service.signals import stop_on_signals


def other_thread_takes(signum: int) -> None:
    """Deliver `signum` to a thread that is not the main one, as the kernel may with a process's signal."""
    parked = threading.Event()
    thread = threading.Thread(target=parked.wait)
    thread.start()
    threading.Timer(0.05, signal.pthread_kill, (thread.ident, signum)).start()  # once the main thread waits
    threading.Timer(0.1, parked.set).start()


def test_a_sigterm_another_thread_takes_stops_a_waiting_main_thread() -> None:
    stop, before = threading.Event(), signal.getsignal(signal.SIGTERM)
    with stop_on_signals(stop):
        other_thread_takes(signal.SIGTERM)
        assert stop.wait(10)  # before: set only once the main thread ran again, after its wait
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back


def test_a_sighup_another_thread_takes_asks_for_a_reload_and_does_not_stop() -> None:
    stop, reload = threading.Event(), threading.Event()
    with stop_on_signals(stop, reload):
        other_thread_takes(signal.SIGHUP)
        assert reload.wait(10)
    assert not stop.is_set()
