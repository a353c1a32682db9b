"""The archival worker's loop: what it retries, what it drops, and that it cannot die quietly."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from orchestrator_monitor.errors import BadInput, ProblemFound
from orchestrator_monitor.finish import worker as worker_module
from orchestrator_monitor.finish.worker import REOPENED_RECHECK_SECONDS, ArchiveWorker, run_archive_iteration
from sqlalchemy import exc


def fake_pipeline(flush: object = lambda: True) -> SimpleNamespace:
    ledger = SimpleNamespace(runs_in_phase=lambda phase: [])
    return SimpleNamespace(archival=SimpleNamespace(log=SimpleNamespace(flush=flush), ledger=ledger))


@pytest.mark.parametrize(("error", "expected"), [(ProblemFound, REOPENED_RECHECK_SECONDS), (BadInput, None)])
def test_a_reopened_run_is_looked_at_again_and_a_deleted_one_dropped(
    monkeypatch: pytest.MonkeyPatch, error: type[Exception], expected: float | None
) -> None:
    def fetch(archival: object, run_id: str) -> None:
        raise error(f"run {run_id}: not terminal or gone")

    monkeypatch.setattr(worker_module, "fetch_terminal_run", fetch)
    assert run_archive_iteration(fake_pipeline(), "r", quiet_seconds=0, now_ns=0) == expected  # type: ignore[arg-type]


def test_a_database_error_in_the_loop_does_not_kill_the_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    recovered = threading.Event()

    def flush() -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise exc.DatabaseError("SELECT 1", {}, Exception("database disk image is malformed"))
        recovered.set()
        return True

    monkeypatch.setattr(worker_module, "RETRY_FIRST_SECONDS", 0.01)
    worker = ArchiveWorker(fake_pipeline(flush), quiet_seconds=0, stop=threading.Event())  # type: ignore[arg-type]
    worker.start()
    try:
        assert recovered.wait(5), "the archival thread died on the first error"
    finally:
        worker.close()


def test_a_run_handed_over_again_during_an_attempt_keeps_the_sooner_time() -> None:
    worker = ArchiveWorker(fake_pipeline(), quiet_seconds=0, stop=threading.Event())  # type: ignore[arg-type]
    worker.completed("r")  # the detector: it ended again, archive it now
    worker._schedule("r", REOPENED_RECHECK_SECONDS)  # the attempt in flight: not terminal yet, look again later
    run_id, wait = worker._next()
    assert (run_id, wait) == ("r", 0.0)
