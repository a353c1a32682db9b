"""Publishes events until SIGTERM, printing each accepted seq; then closes the bus (tests/events/test_bus.py)."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from orchestrator_monitor.config import load_settings
from orchestrator_monitor.events.publishing import open_bus
from orchestrator_monitor.events.types import EventType


def main() -> int:
    stop = threading.Event()

    def handle_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle_term)
    settings = load_settings(Path(sys.argv[1]), environ={}, overrides=["events.sinks=", "events.queue_size=50000"])
    with open_bus(settings) as bus:
        while not stop.is_set():
            seq = bus.publish(EventType.RUN_STATUS_CHANGED, {"from": "RUNNING", "to": "RUNNING"}, run_id="run-9")
            sys.stdout.write(f"{seq}\n")
            if seq % 100 == 0:
                sys.stdout.flush()
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
