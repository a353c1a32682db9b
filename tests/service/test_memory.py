"""Free memory handed back: after a fragmented heap is freed, `release_free_memory` lowers the process's RSS."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from orchestrator_monitor.service.memory import memory_release_job, release_free_memory

PROBE = textwrap.dedent(
    """
    from orchestrator_monitor.service.memory import release_free_memory

    def rss_anon():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("RssAnon:")) * 1024

    blocks = [bytes(8192) for _ in range(20_000)]  # 160 MB in blocks malloc serves from its heap
    del blocks[::2]  # every other one freed: free memory in the middle, none at the heap's top to trim
    before = rss_anon()
    release_free_memory()
    print(before - rss_anon())
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RssAnon is Linux's")
def test_a_fragmented_heap_is_handed_back_to_the_system() -> None:
    if not release_free_memory():
        pytest.skip("this C library has no malloc_trim (not glibc)")
    released = int(subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout)
    assert released > 20 << 20  # without the release: 0 (the pages left whole by 8 KB holes: about 40 MB)


def test_the_daemon_schedules_the_release_where_the_c_library_has_it() -> None:
    job = memory_release_job()
    if release_free_memory():
        assert job is not None and job[0] == "memory_release" and job[1] > 0
    else:
        assert job is None
