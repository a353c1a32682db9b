"""One read buffer per copy thread, kept: what the archival's copies read files into.

A fresh 1 MiB `bytearray` per file was zeroed and faulted in each time and its pages handed back
a second later: at the soak's load (3.3 bags a second, a few small files each) the pages jemalloc
handed back to the kernel fell from 6.0 to 3.1 MB a second with the buffers kept. The copy threads
live as long as the process, so their buffers are allocated once: 4 MiB held, what four copies at
once held before. (The fixity checks, paced and rarer, still take a buffer per file: kept, one
would stay on every scheduler thread that ever ran an audit.)
"""

from __future__ import annotations

import threading

CHUNK_BYTES = (1 << 20) - 1  # a bytearray asks one byte more (its NUL): 1 MiB exactly, not jemalloc's 1.25 MiB class

_local = threading.local()


def chunk_buffer() -> bytearray:
    """This thread's `CHUNK_BYTES` buffer (one file at a time per thread: a copy is synchronous)."""
    buffer: bytearray | None = getattr(_local, "buffer", None)
    if buffer is None:
        buffer = _local.buffer = bytearray(CHUNK_BYTES)
    return buffer
