"""A retry between a run's mark and its snapshot: no bag contradicts itself, on SQLite and PostgreSQL.

The detector, the archival pipeline and the executor's writes are driven in turn in this process,
on real databases; a hook in the copy stage is where the executor's retry lands, after archival
read the run terminal and before the snapshot's read transaction.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from archive_support import assert_bagit_valid
from orchestrator_monitor.archive import staging
from orchestrator_monitor.archive.archiver import fetch_terminal_run
from orchestrator_monitor.archive.verify import verify_bag
from orchestrator_monitor.config import load_settings
from orchestrator_monitor.detect.detector import Detector
from orchestrator_monitor.detect.rule import final_status
from orchestrator_monitor.errors import ProblemFound
from orchestrator_monitor.finish.pipeline import Pipeline, open_pipeline
from orchestrator_monitor.finish.worker import ArchiveWorker, run_archive_iteration
from orchestrator_monitor.ledger.runs import Completion
from orchestrator_monitor.state.records import RUN_TERMINAL, TASK_TERMINAL
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool
from support import EventLog

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
RETRY_AT = "2026-11-24T10:05:00Z"
ENDED_AT = "2026-11-24T10:06:00Z"


class Handoff:
    def __init__(self) -> None:
        self.runs: list[str] = []

    def completed(self, run_id: str) -> None:
        self.runs.append(run_id)


@dataclass
class Rig:
    """The daemon's two halves on one workspace, and the executor beside them."""

    workspace: Path
    pipeline: Pipeline
    detector: Detector
    handoff: Handoff
    executor: Engine
    log: EventLog

    def sql(self, statement: str, **params: object) -> list[Any]:
        with self.executor.begin() as connection:
            result = connection.execute(text(statement), params)
            return [tuple(row) for row in result] if result.returns_rows else []

    def detect(self, mono: float) -> None:
        self.detector.run_detect_iteration(now=NOW, mono=mono)
        self.detector.seal_archived(mono)

    def archive(self, run_id: str) -> float | None:
        return run_archive_iteration(self.pipeline, run_id, quiet_seconds=0, now_ns=time.time_ns())

    def events(self, type: str) -> list[dict[str, Any]]:
        self.pipeline.archival.flush_events()
        return self.log.events(type)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def rig(request: pytest.FixtureRequest, tmp_path: Path, cli) -> Iterator[Rig]:
    workspace = tmp_path / "ws"
    overrides = [f"database.url={request.getfixturevalue('postgres_url')}"] if request.param == "postgresql" else []
    assert cli("init", "--workspace", str(workspace), *(a for o in overrides for a in ("--set", o))).code == 0
    with open_pipeline(load_settings(workspace, overrides=overrides), threading.Event()) as pipeline:
        state = pipeline.archival.state
        handoff = Handoff()
        with state.engine.connect() as connection:
            detector = Detector(
                ledger=pipeline.archival.ledger,
                publish=pipeline.archival.publish,
                flush=pipeline.archival.flush_events,
                handoff=handoff,
                settle_seconds=0,
                stall_after_seconds=100,
                connection=lambda: connection,
                tables=state.tables,
            )
            detector.start()
            detector.run_reconcile_iteration(now=NOW, mono=0)
            executor = create_engine(state.url, poolclass=NullPool)
            try:
                yield Rig(workspace, pipeline, detector, handoff, executor, EventLog(workspace))
            finally:
                executor.dispose()


def add_run(rig: Rig, run_id: str, tasks: int) -> None:
    rig.sql("INSERT INTO runs (run_id, status) VALUES (:r, 'RUNNING')", r=run_id)
    rig.sql(
        "INSERT INTO workstreams (workstream_id, run_id, status) VALUES (:w, :r, 'COMPLETED')",
        w=f"{run_id}.w",
        r=run_id,
    )
    for n in range(tasks):
        rig.sql(
            "INSERT INTO tasks (task_id, run_id, workstream_id, status, attempts, updated_at) "
            "VALUES (:t, :r, :w, 'SUCCEEDED', 1, '2026-11-24T10:00:00Z')",
            t=f"{run_id}.t{n}",
            r=run_id,
            w=f"{run_id}.w",
        )
    (rig.workspace / "runs" / run_id).mkdir(parents=True)
    (rig.workspace / "runs" / run_id / "out.txt").write_text("artifact")


def bag_rows(bag: Path) -> tuple[str, str, list[str], list[str]]:
    """Run-Status of bag-info.txt, and the run, task and workstream statuses of its own snapshot."""
    info = dict(line.split(": ", 1) for line in (bag / "bag-info.txt").read_text().splitlines())
    with closing(sqlite3.connect(bag / "data" / "state" / "run.sqlite3")) as snapshot:
        (run_status,) = snapshot.execute("SELECT status FROM runs").fetchone()
        tasks = [row[0] for row in snapshot.execute("SELECT status FROM tasks")]
        workstreams = [row[0] for row in snapshot.execute("SELECT status FROM workstreams")]
    return info["Run-Status"], run_status, tasks, workstreams


@pytest.mark.parametrize(("retry_ends", "outcome"), [("SUCCEEDED", "COMPLETED"), ("FAILED", "PARTIAL")])
def test_a_retry_between_the_mark_and_the_snapshot_publishes_no_bag_until_the_run_ends_again(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, retry_ends: str, outcome: str
) -> None:
    add_run(rig, "r", tasks=2)
    rig.detect(mono=1)
    assert rig.sql("SELECT status FROM runs WHERE run_id = 'r'") == [("COMPLETED",)]
    assert rig.handoff.runs == ["r"]

    stage_payload = staging.stage_payload

    def retry_then_copy(*args: Any, **kwargs: Any) -> Any:
        """The gate: archival has read the run COMPLETED; the executor retries a task before the snapshot."""
        rig.sql(
            "UPDATE tasks SET status = 'RUNNING', attempts = 2, updated_at = :at WHERE task_id = 'r.t1'", at=RETRY_AT
        )
        return stage_payload(*args, **kwargs)

    monkeypatch.setattr(staging, "stage_payload", retry_then_copy)
    assert rig.archive("r") is None  # dropped: the detector hands it over again once it has ended again
    monkeypatch.undo()
    archive_root = rig.workspace / ".archive"
    assert not (archive_root / "r").exists() and not (archive_root / ".staging" / "r").exists()
    assert [e["data"]["reason"] for e in rig.events("ARCHIVE_FAILED")] == ["run_reopened"]
    assert len(rig.events("RUN_REOPENED")) == 1
    assert rig.pipeline.archival.ledger.phase("r") == "reopened"

    rig.detect(mono=2)  # the detector sees the open task too, and already knows
    rig.detector.run_reconcile_iteration(now=NOW, mono=3)
    assert len(rig.events("RUN_REOPENED")) == 1
    assert rig.archive("r") is not None  # handed over early (a worker's retry): still not ended, nothing done
    assert not (archive_root / "r").exists()

    rig.sql(
        "UPDATE tasks SET status = :status, updated_at = :at WHERE task_id = 'r.t1'", status=retry_ends, at=ENDED_AT
    )
    rig.detect(mono=4)
    assert rig.handoff.runs == ["r", "r"]
    assert rig.archive("r") is None
    bag = archive_root / "r"
    run_status, stored, tasks, workstreams = bag_rows(bag)
    assert (run_status, stored) == (outcome, outcome)
    assert set(tasks) <= TASK_TERMINAL and set(workstreams) <= RUN_TERMINAL
    assert final_status(Counter(tasks)) == run_status  # the bag agrees with every task row it holds
    assert verify_bag(bag).ok
    assert_bagit_valid(bag)
    assert [len(rig.events(t)) for t in ("RUN_COMPLETED", "RUN_REOPENED", "RUN_ARCHIVED")] == [1, 1, 1]
    assert rig.pipeline.archival.ledger.phase("r") == "reported"


def test_a_run_unchanged_since_its_mark_is_archived_at_once(rig: Rig) -> None:
    add_run(rig, "calm", tasks=3)
    rig.detect(mono=1)
    assert rig.archive("calm") is None
    assert bag_rows(rig.workspace / ".archive" / "calm")[:2] == ("COMPLETED", "COMPLETED")
    assert rig.events("RUN_REOPENED") == [] and rig.events("ARCHIVE_FAILED") == []


def retry_seen(rig: Rig, mono: float) -> None:
    """The executor retries a task of run `r` and the detector's next wake-up sees it."""
    rig.sql("UPDATE tasks SET status = 'RUNNING', attempts = 2, updated_at = :at WHERE task_id = 'r.t1'", at=RETRY_AT)
    rig.detect(mono=mono)


def end_again(rig: Rig, mono: float) -> None:
    rig.sql("UPDATE tasks SET status = 'SUCCEEDED', updated_at = :at WHERE task_id = 'r.t1'", at=ENDED_AT)
    rig.detect(mono=mono)


def test_a_reopening_seen_after_the_snapshot_and_before_the_rename_publishes_no_bag(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snapshot agreed with the mark; the detector records the retry while the bag is sealed."""
    add_run(rig, "r", tasks=2)
    rig.detect(mono=1)
    seal = staging.seal

    def retry_then_seal(bag_dir: Path) -> None:
        retry_seen(rig, mono=2)
        seal(bag_dir)

    monkeypatch.setattr(staging, "seal", retry_then_seal)
    assert rig.archive("r") is None  # dropped: handed over again once it has ended again
    monkeypatch.undo()
    archive_root = rig.workspace / ".archive"
    assert not (archive_root / "r").exists() and not (archive_root / ".staging" / "r").exists()
    assert [e["data"]["reason"] for e in rig.events("ARCHIVE_FAILED")] == ["run_reopened"]
    assert len(rig.events("RUN_REOPENED")) == 1

    end_again(rig, mono=3)
    assert rig.handoff.runs == ["r", "r"]
    assert rig.archive("r") is None
    assert bag_rows(archive_root / "r")[2] == ["SUCCEEDED", "SUCCEEDED"]  # the rows of its second end
    counts = [len(rig.events(t)) for t in ("RUN_COMPLETED", "RUN_REOPENED", "RUN_ARCHIVED", "REPORT_GENERATED")]
    assert counts == [1, 1, 1, 1]


def test_a_reopening_seen_after_the_bag_is_out_keeps_it_and_archives_the_run_once(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retry is recorded between RUN_ARCHIVED and its record in the ledger (the chaos runner's seed 13):
    the run keeps its bag, says RUN_REOPENED once, and its second end is neither archived nor announced again."""
    add_run(rig, "r", tasks=2)
    rig.detect(mono=1)
    ledger = rig.pipeline.archival.ledger
    archived = ledger.archived

    def retry_then_record(run_id: str, status: str) -> bool:
        retry_seen(rig, mono=2)
        return archived(run_id, status)

    monkeypatch.setattr(ledger, "archived", retry_then_record)
    assert rig.archive("r") is None
    monkeypatch.undo()
    bag = rig.workspace / ".archive" / "r"
    assert bag_rows(bag)[:3] == ("COMPLETED", "COMPLETED", ["SUCCEEDED", "SUCCEEDED"])
    assert len(rig.events("RUN_REOPENED")) == 1

    end_again(rig, mono=3)
    rig.detector.run_reconcile_iteration(now=NOW, mono=4)
    assert rig.handoff.runs == ["r"]
    for run_id in rig.handoff.runs:  # what a worker would be handed: nothing more
        assert rig.archive(run_id) is None
    assert verify_bag(bag).ok
    counts = [len(rig.events(t)) for t in ("RUN_COMPLETED", "RUN_REOPENED", "RUN_ARCHIVED", "REPORT_GENERATED")]
    assert counts == [1, 1, 1, 1]
    assert ledger.phase("r") == "reported"


def test_a_bag_renamed_just_before_a_crash_is_kept_when_the_run_changes_while_the_daemon_is_down(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed between the rename and the ledger's commit: the bag is out, the ledger still says `announced`.
    The next start records it published before the detector looks, so the retry made meanwhile keeps the bag."""
    add_run(rig, "r", tasks=2)
    rig.detect(mono=1)
    ledger = rig.pipeline.archival.ledger

    def rename_then_die(run_id: str, decided_on: str | None, rename: Callable[[], None]) -> bool:
        rename()
        raise KeyboardInterrupt("killed before the commit")

    monkeypatch.setattr(ledger, "publish_bag", rename_then_die)
    with pytest.raises(KeyboardInterrupt):
        rig.archive("r")
    monkeypatch.undo()
    assert (rig.workspace / ".archive" / "r").is_dir() and ledger.phase("r") == "announced"
    rig.sql("UPDATE tasks SET status = 'RUNNING', attempts = 2, updated_at = :at WHERE task_id = 'r.t1'", at=RETRY_AT)

    worker = ArchiveWorker(rig.pipeline, quiet_seconds=0, stop=threading.Event(), allowed=lambda: False)  # idle
    worker.start()  # the next start, before the detector's first pass
    worker.close()
    assert ledger.phase("r") == "published"
    rig.detect(mono=2)
    end_again(rig, mono=3)
    assert rig.handoff.runs == ["r"]  # not handed over again: its bag is out
    assert rig.archive("r") is None  # what the worker finishes: the record and RUN_ARCHIVED, once
    counts = [len(rig.events(t)) for t in ("RUN_COMPLETED", "RUN_REOPENED", "RUN_ARCHIVED", "REPORT_GENERATED")]
    assert counts == [1, 1, 1, 1]


def test_a_command_does_not_archive_a_run_whose_completion_is_not_announced_yet(rig: Rig) -> None:
    """Its bag would be out while a change could still reopen the run (the daemon archives it once announced)."""
    add_run(rig, "c", tasks=1)
    rig.sql("UPDATE runs SET status = 'COMPLETED' WHERE run_id = 'c'")
    ledger = rig.pipeline.archival.ledger
    ledger.begin_marks({"c": "COMPLETED"})
    ledger.complete_many([Completion("c", "COMPLETED", "monitor", {"SUCCEEDED": 1}, "rows")])
    with pytest.raises(ProblemFound, match="not announced yet"):
        fetch_terminal_run(rig.pipeline.archival, "c")
    assert not (rig.workspace / ".archive" / "c").exists()
