"""The nats sink against real NATS servers: every event once, in order, through outages and restarts."""

from __future__ import annotations

import signal
import socket
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from nats_support import NatsServer, NatsStream, StoredMessage
from orchestrator_monitor.config import NatsSettings, load_settings
from orchestrator_monitor.errors import BadInput
from orchestrator_monitor.events.sinks import load_sink
from orchestrator_monitor.events.sinks.cursor import SentCursor
from orchestrator_monitor.events.sinks.jetstream import JetStreamPublisher
from orchestrator_monitor.events.sinks.jsonl import MONITOR_LOG, rotated_path
from orchestrator_monitor.events.sinks.nats import NatsSink
from orchestrator_monitor.events.types import Event, EventType, encode_event
from support import DaemonProcess, EventLog, Writer, free_port, run_process

OUTAGE_LINE = "NATS sink: "


def event_lines(log: EventLog) -> list[dict[str, Any]]:
    return [line for line in log.read() if line["type"] != "log"]


def outage_lines(log: EventLog) -> list[str]:
    """What the sink said about NATS going and coming (ERROR and WARNING lines)."""
    return [
        line["message"]
        for line in log.read()
        if line["type"] == "log" and line["level"] in ("ERROR", "WARNING") and OUTAGE_LINE in line["message"]
    ]


def reported(log: EventLog, runs: list[str]) -> bool:
    return {e["run_id"] for e in log.events("REPORT_GENERATED")} >= set(runs)


def finish_runs(workspace: Path, daemon: DaemonProcess, runs: list[str]) -> None:
    """Runs that end, and the daemon's whole chain for them: marked, archived, reported."""
    writer = Writer(workspace)
    for run_id in runs:
        writer.add_run(run_id, ["SUCCEEDED", "SUCCEEDED", "FAILED"])
    daemon.log.wait_for(lambda log: reported(log, runs), what=f"reports of {runs}")


def sink_check(daemon: DaemonProcess) -> str:
    """The status of the `nats_sink` check in the daemon's `/api/health` ("" before the first heartbeat)."""
    status, body = daemon.get("/api/health")
    assert status in (200, 503), body
    return str(orjson.loads(body)["checks"].get("nats_sink", {}).get("status", ""))


def status_event(seq: int) -> Event:
    data = {"from": "RUNNING", "to": "COMPLETED"}
    return Event(seq, f"2026-12-01T00:00:00.{seq:06d}Z", EventType.RUN_STATUS_CHANGED, f"id-{seq}", data, f"r{seq % 3}")


def holds_every_event(stream: NatsStream, log: EventLog) -> Any:
    return lambda messages: {m.line["id"] for m in messages} >= {line["id"] for line in event_lines(log)}


def assert_every_event_once(stream: NatsStream, messages: list[StoredMessage], log: EventLog) -> None:
    """Each event of the log stored once, as its line, with its headers; each run's events in order."""
    events = event_lines(log)
    assert Counter(m.line["id"] for m in messages) == Counter(line["id"] for line in events)
    by_id = {line["id"]: line for line in events}
    for message in messages:
        line = by_id[message.line["id"]]
        assert message.line == line
        assert message.subject == f"{stream.prefix}.{line['type']}"
        assert message.headers["Nats-Msg-Id"] == line["id"]
        assert message.headers.get("Orchestrator-Run") == line.get("run_id")
    runs = {line["run_id"] for line in events if "run_id" in line}
    assert runs
    for run_id in runs:
        stored = [m.line["seq"] for m in messages if m.line.get("run_id") == run_id]
        assert stored == sorted(stored), f"run {run_id} out of order in the stream"


def test_a_consumer_gets_every_event_of_a_daemon_once_in_order(
    workspace: Path, start_daemon: Any, nats_stream: NatsStream
) -> None:
    daemon = start_daemon(workspace, *nats_stream.settings())
    finish_runs(workspace, daemon, ["a", "b", "c"])
    code, err = daemon.stop()
    assert code == 0, err
    assert daemon.log.read()[-1]["type"] == "MONITOR_STOPPED"
    assert_every_event_once(nats_stream, nats_stream.messages(), daemon.log)
    assert not outage_lines(daemon.log)


@pytest.mark.slow
def test_nats_killed_and_restarted_mid_run_loses_nothing(
    workspace: Path, start_daemon: Any, private_nats: NatsServer
) -> None:
    stream = NatsStream.fresh(private_nats.url)
    daemon = start_daemon(workspace, *stream.settings(), "health.heartbeat_seconds=0.2")
    finish_runs(workspace, daemon, ["a", "b"])
    stream.wait_for(holds_every_event(stream, daemon.log), what="the first runs' events")
    daemon.log.wait_for(lambda _: sink_check(daemon) == "ok", what="nats_sink ok in /api/health")

    private_nats.kill()
    finish_runs(workspace, daemon, ["c", "d"])
    daemon.log.wait_for(lambda log: bool(outage_lines(log)), what="the outage logged")
    daemon.log.wait_for(lambda _: sink_check(daemon) == "unreachable", what="the outage in /api/health")
    assert b'sink_outages_total{sink="nats"} 1.0' in daemon.get("/metrics")[1]
    private_nats.start()
    finish_runs(workspace, daemon, ["e"])
    stream.wait_for(holds_every_event(stream, daemon.log), what="the events missed in the outage")
    daemon.log.wait_for(lambda _: sink_check(daemon) == "ok", what="nats_sink ok again")

    code, err = daemon.stop()
    assert code == 0, err
    assert_every_event_once(stream, stream.messages(), daemon.log)
    assert len(outage_lines(daemon.log)) == 2  # out once, back once: not a line per event
    assert "is reachable again" in outage_lines(daemon.log)[1]


@pytest.mark.slow
def test_a_daemon_restarted_after_an_outage_sends_what_it_missed(
    workspace: Path, start_daemon: Any, private_nats: NatsServer
) -> None:
    stream = NatsStream.fresh(private_nats.url)
    first = start_daemon(workspace, *stream.settings())
    finish_runs(workspace, first, ["a"])
    stream.wait_for(holds_every_event(stream, first.log), what="run a's events")
    private_nats.kill()
    finish_runs(workspace, first, ["b"])
    code, err = first.stop()  # NATS is still out: the daemon stops all the same, within 10 s
    assert code == 0, err

    private_nats.start()
    second = start_daemon(workspace, *stream.settings())
    stream.wait_for(holds_every_event(stream, second.log), what="run b's events, sent from the log")
    code, err = second.stop()
    assert code == 0, err
    assert_every_event_once(stream, stream.messages(), second.log)


def test_an_event_sent_twice_is_stored_once(nats_stream: NatsStream) -> None:
    options = NatsSettings(servers=[nats_stream.url], stream=nats_stream.name, subject_prefix=nats_stream.prefix)
    data = {"status": "COMPLETED", "marked_by": "monitor", "tasks": {"SUCCEEDED": 1}}
    event = Event(7, "2026-12-01T00:00:00.000000Z", EventType.RUN_COMPLETED, "r1:RUN_COMPLETED", data, "r1", "d-1")
    for _ in range(2):  # a daemon that crashed before saving its cursor sends the event again
        publisher = JetStreamPublisher(options)
        publisher.connect()
        assert publisher.publish([event]) == 1
        publisher.close()
    [stored] = nats_stream.messages()
    assert stored.line == orjson.loads(orjson.dumps(event.to_json()))
    assert stored.headers == {
        "Nats-Msg-Id": "r1:RUN_COMPLETED",
        "Orchestrator-Run": "r1",
        "Orchestrator-Daemon": "d-1",
    }


def test_an_unreachable_server_at_start_is_one_clear_line_and_the_daemon_runs_on(
    workspace: Path, start_daemon: Any
) -> None:
    url = f"nats://127.0.0.1:{free_port()}"  # nobody listens there
    daemon = start_daemon(workspace, *NatsStream.fresh(url).settings())
    daemon.log.wait_for(lambda log: bool(outage_lines(log)), what="the line about NATS")
    finish_runs(workspace, daemon, ["a", "b"])  # the daemon does its work; the sink keeps trying
    code, err = daemon.stop(signal.SIGTERM)
    assert code == 0, err
    [line] = outage_lines(daemon.log)
    assert f"NATS ({url})" in line and "refused" in line


def test_bad_nats_settings_are_one_line_without_the_password(tmp_path: Path) -> None:
    environ = {"ORCHESTRATOR_NATS_SERVERS": "http://monitor:s3cret@nats.example:4222"}
    with pytest.raises(BadInput) as caught:
        load_settings(tmp_path, environ=environ)
    message = str(caught.value)
    assert "nats.servers" in message and "ORCHESTRATOR_NATS_SERVERS" in message
    assert "s3cret" not in message and "\n" not in message
    settings = load_settings(tmp_path, environ={"ORCHESTRATOR_NATS_SERVERS": "nats://a:4222, nats://b:4222"})
    assert settings.nats.servers == ["nats://a:4222", "nats://b:4222"]


@pytest.mark.slow
def test_a_server_that_never_answers_holds_up_neither_the_daemon_nor_sigterm(
    workspace: Path, start_daemon: Any
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel completes connections; nobody speaks
        url = f"nats://127.0.0.1:{silent.getsockname()[1]}"
        daemon = start_daemon(workspace, *NatsStream.fresh(url).settings(), "nats.connect_timeout_seconds=30")
        finish_runs(workspace, daemon, ["a", "b"])
        code, err = daemon.stop(timeout=10)  # the spec's bound for SIGTERM; a connection attempt is under way
    assert code == 0, err


def test_a_token_from_its_file_is_used_and_never_shown(workspace: Path, start_daemon: Any, tmp_path: Path) -> None:
    token = "t0ken-" + "x" * 20
    server = NatsServer(tmp_path / "auth-store", free_port(), "--auth", token)
    server.start()
    try:
        (workspace / "nats.token").write_text(token + "\n")
        stream = NatsStream.fresh(server.url, token)
        daemon = start_daemon(workspace, *stream.settings(), "nats.token_file=nats.token")
        finish_runs(workspace, daemon, ["a"])
        code, err = daemon.stop()
        assert code == 0, err
        assert_every_event_once(stream, stream.messages(), daemon.log)
    finally:
        server.kill()
    assert token not in (workspace / "logs" / "monitor.jsonl").read_text() + err


def test_a_missing_token_file_is_one_clear_line(workspace: Path) -> None:
    result = run_process(
        "daemon",
        "--workspace",
        str(workspace),
        "--set",
        "events.sinks=nats",
        "--set",
        "nats.token_file=/nonexistent/nats.token",
    )
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "orchestrator: error: nats.token_file: cannot read /nonexistent/nats.token: No such file or directory"
    ]


def test_a_cursor_that_is_not_one_starts_afresh_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "nats-S.cursor"
    path.write_text("{not json")
    assert SentCursor.load(path).seq is None
    assert "cannot read the cursor" in caplog.text
    cursor = SentCursor(path, None)
    cursor.advance(41)
    cursor.save()
    assert SentCursor.load(path).seq == 41


def test_events_resent_after_a_lost_cursor_are_stored_once(
    workspace: Path, start_daemon: Any, nats_stream: NatsStream
) -> None:
    first = start_daemon(workspace, *nats_stream.settings())
    finish_runs(workspace, first, ["a", "b"])
    assert first.stop()[0] == 0
    cursor = workspace / ".monitor" / f"nats-{nats_stream.name}.cursor"
    assert orjson.loads(cursor.read_bytes())["seq"] == event_lines(first.log)[-1]["seq"]
    cursor.write_bytes(orjson.dumps({"seq": 0}))  # as if a crash had lost it: everything is sent again

    second = start_daemon(workspace, *nats_stream.settings())
    finish_runs(workspace, second, ["c"])
    # said while the daemon runs (its resend thread looks every 0.2 s): a daemon stopped sooner sends
    # what it owes at close, when its own log sink may already be closed
    second.log.wait_for(
        lambda log: any(
            "events of an earlier run of the daemon sent" in line["message"]
            for line in log.read()
            if line["type"] == "log"
        ),
        what="the resend's log line",
    )
    code, err = second.stop()
    assert code == 0, err
    assert_every_event_once(nats_stream, nats_stream.messages(), second.log)


def test_without_nats_py_the_sink_says_which_extra_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nats", None)  # as if nats-py were not installed
    for module in ("orchestrator_monitor.events.sinks.nats", "orchestrator_monitor.events.sinks.jetstream"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(BadInput, match=r"sink plug-in 'nats' .*install the nats extra \(pip install"):
        load_sink("nats", load_settings(tmp_path, environ={}))


def test_what_was_missed_is_sent_from_rotated_log_files_too(tmp_path: Path, nats_stream: NatsStream) -> None:
    """A long outage: the events it missed were rotated to monitor.jsonl.2 and .1 meanwhile."""
    events = [status_event(seq) for seq in range(1, 31)]
    log = tmp_path / "logs" / MONITOR_LOG
    log.parent.mkdir()
    for path, part in ((rotated_path(log, 2), events[:10]), (rotated_path(log, 1), events[10:20]), (log, events[20:])):
        path.write_bytes(b"".join(encode_event(event) for event in part))
    options = NatsSettings(servers=[nats_stream.url], stream=nats_stream.name, subject_prefix=nats_stream.prefix)
    sink = NatsSink(JetStreamPublisher(options), SentCursor(tmp_path / "cursor", 0), log)
    try:
        sink.handle(events[-1])  # the daemon's next event after its restart: the resend thread starts
        nats_stream.wait_for(lambda messages: len(messages) == len(events), what="all 30 events")
    finally:
        sink.close()
    assert [m.line["seq"] for m in nats_stream.messages()] == list(range(1, 31))
    assert SentCursor.load(tmp_path / "cursor").seq == 30
    assert sink.health().counters == {"outages": 0, "resent": 30}


def test_lines_of_another_process_in_between_hold_back_none_of_the_daemons(
    tmp_path: Path, nats_stream: NatsStream
) -> None:
    """`orchestrator archive` run beside the daemon numbers its events from a later block, so its lines
    sit between the daemon's with higher seqs; the daemon's events after them are sent all the same."""
    daemon = [status_event(seq) for seq in range(1, 25)]
    other = status_event(10_001)
    log = tmp_path / MONITOR_LOG
    log.write_bytes(b"".join(encode_event(event) for event in [*daemon[:10], other, *daemon[10:20]]))
    options = NatsSettings(servers=[nats_stream.url], stream=nats_stream.name, subject_prefix=nats_stream.prefix)
    sink = NatsSink(JetStreamPublisher(options), SentCursor(tmp_path / "cursor", 0), log)
    try:
        sink.handle(daemon[19])  # dropped while the resend thread starts: sent from the log
        nats_stream.wait_for(lambda messages: len(messages) == 21, what="the log's 21 events")
        for event in daemon[20:]:  # live again
            sink.handle(event)
    finally:
        sink.close()
    assert [m.line["seq"] for m in nats_stream.messages()] == [*range(1, 11), 10_001, *range(11, 25)]


def test_a_sink_behind_its_queue_bound_gets_the_rest_from_the_log(
    workspace: Path, start_daemon: Any, nats_stream: NatsStream
) -> None:
    """The bus never waits for the sink: past `subscriber_queue_size` it hands a Missed marker instead."""
    daemon = start_daemon(workspace, *nats_stream.settings(), "events.subscriber_queue_size=2")
    finish_runs(workspace, daemon, [f"r{n}" for n in range(30)])
    code, err = daemon.stop()
    assert code == 0, err
    assert any("sink nats fell behind" in line.get("message", "") for line in daemon.log.read())
    assert_every_event_once(nats_stream, nats_stream.messages(), daemon.log)
