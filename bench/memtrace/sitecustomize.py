"""Imported by a Python started with this folder on PYTHONPATH: tracemalloc snapshots every few minutes.

bench/soak.py `--tracemalloc` starts the daemon so, to find which lines hold memory that grows:
MEMTRACE_DIR is where `snap-<seconds>.trace` files go (`tracemalloc.Snapshot.dump`),
MEMTRACE_EVERY the seconds between them, MEMTRACE_FRAMES the frames kept per allocation.
"""

import os
import threading
import time
import tracemalloc


def _dump_every(folder: str, every: float) -> None:
    started = time.monotonic()
    while True:
        time.sleep(every)
        snapshot = tracemalloc.take_snapshot()
        elapsed = int(time.monotonic() - started)
        snapshot.dump(os.path.join(folder, f"snap-{elapsed:06d}.trace"))


if os.environ.get("MEMTRACE_DIR"):
    tracemalloc.start(int(os.environ.get("MEMTRACE_FRAMES", "8")))
    threading.Thread(
        target=_dump_every,
        args=(os.environ["MEMTRACE_DIR"], float(os.environ.get("MEMTRACE_EVERY", "300"))),
        name="memtrace",
        daemon=True,
    ).start()
