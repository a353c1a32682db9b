"""The fixity audit: its share of the bags, oldest verification first, at a bounded rate; a corrupt bag
is an ARCHIVE_CORRUPT event, an escalation and a mark in the catalog."""

from __future__ import annotations

import json
import os
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from archive_support import add_terminal_run
from orchestrator_monitor.config import AuditSettings, load_settings
from orchestrator_monitor.ledger.catalog import Catalog
from orchestrator_monitor.ledger.store import open_store
from orchestrator_monitor.service.audit import FixityAudit, Throttle, audit_share
from orchestrator_monitor.service.safemode import Condition, Observation
from support import DaemonProcess

NOW = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)


def _archive(cli, workspace: Path, run_ids: list[str]) -> None:
    for run_id in run_ids:
        run_dir = add_terminal_run(workspace, run_id)
        (run_dir / "out.bin").write_bytes(os.urandom(3 << 20))  # three chunks: the throttle is asked thrice
        assert cli("archive", "--workspace", str(workspace), "--run", run_id).code == 0


def _corrupt(bag: Path) -> None:
    target = bag / "data" / "run" / "out.bin"
    os.chmod(target.parent, stat.S_IRWXU)
    os.chmod(target, stat.S_IRUSR | stat.S_IWUSR)
    with target.open("r+b") as handle:
        handle.write(b"\0rot")


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any], str | None]] = []
        self.observed: list[Observation] = []

    def publish(self, type: Any, data: dict[str, Any], *, run_id: str | None = None) -> None:
        self.events.append((str(type), data, run_id))


def _audit(workspace: Path, settings: AuditSettings, recorder: Recorder, rate: int = 0) -> tuple[FixityAudit, list]:
    store = open_store(load_settings(workspace))
    assert store is not None
    clock, waits = [0.0], []

    def wait(seconds: float) -> bool:  # time as the throttle sees it moves only when it waits
        waits.append(seconds)
        clock[0] += seconds
        return False

    throttle = lambda: Throttle(rate, threading.Event(), clock=lambda: clock[0], wait=wait)  # noqa: E731
    audit = FixityAudit(
        Catalog(store),
        settings,
        recorder.publish,
        recorder.observed.append,
        threading.Event(),
        workspace / ".archive",
        throttle=throttle,
    )
    return audit, waits


def test_the_share_reads_every_bag_within_the_cycle() -> None:
    assert audit_share(0, 3600, 30) == 0
    assert audit_share(1, 3600, 30) == 1
    assert audit_share(7200, 3600, 30) == 10  # 720 passes in 30 days
    assert audit_share(10, 86_400 * 60, 30) == 10


def test_a_pass_verifies_the_oldest_verified_first_at_the_rate(cli, workspace: Path) -> None:
    run_ids = ["a1", "a2", "a3", "a4"]
    _archive(cli, workspace, run_ids)
    recorder = Recorder()
    settings = AuditSettings(cycle_days=1, interval_seconds=43_200)  # two passes a cycle: two bags a pass
    audit, waits = _audit(workspace, settings, recorder, rate=1 << 20)
    catalog = audit._catalog
    catalog.record_check("a1", "2026-11-01T00:00:00.000000Z", "ok", None)
    catalog.record_check("a3", "2026-10-01T00:00:00.000000Z", "ok", None)
    first = audit.run_pass(NOW)
    assert first.verified == ["a2", "a4"] and first.corrupt == []  # never verified before the others
    assert catalog.get("a2").verified_at == "2026-12-01T06:00:00.000000Z"
    assert catalog.get("a1").verified_at == "2026-11-01T00:00:00.000000Z"  # not this pass's share
    assert first.bytes_read >= 2 * (3 << 20)
    assert sum(waits) * (1 << 20) == first.bytes_read  # held to 1 MiB/s, as the throttle's clock tells it
    second = audit.run_pass(NOW)
    assert second.verified == ["a3", "a1"]  # then the oldest verification first
    assert {catalog.get(r).verify_result for r in run_ids} == {"ok"} and recorder.events == []


def test_a_corrupt_bag_is_an_event_and_a_mark_in_the_catalog(cli, workspace: Path) -> None:
    _archive(cli, workspace, ["b1", "b2"])
    _corrupt(workspace / ".archive" / "b2")
    recorder = Recorder()
    audit, _ = _audit(workspace, AuditSettings(cycle_days=1, interval_seconds=86_400), recorder)
    done = audit.run_pass(NOW)
    assert done.corrupt == ["b2"]
    [(kind, data, run_id)] = recorder.events
    assert (kind, run_id) == ("ARCHIVE_CORRUPT", "b2") and "data/run/out.bin: checksum mismatch" in data["problems"][0]
    entry = audit._catalog.get("b2")
    assert entry.verify_result == "corrupt" and "out.bin" in entry.verify_detail
    assert [o.condition for o in recorder.observed] == [Condition.CORRUPT]
    listed = cli("archives", "search", "--result", "corrupt", "--workspace", str(workspace), "--tsv").out
    assert [row.split("\t")[0] for row in listed.splitlines()[1:]] == ["b2"]


def test_the_daemon_audits_and_escalates_a_corrupt_bag(cli, workspace: Path, start_daemon) -> None:
    _archive(cli, workspace, ["c1", "c2"])
    _corrupt(workspace / ".archive" / "c1")
    token = "t" * 20
    daemon: DaemonProcess = start_daemon(
        workspace, "audit.interval_seconds=0.5", "audit.cycle_days=0.0001", f"dashboard.token={token}"
    )
    daemon.log.wait_for(lambda log: bool(log.events("ESCALATION")), what="the escalation")
    [event] = daemon.log.events("ARCHIVE_CORRUPT", "c1")[:1]
    assert event["data"]["archive_path"] == str(workspace / ".archive" / "c1")
    [escalation] = daemon.log.events("ESCALATION")[:1]
    assert escalation["data"]["trigger"] == "archive_corrupt" and "c1" in escalation["data"]["detail"]
    assert daemon.get("/api/archives")[0] == 401  # behind the dashboard's token
    status, body = daemon.get("/api/archives?result=corrupt", token)
    document = json.loads(body)
    assert status == 200 and [a["run_id"] for a in document["archives"]] == ["c1"] and document["total"] == 1
    assert document["archives"][0]["verify_result"] == "corrupt"
    status, body = daemon.get("/api/archives?limit=1&offset=1&tool=lint", token)
    assert status == 200 and json.loads(body)["total"] == 2 and len(json.loads(body)["archives"]) == 1
    assert daemon.get("/api/archives?result=rotten", token)[0] == 400
    status, body = daemon.get("/archives?result=corrupt", token)  # the page: a plain table
    assert status == 200 and "<td>c1</td>" in body.decode() and "<td>c2</td>" not in body.decode()
    assert daemon.get("/archives?since=yesterday", token)[0] == 400
    assert daemon.stop()[0] == 0
    shown = cli("archives", "show", "c1", "--workspace", str(workspace), "--json")
    assert '"verify_result": "corrupt"' in shown.out
