"""Imported by a Python started with this folder on PYTHONPATH: where the daemon's memory goes, over time.

bench/soak.py `--memory-detail` and `--tracemalloc` start the daemon so. MEMTRACE_DIR is where the
files go: `memory.csv`, every MEMTRACE_SAMPLE seconds (default 10), the process's RssAnon, SQLite's own
heap (`sqlite3_memory_used`: page caches, prepared statements; tracemalloc never sees it), the
blocks Python has allocated (`sys.getallocatedblocks`), glibc's malloc: bytes in use, free
but held (fragmentation), mmapped (`mallinfo2`), pymalloc's arenas and the bytes of its blocks
in use (`_PyObject_DebugMallocStats`), and the resident anonymous memory by where it lies
(/proc/self/smaps): glibc's main heap, its other arenas, thread stacks, everything else
(pymalloc's arenas and glibc's mmapped chunks), and, under jemalloc (LD_PRELOAD), its own counts
(`mallctl`): bytes the program holds, in active pages, resident, and its metadata, and every
MEMTRACE_JEMALLOC seconds (default 300) its whole report as `jemalloc-<seconds>.json` (`malloc_stats_print`:
each size class's regions in use and slabs, which bench/jemalloc_bins.py compares); in `threads.txt`, the
Python threads by name (numbers dropped) each time they change; with MEMTRACE_SLABS=<bytes>, at each
of jemalloc's reports, `slabs-<seconds>.txt`: the Python objects in that size class's sparse slabs
(`_slab_census`); with MEMTRACE_EVERY, also
`snap-<seconds>.trace` files (`tracemalloc.Snapshot.dump`) that often, MEMTRACE_FRAMES frames kept
per allocation.
"""

import collections
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


def _pymalloc_stats(folder):
    """pymalloc's own counts (arenas now, their highwater, bytes in allocated blocks), read from the report
    `_PyObject_DebugMallocStats` writes to a C FILE; (-1, -1, -1) where the interpreter has none."""
    try:
        libc, report = ctypes.CDLL(None), ctypes.pythonapi._PyObject_DebugMallocStats
    except AttributeError:
        return lambda: (-1, -1, -1)
    libc.fopen.restype, libc.fopen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_char_p]
    libc.fclose.argtypes, report.argtypes = [ctypes.c_void_p], [ctypes.c_void_p]
    path = os.path.join(folder, "pymalloc.txt")
    wanted = ("# arenas allocated current", "# arenas highwater mark", "# bytes in allocated blocks")

    def read():
        handle = libc.fopen(path.encode(), b"w")
        report(handle)
        libc.fclose(handle)
        with open(path) as text:
            pairs = (line.partition("=") for line in text)
            found = {k.strip(): int(v.replace(",", "")) for k, _, v in pairs if k.strip() in wanted}
        return tuple(found.get(name, -1) for name in wanted)

    return read


def _mallctl():
    """jemalloc's `mallctl`, or None under another allocator."""
    try:
        mallctl = ctypes.CDLL(None).mallctl
    except AttributeError:
        return None
    mallctl.restype = ctypes.c_int
    mallctl.argtypes = [
        ctypes.c_char_p,
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_size_t),
        ctypes.c_void_p,
        ctypes.c_size_t,
    ]
    return mallctl


def _jemalloc_stats():
    """jemalloc's `stats.allocated`, `.active`, `.resident`, `.metadata` (refreshed by writing `epoch`):
    allocated growing is memory held; resident growing beside a level allocated is fragmentation."""
    names = (b"stats.allocated", b"stats.active", b"stats.resident", b"stats.metadata")
    mallctl = _mallctl()
    if mallctl is None:
        return lambda: (-1,) * len(names)

    def read():
        epoch = ctypes.c_uint64(1)
        mallctl(b"epoch", None, None, ctypes.byref(epoch), ctypes.sizeof(epoch))
        values = []
        for name in names:
            value, size = ctypes.c_size_t(), ctypes.c_size_t(ctypes.sizeof(ctypes.c_size_t))
            failed = mallctl(name, ctypes.byref(value), ctypes.byref(size), None, 0)
            values.append(-1 if failed else value.value)
        return tuple(values)

    return read


def _jemalloc_report():
    """jemalloc's `malloc_stats_print` as JSON (per-arena detail left out, the merged arena kept); None without it."""
    try:
        report = ctypes.CDLL(None).malloc_stats_print
    except AttributeError:
        return None
    writer = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p)
    report.restype, report.argtypes = None, [writer, ctypes.c_void_p, ctypes.c_char_p]

    def read():
        parts = []
        report(writer(lambda _, text: parts.append(text)), None, b"Ja")
        return b"".join(parts)

    return read


def _slab_census(mallctl, region_bytes):
    """Which Python objects sit in the sparse slabs of jemalloc's `region_bytes` class (one-page slabs):
    every object the collector tracks and those they refer to, their slab's use asked of jemalloc
    (`experimental.utilization.batch_query`); a slab a quarter full or less is kept for its stragglers.
    The walk holds the interpreter a second or two, and its arrays are large extents, not small slabs."""
    import gc

    import numpy

    def shape(obj):
        kind = type(obj).__name__
        if isinstance(obj, (str, bytes)):
            text = obj if isinstance(obj, str) else obj.decode("latin-1")
            return f"{kind} {''.join('9' if c.isdigit() else c for c in text[:24])!r}"
        if isinstance(obj, tuple):
            return f"tuple({', '.join(type(item).__name__ for item in obj[:4])})"
        return kind

    def objects():
        """Every tracked object, and the untracked ones below it (atoms, and tuples and dicts of atoms)."""
        for obj in gc.get_objects():
            yield obj
            below = [r for r in gc.get_referents(obj) if not gc.is_tracked(r)]
            while below:
                found = below.pop()
                yield found
                if isinstance(found, (tuple, dict, frozenset)):
                    below.extend(gc.get_referents(found))

    def census():
        found = list(objects())  # one walk; the list is one large extent, its objects alive anyway
        ids, first = numpy.unique(
            numpy.fromiter(map(id, found), dtype=numpy.uint64, count=len(found)), return_index=True
        )
        out = numpy.zeros((len(ids), 3), dtype=numpy.uint64)
        for start in range(0, len(ids), 1 << 16):
            chunk, result = ids[start : start + (1 << 16)], out[start : start + (1 << 16)]
            size = ctypes.c_size_t(result.nbytes)
            mallctl(
                b"experimental.utilization.batch_query",
                result.ctypes.data_as(ctypes.c_void_p),
                ctypes.byref(size),
                chunk.ctypes.data_as(ctypes.c_void_p),
                chunk.nbytes,
            )
        nfree, nregs, extent = out[:, 0], out[:, 1], out[:, 2]
        mine = (extent == 4096) & (nregs == 4096 // region_bytes)
        pages, page_of = numpy.unique(ids[mine] & ~numpy.uint64(4095), return_index=True)
        used = (nregs[mine] - nfree[mine])[page_of]
        per_slab = 4096 // region_bytes
        step = max(1, per_slab // 8)
        spread = (
            f"{low}-{low + step - 1}:{int(((used >= low) & (used < low + step)).sum())}"
            for low in range(1, per_slab + 1, step)
        )
        lines = [
            f"{region_bytes}-byte slabs holding a Python object: {len(pages)}; regions in use in them:"
            f" {int(used.sum())}; Python objects found in them: {int(mine.sum())}",
            f"slabs by regions in use (of {per_slab}): {' '.join(spread)}",
        ]
        sparse = mine & (nregs - nfree <= nregs // 4)
        by_type = collections.Counter(type(found[i]).__name__ for i in first[mine])
        by_type_sparse = collections.Counter(type(found[i]).__name__ for i in first[sparse])
        lines.append(f"objects in slabs a quarter full or less: {int(sparse.sum())}")
        lines += [f"  {n:8d} of {by_type[name]:8d}  {name}" for name, n in by_type_sparse.most_common(25)]
        shapes = collections.Counter(shape(found[i]) for i in first[sparse])
        lines.append("their shapes:")
        lines += [f"  {n:8d}  {what}" for what, n in shapes.most_common(60)]
        return "\n".join(lines) + "\n"

    return census


def _smaps_anon(glibc):
    """Resident anonymous bytes by kind: glibc's main heap ([heap]), its other arenas (the writable part of a
    64 MiB-aligned reservation; none when `glibc` is false: jemalloc's mappings are aligned so by chance),
    thread stacks (a writable mapping right above a one-page guard), the rest."""
    heap = arenas = stacks = rest = 0
    previous = None
    current = None
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                start, end = (int(x, 16) for x in head[0].split("-"))
                previous, current = current, (start, end, head[1], head[5] if len(head) > 5 else "")
            elif head[0] == "Anonymous:" and current is not None:
                size = int(head[1]) * 1024
                start, _, perms, name = current
                if name == "[heap]":
                    heap += size
                elif name or not perms.startswith("rw"):
                    continue
                elif glibc and start % (64 << 20) == 0:
                    arenas += size
                elif previous is not None and previous[1] == start and previous[2].startswith("---"):
                    stacks += size
                else:
                    rest += size
    return heap, arenas, stacks, rest


def _thread_names():
    """The daemon's Python threads by name, numbers dropped (`archive-copy_3` counts as `archive-copy_`)."""
    names = collections.Counter(thread.name.rstrip("0123456789") for thread in threading.enumerate())
    return " ".join(f"{name}={count}" for name, count in sorted(names.items()))


def _rss_anon():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return -1


def _sample_every(folder, every):
    sqlite_used, mallinfo, pymalloc = _sqlite_memory_used(), _malloc_info(), _pymalloc_stats(folder)
    jemalloc, jemalloc_report = _jemalloc_stats(), _jemalloc_report()
    report_every = float(os.environ.get("MEMTRACE_JEMALLOC", "300"))
    region_bytes = int(os.environ.get("MEMTRACE_SLABS", "0"))
    mallctl = _mallctl()
    census = _slab_census(mallctl, region_bytes) if region_bytes and mallctl is not None else None
    started = next_report = time.monotonic()
    threads_seen = None
    with open(os.path.join(folder, "memory.csv"), "w") as out, open(os.path.join(folder, "threads.txt"), "w") as names:
        out.write(
            "elapsed_s,rss_anon_bytes,sqlite_bytes,python_blocks,malloc_used_bytes,malloc_free_bytes,malloc_mmap_bytes,"
            "pymalloc_arenas,pymalloc_arenas_highwater,pymalloc_used_bytes,"
            "anon_heap_bytes,anon_glibc_arenas_bytes,anon_stacks_bytes,anon_other_bytes,"
            "jemalloc_allocated_bytes,jemalloc_active_bytes,jemalloc_resident_bytes,jemalloc_metadata_bytes\n"
        )
        while True:
            time.sleep(every)
            info = mallinfo()
            heap = (info.uordblks, info.fordblks, info.hblkhd) if info is not None else (-1, -1, -1)
            row = (
                round(time.monotonic() - started, 1),
                _rss_anon(),
                sqlite_used(),
                sys.getallocatedblocks(),
                *heap,
                *pymalloc(),
                *_smaps_anon(mallctl is None),
                *jemalloc(),
            )
            out.write(",".join(map(str, row)) + "\n")
            out.flush()
            threads_now = _thread_names()
            if threads_now != threads_seen:
                threads_seen = threads_now
                names.write(f"{row[0]}\t{threads_now}\n")
                names.flush()
            if jemalloc_report is not None and time.monotonic() >= next_report:
                next_report += report_every
                with open(os.path.join(folder, f"jemalloc-{int(row[0]):06d}.json"), "wb") as dump:
                    dump.write(jemalloc_report())
                if census is not None:
                    with open(os.path.join(folder, f"slabs-{int(row[0]):06d}.txt"), "w") as dump:
                        dump.write(census())


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
