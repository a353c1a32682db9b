from __future__ import annotations

import io
import threading
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import orjson
import pytest
from archive_support import add_terminal_run
from events_support import bus_with_log, status_event
from orchestrator_monitor.config import load_settings
from orchestrator_monitor.errors import BadInput
from orchestrator_monitor.events.log import (
    EventLogReader,
    LineFilter,
    parse_since,
    read_lines,
    refetch_events,
    show_events,
)
from orchestrator_monitor.events.publishing import open_bus
from orchestrator_monitor.events.sinks.spool import RunSpoolSink, read_run_events, remove_run_events, run_events_path
from orchestrator_monitor.events.subscription import Missed
from orchestrator_monitor.events.types import Event, EventType, encode_event
from support import Writer


def test_replay_reads_rotated_files_in_order_with_filters(tmp_path: Path) -> None:
    path = tmp_path / "monitor.jsonl"
    bus, _ = bus_with_log(path, rotate_bytes=8_000, keep_files=50, min_rotate_seconds=0)
    for index in range(300):
        status_event(bus, run_id=f"run-{index % 3}", index=index)
    bus.publish(EventType.HEARTBEAT, {"uptime_s": 1, "safe_mode": False})
    bus.close()
    assert path.with_name("monitor.jsonl.5").exists()
    assert [line["seq"] for line in read_lines(path, LineFilter())] == list(range(1, 302))
    mine = list(read_lines(path, LineFilter(run_id="run-1", since_seq=100, types=frozenset({"RUN_STATUS_CHANGED"}))))
    assert [line["data"]["index"] for line in mine] == list(range(100, 300, 3))
    assert [line["type"] for line in read_lines(path, LineFilter(types=frozenset({"HEARTBEAT"})))] == ["HEARTBEAT"]


def test_following_crosses_rotations_without_missing_or_repeating(tmp_path: Path) -> None:
    path = tmp_path / "monitor.jsonl"
    bus, _ = bus_with_log(path, rotate_bytes=4_000, keep_files=500, min_rotate_seconds=0)
    reader = EventLogReader(path)
    seen: list[int] = []
    for index in range(600):
        status_event(bus, index=index)
        if index % 50 == 0:
            seen += [line["seq"] for line in reader.read_new()]
    bus.close()
    seen += [line["seq"] for line in reader.read_new()]
    reader.close()
    assert seen == list(range(1, 601))


def test_in_file_order_a_reader_keeps_lines_below_one_seen_after_a_seq(tmp_path: Path) -> None:
    """Another process's line (a later seq block) between the daemon's: by seq it hides what follows."""
    path = tmp_path / "monitor.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"seq": seq, "type": "log"}) + b"\n" for seq in (4, 5, 10_001, 6, 7)))
    by_seq = EventLogReader(path, after_seq=4)
    in_order = EventLogReader(path, after_seq=4, in_file_order=True)
    assert [line["seq"] for line in by_seq.read_new()] == [5, 10_001]
    assert [line["seq"] for line in in_order.read_new()] == [5, 10_001, 6, 7]
    assert in_order.last_seq == 10_001
    by_seq.close()
    in_order.close()


def test_a_refetch_keeps_the_range_whole_past_a_line_of_another_process(tmp_path: Path) -> None:
    path = tmp_path / "monitor.jsonl"
    events = [
        Event(seq, "2026-12-01T00:00:00.000000Z", EventType.HEARTBEAT, f"id-{seq}", {"uptime_s": seq, "safe_mode": []})
        for seq in (1, 2, 3, 4, 5, 10_001, 6, 7, 8, 9)
    ]
    path.write_bytes(b"".join(encode_event(event) for event in events))
    assert [event.seq for event in refetch_events(path, Missed(3, 8, 6), None)] == [3, 4, 5, 6, 7, 8]


def test_a_half_written_last_line_waits_for_its_end_and_garbage_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "monitor.jsonl"
    line = orjson.dumps({"time": "2026-01-01T00:00:00.000Z", "type": "log", "seq": 7, "message": "m"})
    path.write_bytes(b"not json\n" + line[:10])
    reader = EventLogReader(path)
    assert list(reader.read_new()) == [] and reader.skipped == 1
    with path.open("ab") as handle:
        handle.write(line[10:] + b"\n")
    assert [found["seq"] for found in reader.read_new()] == [7]
    reader.close()


def test_since_takes_a_seq_an_age_or_a_time() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_since("42", now) == (42, None)
    assert parse_since("15m", now) == (None, "2026-01-01T11:45:00.000000Z")
    assert parse_since("2026-01-01 10:00:00", now) == (None, "2026-01-01T10:00:00.000000Z")
    with pytest.raises(BadInput, match="--since 'yesterday'"):
        parse_since("yesterday", now)


def test_a_runs_events_stay_in_its_spool_whatever_rotation_did_until_removed(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "monitor.jsonl"
    bus, _ = bus_with_log(log, rotate_bytes=4096, keep_files=1, min_rotate_seconds=0)
    bus.add_sink(RunSpoolSink(tmp_path / ".monitor", queue_size=100))
    first = bus.publish(EventType.RUN_STALLED, {"idle_s": 900}, run_id="run-a")
    published: dict[str, list[int]] = {"run-a": [first], "run-b": []}
    for index in range(500):
        run_id = "run-a" if index % 7 == 3 else "run-b"  # interleaved within the writer's chunks
        published[run_id].append(status_event(bus, run_id=run_id, index=index))
    last = bus.publish(EventType.RUN_REOPENED, {"what": "a task"}, run_id="run-a")
    published["run-a"].append(last)
    bus.close()
    assert first not in {line["seq"] for line in read_lines(log, LineFilter())}  # rotated away
    for run_id, seqs in published.items():
        assert [event.seq for event in read_run_events(tmp_path / ".monitor", run_id)] == seqs
    remove_run_events(tmp_path / ".monitor", "run-a")
    assert read_run_events(tmp_path / ".monitor", "run-a") == []


def test_the_events_command_filters_prints_json_and_refuses_bad_input(tmp_path: Path, cli: object) -> None:
    settings = load_settings(tmp_path, environ={}, overrides=["events.sinks="])
    with open_bus(settings) as bus:
        for index in range(5):
            status_event(bus, run_id="run-x" if index % 2 else "run-y", index=index)
    ws = ("--workspace", str(tmp_path))
    result = cli("events", *ws, "--run", "run-x", "--json")  # type: ignore[operator]
    assert result.code == 0
    assert [orjson.loads(line)["data"]["index"] for line in result.out.splitlines()] == [1, 3]
    result = cli("events", *ws, "--since", "4", "--type", "RUN_STATUS_CHANGED")  # type: ignore[operator]
    assert result.code == 0 and len(result.out.splitlines()) == 2 and "run-y" in result.out
    for bad in (["--run", "../x"], ["--type", "NOPE"], ["--since", "soon"]):
        result = cli("events", *ws, *bad)  # type: ignore[operator]
        assert result.code == 2 and result.err.startswith("orchestrator: error:")


def test_an_unreadable_log_is_a_clear_error(tmp_path: Path, cli: object) -> None:
    log = tmp_path / "logs" / "monitor.jsonl"
    log.parent.mkdir()
    log.mkdir()  # a directory where the file should be: unreadable as a log, for root too
    result = cli("events", "--workspace", str(tmp_path))  # type: ignore[operator]
    assert result.code == 3 and "cannot read the event log" in result.err


class Screen(io.StringIO):
    """What `events --follow` printed so far, with a way to wait for a line to appear."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()

    def write(self, text: str) -> int:
        with self.changed:
            written = super().write(text)
            self.changed.notify_all()
        return written

    def wait_for(self, text: str) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: text in self.getvalue(), timeout=10), self.getvalue()


def test_following_a_run_shows_each_new_event_once_and_stops_when_asked(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={}, overrides=["events.sinks="])
    completed = {"status": "COMPLETED", "marked_by": "monitor", "tasks": 1}
    screen, stop, result = Screen(), threading.Event(), []
    with open_bus(settings) as bus:
        bus.publish(EventType.RUN_COMPLETED, completed, run_id="run-x")
        bus.flush()
        follow = partial(show_events, settings, screen, run_id="run-x", follow=True, as_json=True, stop=stop)
        thread = threading.Thread(target=lambda: result.append(follow()))
        thread.start()
        screen.wait_for("RUN_COMPLETED")
        bus.publish(EventType.RUN_COMPLETED, completed, run_id="run-x")  # a repeat after a crash: the same id
        status_event(bus, run_id="run-y", index=0)
        bus.publish(EventType.RUN_STALLED, {"idle_s": 900}, run_id="run-x")
        bus.flush()
        screen.wait_for("RUN_STALLED")
    stop.set()
    thread.join(10)
    assert result == [0]
    assert [orjson.loads(line)["type"] for line in screen.getvalue().splitlines()] == ["RUN_COMPLETED", "RUN_STALLED"]


def test_an_archived_runs_events_go_on_past_its_bag_to_the_archive_and_reports(workspace: Path, cli: object) -> None:
    settings = load_settings(workspace, environ={}, overrides=["events.sinks="])
    add_terminal_run(workspace, "r1")
    with open_bus(settings) as bus:
        bus.publish(EventType.RUN_COMPLETED, {"status": "COMPLETED", "marked_by": "monitor", "tasks": 3}, run_id="r1")
    ws = ("--workspace", str(workspace))
    assert cli("archive", *ws, "--run", "r1").code == 0  # type: ignore[operator]
    assert not run_events_path(workspace / ".monitor", "r1").exists()  # reported: the spool is gone, the bag stays
    # The log rotated since: what came before ARCHIVE_STARTED is only in the bag now, what came
    # after only in the rotated file; the current file has a repeat (same id) after a crash.
    log = workspace / "logs" / "monitor.jsonl"
    lines = [orjson.loads(raw) for raw in log.read_bytes().splitlines()]
    started = next(n for n, line in enumerate(lines) if line["type"] == "ARCHIVE_STARTED")
    log.with_name("monitor.jsonl.1").write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines[started + 1 :]))
    report = next(line for line in lines if line["type"] == "REPORT_GENERATED")
    log.write_bytes(orjson.dumps({**report, "seq": lines[-1]["seq"] + 1}) + b"\n")

    result = cli("events", *ws, "--run", "r1", "--json")  # type: ignore[operator]
    assert result.code == 0, result.err
    shown = [orjson.loads(line) for line in result.out.splitlines()]
    assert [line["type"] for line in shown] == ["RUN_COMPLETED", "ARCHIVE_STARTED", "RUN_ARCHIVED", "REPORT_GENERATED"]
    assert [line["seq"] for line in shown] == sorted(line["seq"] for line in shown)
    archived = cli("events", *ws, "--run", "r1", "--type", "RUN_ARCHIVED")  # type: ignore[operator]
    assert archived.code == 0 and len(archived.out.splitlines()) == 1 and "RUN_ARCHIVED" in archived.out


def test_a_run_nothing_knows_is_bad_input_even_without_a_database(workspace: Path, cli: object) -> None:
    Writer(workspace).add_run("quiet", ["RUNNING"])  # in the database, no event yet
    settings = load_settings(workspace, environ={}, overrides=["events.sinks="])
    with open_bus(settings) as bus:
        status_event(bus, run_id="logged", index=0)
    ws = ("--workspace", str(workspace))
    quiet = cli("events", *ws, "--run", "quiet")  # type: ignore[operator]
    assert (quiet.code, quiet.out, quiet.err) == (0, "", "")
    unknown = cli("events", *ws, "--run", "nope-1")  # type: ignore[operator]
    assert unknown.code == 2 and unknown.out == ""
    assert unknown.err.startswith("orchestrator: error: unknown run: nope-1") and unknown.err.count("\n") == 1
    for leftover in (workspace / ".state").iterdir():
        leftover.unlink()  # no database: the log still answers, and knows no nope-1
    assert cli("events", *ws, "--run", "logged").code == 0  # type: ignore[operator]
    assert cli("events", *ws, "--run", "nope-1").code == 2  # type: ignore[operator]
    malformed = cli("events", *ws, "--run", "../nope")  # type: ignore[operator]
    assert malformed.code == 2 and malformed.err.startswith("orchestrator: error: invalid run id")


def test_events_on_a_missing_workspace_exit_3_naming_it_and_create_nothing(tmp_path: Path, cli: object) -> None:
    typo = tmp_path / "wrokspace"
    result = cli("events", "--workspace", str(typo))  # type: ignore[operator]
    assert result.code == 3 and result.out == "" and result.err.count("\n") == 1
    assert result.err.startswith(f"orchestrator: error: workspace {typo} does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("events", "--workspace", str(empty), "--run", "r1")  # type: ignore[operator]
    assert result.code == 3 and result.err.count("\n") == 1 and f"{empty} is not a workspace" in result.err
    assert list(tmp_path.iterdir()) == [empty] and list(empty.iterdir()) == []
