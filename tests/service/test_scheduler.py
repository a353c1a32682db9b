"""The scheduled checks' threads: all started with the scheduler, none later (a service's thread count is set)."""

from __future__ import annotations

import threading

from orchestrator_monitor.service.daemon import StartedThreadPool


def scheduled_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name.startswith("scheduled")}


def test_every_worker_is_running_before_the_first_job_and_jobs_start_no_other() -> None:
    pool = StartedThreadPool(4)
    try:
        started = scheduled_threads()
        assert len(started) == 4  # concurrent.futures alone: none yet, then one more at each overlap
        overlapping = threading.Barrier(4)
        futures = [pool._pool.submit(overlapping.wait, 10) for _ in range(4)]  # all four busy at once
        assert all(f.result(timeout=10) is not None for f in futures)
        assert scheduled_threads() == started
    finally:
        pool.shutdown()
    assert not scheduled_threads()
