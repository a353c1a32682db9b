"""OpenLineage RunEvents from a real daemon, written by the file transport and received by an HTTP endpoint on
loopback: valid under the OpenLineage JSON Schema (pinned in schema/), one START and one terminal event per run, in
order, and still one of each after a restart."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from alerts_support import HttpReceiver
from openlineage.client.transport.file import FileConfig, FileTransport
from orchestrator_monitor.config import OpenLineageSettings
from orchestrator_monitor.events.types import EventType
from orchestrator_monitor.lineage.outbox import lineage_outbox, read_lineage_counts
from orchestrator_monitor.lineage.record import LineageRecord
from orchestrator_monitor.lineage.sink import LineageSink
from support import REPO, DaemonProcess, Writer, free_port

SPEC = json.loads((REPO / "schema" / "openlineage-2-1-0.json").read_text())
FACETS = json.loads((REPO / "schema" / "openlineage-facets.json").read_text())
TERMINAL = {"COMPLETE", "FAIL", "ABORT"}


def check_events(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Validate every event and its custom facets; the event types of each run (by job name), in order."""
    spec = jsonschema.Draft202012Validator(SPEC, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    by_run: dict[str, list[str]] = defaultdict(list)
    run_ids: dict[str, str] = {}
    for event in events:
        spec.validate(event)
        ours = {key: facet for key, facet in event["run"].get("facets", {}).items() if key.startswith("orchestrator")}
        for facet in ours.values():  # the client adds its own (tags): the spec's RunFacet checks those
            definition = facet["_schemaURL"].rpartition("#/$defs/")[2]
            jsonschema.validate(facet, {**FACETS, "$ref": f"#/$defs/{definition}"})
        name = event["job"]["name"]
        assert run_ids.setdefault(name, event["run"]["runId"]) == event["run"]["runId"]  # one UUID per run
        by_run[name].append(event["eventType"])
    return dict(by_run)


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_file_transport_writes_one_start_and_one_end_per_run_valid_and_in_order(
    workspace: Path, start_daemon
) -> None:
    lineage = workspace / "logs" / "openlineage.jsonl"
    options = ("openlineage.enabled=true", "openlineage.transport=file", "openlineage.namespace=lab")
    daemon: DaemonProcess = start_daemon(workspace, *options)
    writer = Writer(workspace)
    writer.add_run("ok-1", ["SUCCEEDED"])
    writer.add_run("mixed-1", ["SUCCEEDED", "FAILED"])
    writer.add_run("kept-1", ["RUNNING"])
    writer.add_run("stopped-1", ["RUNNING"])
    writer.sql("UPDATE runs SET status = 'CANCELLED' WHERE run_id = 'stopped-1'")
    writer.sql("UPDATE tasks SET status = 'CANCELLED' WHERE run_id = 'stopped-1'")

    def ended(path: Path, count: int) -> bool:
        return sum(e["eventType"] == "OTHER" for e in read_lines(path)) == count  # archived: the last word

    daemon.log.wait_for(lambda log: ended(lineage, 3), what="three runs archived in the lineage file")
    assert daemon.stop()[0] == 0
    again: DaemonProcess = start_daemon(workspace, *options)  # kept-1 is seen open again: no second START
    writer.sql("UPDATE tasks SET status = 'FAILED' WHERE run_id = 'kept-1'")
    again.log.wait_for(lambda log: ended(lineage, 4), what="the fourth run archived")
    assert again.stop()[0] == 0
    events = read_lines(lineage)
    assert check_events(events) == {
        "ok-1": ["START", "COMPLETE", "OTHER"],
        "mixed-1": ["START", "FAIL", "OTHER"],
        "kept-1": ["START", "FAIL", "OTHER"],
        "stopped-1": ["START", "ABORT", "OTHER"],
    }
    mixed_end = next(e for e in events if e["job"]["name"] == "mixed-1" and e["eventType"] == "FAIL")
    assert mixed_end["job"]["namespace"] == "lab"
    facets = mixed_end["run"]["facets"]
    assert facets["orchestratorMonitor_outcome"]["status"] == "PARTIAL"
    assert facets["orchestratorMonitor_tasks"] == {**facets["orchestratorMonitor_tasks"], "total": 2}
    archived = next(e for e in events if e["job"]["name"] == "mixed-1" and e["eventType"] == "OTHER")
    bag = archived["run"]["facets"]["orchestratorMonitor_archive"]
    manifest = Path(bag["location"]) / "manifest-sha256.txt"
    assert manifest.exists() and len(bag["manifestSha256"]) == 64


def test_an_http_endpoint_receives_the_events(workspace: Path, start_daemon) -> None:
    receiver = HttpReceiver().start()
    try:
        daemon: DaemonProcess = start_daemon(
            workspace,
            "openlineage.enabled=true",
            f"openlineage.url=http://127.0.0.1:{receiver.port}",
            "openlineage.job_name=nightly",
            "openlineage.api_key=ol-key-0000",
        )
        Writer(workspace).add_run("h-1", ["FAILED"])
        receiver.wait_for(lambda items: len(items) == 3, "START, FAIL and OTHER")
        assert daemon.stop()[0] == 0
    finally:
        receiver.stop()
    assert {path for path, _, _ in receiver.items} == {"/api/v1/lineage"}
    events = [json.loads(body) for _, _, body in receiver.items]
    assert check_events(events) == {"nightly": ["START", "FAIL", "OTHER"]}


def http_options(port: int) -> tuple[str, ...]:
    """An HTTP endpoint on loopback, retried quickly (and for long: the tests decide when it comes back)."""
    return (
        "openlineage.enabled=true",
        f"openlineage.url=http://127.0.0.1:{port}",
        "openlineage.retry_seconds=0.2",
        "openlineage.max_retry_seconds=1.0",
        "openlineage.max_attempts=1000",
        "health.heartbeat_seconds=0.5",
    )


def lineage_pending(workspace: Path) -> int:
    return read_lineage_counts(workspace / ".monitor" / "monitor.db", busy_timeout_seconds=5)["pending"]


def sink_check(daemon: DaemonProcess) -> dict[str, str]:
    """The `openlineage_sink` check in the daemon's `/api/health` (empty before the first heartbeat)."""
    return dict(orjson.loads(daemon.get("/api/health")[1])["checks"].get("openlineage_sink", {}))


def received_in_order(receiver: HttpReceiver) -> dict[str, list[str]]:
    """Each run's event types as the endpoint received them (validated), and no event twice."""
    events = [json.loads(body) for _, _, body in receiver.items]
    sent = [(e["run"]["runId"], e["eventType"]) for e in events]
    assert len(sent) == len(set(sent)), sent
    return check_events(events)


def test_events_wait_while_the_endpoint_is_down_and_arrive_in_order_once_it_returns(
    workspace: Path, start_daemon, cli
) -> None:
    receiver = HttpReceiver(free_port())  # not started: the endpoint is down
    daemon: DaemonProcess = start_daemon(workspace, *http_options(receiver.port))
    Writer(workspace).add_run("down-1", ["FAILED"])
    Writer(workspace).add_run("down-2", ["SUCCEEDED"])
    daemon.log.wait_for(lambda log: len(log.events("RUN_ARCHIVED")) == 2, what="both runs archived")
    daemon.log.wait_for(lambda log: lineage_pending(workspace) == 6, what="six events waiting")
    daemon.log.wait_for(
        lambda log: (
            sink_check(daemon).get("status") == "unreachable" and "6 events waiting" in sink_check(daemon)["detail"]
        ),
        what="the check failing, with six events waiting",
    )
    health_now: list = []  # `health` reads the daemon's last heartbeat, written a moment after /api/health changes
    daemon.log.wait_for(
        lambda log: health_now.append(cli("health", "--workspace", str(workspace))) or health_now[-1].code == 1,
        timeout=60,
        what="`orchestrator health` failing too",
    )
    health = health_now[-1]
    assert "openlineage_sink\tunreachable\thttp://127.0.0.1:" in health.out
    assert "lineage events waiting: 6 (0 undeliverable)" in health.out
    metrics = daemon.get("/metrics")[1].decode()
    failed = next(line for line in metrics.splitlines() if line.startswith("orchestrator_monitor_sink_attempts_failed"))
    assert 'sink="openlineage"' in failed and float(failed.split()[-1]) > 0
    receiver.start()
    try:
        receiver.wait_for(lambda items: len(items) == 6, "the six events once the endpoint is back")
        daemon.log.wait_for(lambda log: sink_check(daemon).get("status") == "ok", what="the check passing again")
        assert daemon.stop()[0] == 0
    finally:
        receiver.stop()
    assert received_in_order(receiver) == {
        "down-1": ["START", "FAIL", "OTHER"],
        "down-2": ["START", "COMPLETE", "OTHER"],
    }


@pytest.mark.slow
def test_events_pending_at_kill_9_are_delivered_after_the_restart_none_twice(
    workspace: Path, start_daemon, cli
) -> None:
    receiver = HttpReceiver(free_port())
    daemon: DaemonProcess = start_daemon(workspace, *http_options(receiver.port))
    for n in range(3):
        Writer(workspace).add_run(f"killed-{n}", ["FAILED"])
    daemon.log.wait_for(lambda log: len(log.events("RUN_ARCHIVED")) == 3, what="three runs archived")
    daemon.log.wait_for(lambda log: lineage_pending(workspace) == 9, what="nine events waiting")
    daemon.kill()
    health = json.loads(cli("health", "--workspace", str(workspace), "--json").out)
    assert health["lineage"] == {"pending": 9, "undeliverable": 0}
    receiver.start()
    try:
        again: DaemonProcess = start_daemon(workspace, *http_options(receiver.port))
        receiver.wait_for(lambda items: len(items) == 9, "the nine events after the restart")
        again.log.wait_for(lambda log: lineage_pending(workspace) == 0, what="the outbox emptied")
        assert again.stop()[0] == 0
    finally:
        receiver.stop()
    assert received_in_order(receiver) == {f"killed-{n}": ["START", "FAIL", "OTHER"] for n in range(3)}


def test_the_bus_hands_the_sink_only_a_runs_first_running(tmp_path: Path) -> None:
    record = LineageRecord(tmp_path / "monitor.db", busy_timeout_seconds=5)
    outbox = lineage_outbox(tmp_path / "monitor.db", busy_timeout_seconds=5)
    settings = OpenLineageSettings(enabled=True, transport="file")
    transport = FileTransport(FileConfig(log_file_path=str(tmp_path / "ol.jsonl")))
    sink = LineageSink(settings, transport, outbox, record, lambda run_id: None)
    changed = EventType.RUN_STATUS_CHANGED
    assert sink.wants(changed, {"from": None, "to": "PENDING"}, "r1") is False
    assert sink.wants(changed, {"from": "PENDING", "to": "RUNNING"}, "r1") is True
    assert sink.wants(changed, {"from": "RUNNING", "to": "RUNNING"}, "r1") is False
    assert sink.wants(changed, {"from": None, "to": "RUNNING"}, "r2") is True
    assert sink.wants(EventType.RUN_COMPLETED, {"status": "FAILED"}, "r1") is True
    sink.close()
