"""Imported by a Python started with this folder on PYTHONPATH: where the daemon's memory goes, over time.

bench/soak.py `--memory-detail` and `--tracemalloc` start the daemon so. MEMTRACE_DIR is where the
files go: `memory.csv`, every MEMTRACE_SAMPLE seconds (default 10), the process's RssAnon, SQLite's own
heap (`sqlite3_memory_used`: page caches, prepared statements; tracemalloc never sees it), the
blocks Python has allocated (`sys.getallocatedblocks`), and glibc's malloc: bytes in use, free
but held (fragmentation), mmapped (`mallinfo2`); with MEMTRACE_EVERY, also
`snap-<seconds>.trace` files (`tracemalloc.Snapshot.dump`) that often, MEMTRACE_FRAMES frames kept
per allocation.
"""

import ctypes
import ctypes.util
import os
import sys
import threading
import time
import tracemalloc


def _sqlite_memory_used():
    """SQLite's `sqlite3_memory_used`, from the library the interpreter's sqlite3 module loads."""
    try:
        library = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
    except OSError:
        return lambda: -1
    library.sqlite3_memory_used.restype = ctypes.c_int64
    return library.sqlite3_memory_used


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def _malloc_info():
    """glibc's `mallinfo2` (2.33+): bytes in use, free but held, and mmapped; None elsewhere."""
    try:
        call = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return lambda: None
    call.restype = _Mallinfo2
    return call


def _rss_anon():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return -1


def _sample_every(folder, every):
    sqlite_used, mallinfo = _sqlite_memory_used(), _malloc_info()
    started = time.monotonic()
    with open(os.path.join(folder, "memory.csv"), "w") as out:
        out.write(
            "elapsed_s,rss_anon_bytes,sqlite_bytes,python_blocks,malloc_used_bytes,malloc_free_bytes,malloc_mmap_bytes\n"
        )
        while True:
            time.sleep(every)
            info = mallinfo()
            heap = (info.uordblks, info.fordblks, info.hblkhd) if info is not None else (-1, -1, -1)
            row = (round(time.monotonic() - started, 1), _rss_anon(), sqlite_used(), sys.getallocatedblocks(), *heap)
            out.write(",".join(map(str, row)) + "\n")
            out.flush()


def _dump_every(folder, every):
    started = time.monotonic()
    while True:
        time.sleep(every)
        snapshot = tracemalloc.take_snapshot()
        elapsed = int(time.monotonic() - started)
        snapshot.dump(os.path.join(folder, f"snap-{elapsed:06d}.trace"))


if os.environ.get("MEMTRACE_DIR"):
    _folder = os.environ["MEMTRACE_DIR"]
    threading.Thread(
        target=_sample_every,
        args=(_folder, float(os.environ.get("MEMTRACE_SAMPLE", "10"))),
        name="memsample",
        daemon=True,
    ).start()
    if os.environ.get("MEMTRACE_EVERY"):
        tracemalloc.start(int(os.environ.get("MEMTRACE_FRAMES", "8")))
        threading.Thread(
            target=_dump_every, args=(_folder, float(os.environ["MEMTRACE_EVERY"])), name="memtrace", daemon=True
        ).start()
