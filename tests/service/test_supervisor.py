"""The supervisor between the checks and the rest of the daemon: safe mode from outcomes, hooks off the lock."""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from orchestrator_monitor.config import load_settings
from orchestrator_monitor.events.types import Event, EventType
from orchestrator_monitor.finish import worker as worker_module
from orchestrator_monitor.finish.worker import ArchiveWorker
from orchestrator_monitor.ledger.monitor_db import record_heartbeats
from orchestrator_monitor.ledger.store import sqlite_store
from orchestrator_monitor.service.health import DATABASE, STORAGE
from orchestrator_monitor.service.metrics import MonitorMetrics
from orchestrator_monitor.service.notify import Notifier
from orchestrator_monitor.service.safemode import Condition, Observation
from orchestrator_monitor.service.supervisor import LoopProgress, Supervisor


def make_supervisor(tmp_path: Path, escalate: Any = lambda settings, data: None) -> tuple[Supervisor, list]:
    published: list[tuple[EventType, dict[str, Any]]] = []
    store = sqlite_store(tmp_path / "monitor.db", busy_timeout_seconds=1)
    supervisor = Supervisor(
        settings=load_settings(tmp_path, environ={}),
        publish=lambda type, data, run_id=None: published.append((type, data)),
        metrics=MonitorMetrics(),
        notifier=Notifier(None),
        detection=LoopProgress(60, lambda: 0.0),
        check_database=lambda timeout: Observation(DATABASE, Condition.OK, "fine"),
        record_beats=partial(record_heartbeats, store),
        clock=lambda: 0.0,
        escalate=escalate,
    )
    return supervisor, published


def archive_failed(reason: str) -> Event:
    data = {"reason": reason, "detail": "No space left on device"}
    return Event(1, "2026-11-24T00:00:00Z", EventType.ARCHIVE_FAILED, "x", data, "r1")


def test_a_full_disk_met_by_archival_enters_safe_mode_until_the_storage_check_sees_room(tmp_path: Path) -> None:
    supervisor, published = make_supervisor(tmp_path)
    supervisor.observe_outcome(archive_failed("permission"))
    assert supervisor.archival_allowed()
    supervisor.observe_outcome(archive_failed("storage_full"))
    assert not supervisor.archival_allowed()
    assert supervisor.marks_allowed()  # detection and marking go on
    entered = [data["reason"] for type, data in published if type is EventType.SAFE_MODE_ENTERED]
    assert entered == ["archive_storage_full"]
    supervisor.observe(Observation(STORAGE, Condition.OK, "room again"))
    assert supervisor.archival_allowed()
    assert published[-1][0] is EventType.SAFE_MODE_EXITED


def test_a_slow_escalation_hook_does_not_hold_up_other_observers(tmp_path: Path) -> None:
    release = threading.Event()
    entered = threading.Event()

    def slow_hook(settings: Any, data: dict[str, Any]) -> None:
        entered.set()
        release.wait(10)

    supervisor, _ = make_supervisor(tmp_path, escalate=slow_hook)
    corrupt = threading.Thread(target=supervisor.observe, args=(Observation(DATABASE, Condition.CORRUPT, "malformed"),))
    corrupt.start()
    assert entered.wait(5)
    other = threading.Thread(target=supervisor.observe, args=(Observation(STORAGE, Condition.FULL, "full"),))
    other.start()
    other.join(2)
    try:
        assert not other.is_alive(), "an observer waited for the escalation hook"
        assert not supervisor.archival_allowed()
    finally:
        release.set()
        corrupt.join(5)


def test_archival_waits_in_safe_mode_and_every_waiting_run_goes_when_room_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archived: list[str] = []
    done = threading.Event()

    def iteration(pipeline: object, run_id: str, *, quiet_seconds: float, now_ns: int) -> None:
        archived.append(run_id)
        if len(archived) == 2:
            done.set()

    monkeypatch.setattr(worker_module, "run_archive_iteration", iteration)
    monkeypatch.setattr(worker_module, "SAFE_MODE_POLL_SECONDS", 0.01)
    room = threading.Event()
    ledger = SimpleNamespace(runs_in_phase=lambda phase: [])
    pipeline = SimpleNamespace(archival=SimpleNamespace(log=SimpleNamespace(flush=lambda: None), ledger=ledger))
    stop = threading.Event()
    worker = ArchiveWorker(pipeline, quiet_seconds=0, stop=stop, allowed=room.is_set)  # type: ignore[arg-type]
    worker.start()
    try:
        worker.completed("a")
        worker.completed("b")
        assert not done.wait(0.3)
        assert archived == []
        room.set()
        assert done.wait(5)
        assert sorted(archived) == ["a", "b"]
    finally:
        worker.close()
