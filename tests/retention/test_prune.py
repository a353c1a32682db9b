"""Retention against real workspaces and bags made by the real archiver: what goes, what stays and why."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from orchestrator_monitor.config import load_settings
from orchestrator_monitor.ledger.catalog import Catalog
from orchestrator_monitor.ledger.monitor_db import Heartbeat, record_heartbeats
from orchestrator_monitor.ledger.prunings import Prunings
from orchestrator_monitor.ledger.store import open_store
from orchestrator_monitor.retention.removal import CHECKING, DELETING
from retention_support import (
    Recorder,
    archive_runs,
    configure,
    corrupt_bag_file,
    one_pass,
    tree_digest,
)

JOBS = ("scheduler", "detection")  # a live daemon's heartbeats, all fresh
NOT_YET = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # the runs ended two hours before: no policy lets them go
EVERYTHING_BAGS = """
[retention]
enabled = true

[[retention.policies]]
keep_days = 1
applies_to = ["bags"]
"""


def _catalog(workspace: Path) -> tuple[Catalog, Prunings]:
    store = open_store(load_settings(workspace))
    assert store is not None
    return Catalog(store), Prunings(store)


def test_the_plan_shows_what_would_go_and_changes_nothing(cli, workspace: Path) -> None:
    archive_runs(cli, workspace, ["p1", "p2"])
    configure(workspace)
    (workspace / "runs" / "p2" / "late.txt").write_text("written after the archival\n")
    before = tree_digest(workspace / "runs", workspace / ".archive", workspace / "logs")
    report = one_pass(workspace, Recorder(), apply=False)
    assert {(s.run_id, str(s.target), s.held) for s in report.steps} == {
        ("p1", "run_dir", None),
        ("p2", "run_dir", None),  # its extra file would stay; the others would go
        ("p1", "bag", "not_offloaded"),  # offload off: a local bag never goes
        ("p2", "bag", "not_offloaded"),
    }
    shown = cli("retention", "plan", "--workspace", str(workspace), "--json")
    assert shown.code == 0
    document = json.loads(shown.out)
    assert document["applied"] is False
    assert {(r["run_id"], r["target"], r["action"]) for r in document["steps"]} == {
        ("p1", "run_dir", "delete"),
        ("p2", "run_dir", "delete"),
        ("p1", "bag", "hold: not_offloaded"),
        ("p2", "bag", "hold: not_offloaded"),
    }
    assert all("policy 1 (any status, name *) keeps 1 days" in r["why"] for r in document["steps"])
    why = {(r["run_id"], r["target"]): r["why"] for r in document["steps"]}
    assert why[("p2", "run_dir")].startswith("3 files (4116 bytes) in the bag go, 1 file not in it stays")
    table = cli("retention", "plan", "--workspace", str(workspace)).out
    assert "2 would be deleted, 2 held" in table
    assert tree_digest(workspace / "runs", workspace / ".archive", workspace / "logs") == before
    assert not any(e for e in (workspace / "logs").glob("*.jsonl") if "RUN_PRUNED" in e.read_text())


def test_a_pass_deletes_only_the_files_in_the_bag(cli, workspace: Path) -> None:
    archive_runs(cli, workspace, ["d1", "d2"])
    configure(workspace)
    (workspace / "runs" / "d2" / "logs" / "late.log").write_text("not in the bag\n")
    recorder = Recorder()
    report = one_pass(workspace, recorder)
    assert {(s.run_id, str(s.target)) for s in report.done} == {("d1", "run_dir"), ("d2", "run_dir")}
    assert not (workspace / "runs" / "d1").exists()
    remaining = sorted(str(p.relative_to(workspace / "runs" / "d2")) for p in (workspace / "runs" / "d2").rglob("*"))
    assert remaining == ["logs", "logs/late.log"]  # the file the bag does not have, and its directory
    pruned = {run_id: data for data, run_id in recorder.of("RUN_PRUNED")}
    assert pruned["d1"]["files"] == 3 and pruned["d1"]["kept"] == 0 and pruned["d2"]["kept"] == 1
    assert pruned["d1"]["run_dir"] == str(workspace / "runs" / "d1")
    _, prunings = _catalog(workspace)
    [record] = prunings.pruned("d2")
    assert (record.target, record.files, record.kept) == ("run_dir", 3, 1) and "ended" in record.why
    shown = json.loads(cli("archives", "show", "d2", "--workspace", str(workspace), "--json").out)
    assert [(p["target"], p["files"], p["kept"]) for p in shown["pruned"]] == [("run_dir", 3, 1)]
    assert "pruned run_dir" in cli("archives", "show", "d2", "--workspace", str(workspace)).out
    assert (workspace / ".archive" / "d1").is_dir()  # the bag stays: offload is off
    assert cli("verify", "--workspace", str(workspace), "--run", "d1").code == 0
    assert one_pass(workspace, Recorder()).done == []  # done once: a run directory is pruned once


def test_a_file_changed_after_archival_keeps_the_whole_directory(cli, workspace: Path) -> None:
    archive_runs(cli, workspace, ["c1"])
    configure(workspace)
    (workspace / "runs" / "c1" / "result.json").write_text('{"ok": false}\n')
    before = tree_digest(workspace / "runs")
    recorder = Recorder()
    [step] = [s for s in one_pass(workspace, recorder).steps if str(s.target) == "run_dir"]
    assert step.held == "changed" and "result.json" in step.detail
    assert tree_digest(workspace / "runs") == before  # not one file gone, back under its own name
    [(data, run_id)] = recorder.of("RETENTION_HELD")[:1]
    assert run_id == "c1" and data["reason"] == "changed" and "result.json" in data["detail"]
    assert recorder.of("RUN_PRUNED") == []
    again = Recorder()
    one_pass(workspace, again)
    assert [d["reason"] for d, r in again.of("RETENTION_HELD") if d["target"] == "run_dir"] == []  # said once


def test_a_bag_corrupted_on_disk_blocks_its_run_directory(cli, workspace: Path) -> None:
    archive_runs(cli, workspace, ["b1", "b2"])
    configure(workspace)
    corrupt_bag_file(workspace / ".archive" / "b1")
    recorder = Recorder()
    report = one_pass(workspace, recorder)
    assert [s.run_id for s in report.done] == ["b2"]
    assert sorted(p.name for p in (workspace / "runs" / "b1").iterdir()) == ["logs", "out.bin", "result.json"]
    [(corrupt, run_id)] = recorder.of("ARCHIVE_CORRUPT")
    assert run_id == "b1" and "data/run/out.bin: checksum mismatch" in corrupt["problems"][0]
    held = {(d["target"], d["reason"]) for d, r in recorder.of("RETENTION_HELD") if r == "b1"}
    assert ("run_dir", "bag_unverified") in held
    catalog, _ = _catalog(workspace)
    assert catalog.get("b1").verify_result == "corrupt"
    later = Recorder()  # the catalog's mark now holds it before any reading
    [step] = [s for s in one_pass(workspace, later).steps if s.run_id == "b1" and str(s.target) == "run_dir"]
    assert step.held == "bag_corrupt" and (workspace / "runs" / "b1" / "out.bin").is_file()


def test_safe_mode_and_retention_off_delete_nothing(cli, workspace: Path) -> None:
    archive_runs(cli, workspace, ["s1"])
    configure(workspace)
    before = tree_digest(workspace / "runs", workspace / ".archive")
    recorder = Recorder()
    report = one_pass(workspace, recorder, safe_modes=frozenset({"archive_storage_full"}), confirm=lambda r: None)
    assert report.refused == "safe mode archive_storage_full: nothing is deleted" and report.steps == []
    configure(workspace, "[retention]\nenabled = false\n[[retention.policies]]\nkeep_days = 0\n")
    assert one_pass(workspace, recorder, confirm=lambda r: None).refused.startswith("retention is off")
    refused = cli("retention", "run", "--workspace", str(workspace))
    assert refused.code == 3 and "retention is off" in refused.err
    assert tree_digest(workspace / "runs", workspace / ".archive") == before and recorder.events == []


def test_a_local_bag_goes_only_once_its_offloaded_copy_is_confirmed(cli, workspace: Path) -> None:
    archive_runs(cli, workspace, ["o1"])
    configure(workspace, EVERYTHING_BAGS)
    bag = workspace / ".archive" / "o1"
    recorder = Recorder()
    [step] = one_pass(workspace, recorder, confirm=lambda run_id: "no object at s3://b/o1/bagit.txt").steps
    assert step.held == "not_offloaded" and "s3://b/o1/bagit.txt" in step.detail and bag.is_dir()
    [step] = one_pass(workspace, recorder).steps  # offload off
    assert step.held == "not_offloaded" and bag.is_dir()
    asked: list[str] = []
    [step] = one_pass(workspace, recorder, confirm=lambda run_id: asked.append(run_id)).steps
    assert step.held is None and asked == ["o1"] and not bag.exists()
    [(data, run_id)] = recorder.of("ARCHIVE_PRUNED")
    assert run_id == "o1" and data["archive_path"] == str(bag) and data["bytes"] > 0
    catalog, prunings = _catalog(workspace)
    entry = catalog.get("o1")
    assert entry is not None and entry.locations == ()  # the run stays catalogued; its local copy is gone
    assert [p.target for p in prunings.pruned("o1")] == ["bag"]
    backfill = cli("archive", "--workspace", str(workspace), "--backfill")
    assert backfill.out.startswith("backfill: 0 of 0")  # archived already: not archived again from the run directory
    again = cli("archive", "--workspace", str(workspace), "--run", "o1")
    assert again.code == 1 and "retention deleted its local bag" in again.err and not bag.exists()


def test_a_pass_killed_midway_is_finished_by_the_next(cli, workspace: Path) -> None:
    archive_runs(cli, workspace, ["k1", "k2"])
    configure(workspace)
    runs = workspace / "runs"
    os.rename(runs / "k1", runs / f"{CHECKING}k1")  # killed while comparing: nothing deleted yet
    os.rename(runs / "k2", runs / f"{DELETING}k2")  # killed while deleting: one file already gone
    (runs / f"{DELETING}k2" / "out.bin").unlink()
    (runs / f"{DELETING}k2" / "extra.txt").write_text("never in the bag\n")
    recorder = Recorder()
    one_pass(workspace, recorder, now=NOT_YET)  # no policy lets anything go yet: only the leftovers are finished
    assert sorted(p.name for p in (runs / "k1").iterdir()) == ["logs", "out.bin", "result.json"]
    assert sorted(p.name for p in runs.iterdir()) == ["k1", "k2"]
    assert [p.name for p in (runs / "k2").iterdir()] == ["extra.txt"]
    [(data, run_id)] = recorder.of("RUN_PRUNED")
    assert run_id == "k2" and data["files"] == 2 and data["kept"] == 1 and "interrupted" in data["why"]


@pytest.mark.slow
def test_the_daemon_prunes_on_its_schedule(cli, workspace: Path, start_daemon) -> None:
    archive_runs(cli, workspace, ["j1"])
    configure(workspace)
    daemon = start_daemon(workspace, "retention.interval_seconds=0.5")
    daemon.log.wait_for(
        lambda log: bool(log.events("RUN_PRUNED", "j1") and log.events("RETENTION_HELD", "j1")),
        what="RUN_PRUNED and the bag's RETENTION_HELD",
    )
    [event] = daemon.log.events("RUN_PRUNED", "j1")
    assert event["id"] == "j1:RUN_PRUNED" and event["data"]["files"] == 3
    assert not (workspace / "runs" / "j1").exists()
    held = daemon.log.events("RETENTION_HELD", "j1")
    assert [e["data"]["reason"] for e in held] == ["not_offloaded"]  # the bag: offload is off, said once a run
    assert daemon.stop()[0] == 0


def test_the_command_runs_a_pass_unless_the_daemon_is_in_safe_mode(cli, workspace: Path) -> None:
    archive_runs(cli, workspace, ["m1"])
    configure(workspace)
    settings = load_settings(workspace)
    store = open_store(settings)
    view = {"safe_modes": ["archive_storage_full"]}
    now = datetime.now(UTC)
    record_heartbeats(store, [Heartbeat(job, os.getpid(), now, (), view if job == "scheduler" else {}) for job in JOBS])
    refused = cli("retention", "run", "--workspace", str(workspace))
    assert refused.code == 3 and "safe mode archive_storage_full: nothing is deleted" in refused.err
    assert (workspace / "runs" / "m1" / "out.bin").is_file()
    record_heartbeats(store, [Heartbeat(job, os.getpid(), now, (), {}) for job in JOBS])  # safe mode left
    store.dispose()
    done = cli("retention", "run", "--workspace", str(workspace), "--json")
    assert done.code == 0, done.err
    steps = {(s["run_id"], s["target"]): s["action"] for s in json.loads(done.out)["steps"]}
    assert steps == {("m1", "run_dir"): "deleted", ("m1", "bag"): "hold: not_offloaded"}
    assert not (workspace / "runs" / "m1").exists()
    logged = [json.loads(line) for line in (workspace / "logs" / "monitor.jsonl").read_text().splitlines()]
    assert [e["id"] for e in logged if e["type"] == "RUN_PRUNED"] == ["m1:RUN_PRUNED"]
    assert not (workspace / ".monitor" / "events" / "m1.jsonl").exists()  # no spool file left after the bag
