"""Archives made by `orchestrator archive`: layout, safety, names, fixity, idempotence, resume, exit codes."""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import pytest
from archive_support import add_terminal_run, assert_bagit_valid, assert_reports_valid, bag_files, manifest_paths
from orchestrator_monitor.archive import staging
from orchestrator_monitor.archive.archiver import fetch_terminal_run
from orchestrator_monitor.archive.chunks import chunk_buffer
from orchestrator_monitor.archive.failures import ArchiveFailure, Interrupted
from orchestrator_monitor.archive.tree import RunDir
from orchestrator_monitor.config import Settings, load_settings
from orchestrator_monitor.finish.pipeline import open_pipeline
from orchestrator_monitor.ledger.runs import Ledger
from orchestrator_monitor.ledger.store import sqlite_store
from support import EventLog

SECRET = b"outside-the-run-directory-8d2f1c"


def events_of(workspace: Path, type: str) -> list[dict]:
    return EventLog(workspace).events(type)


@pytest.mark.timeout(60)  # a FIFO that were opened would hang here
def test_a_run_becomes_a_valid_read_only_bag_and_nothing_outside_is_read(workspace: Path, cli, tmp_path: Path) -> None:
    run_dir = add_terminal_run(workspace, "r1", status="PARTIAL")
    add_terminal_run(workspace, "other")
    (run_dir / "logs").mkdir()
    (run_dir / "logs" / "task.log").write_bytes(b"line\n" * 1000)
    (run_dir / "empty").write_bytes(b"")
    (run_dir / "big.bin").write_bytes(os.urandom(3 << 20))
    os.link(run_dir / "big.bin", run_dir / "big-again.bin")
    with (run_dir / "sparse").open("wb") as handle:
        handle.truncate(64 << 20)  # 64 MiB apparent, nothing allocated
    (tmp_path / "secret").write_bytes(SECRET)
    (run_dir / "to-secret").symlink_to(tmp_path / "secret")
    (run_dir / "to-dir").symlink_to(tmp_path)
    os.mkfifo(run_dir / "pipe")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(run_dir / "sock"))

    result = cli("archive", "--run", "r1", "--workspace", str(workspace))
    listener.close()
    assert result.code == 0, result.err
    bag = workspace / ".archive" / "r1"
    assert_bagit_valid(bag)
    assert cli("verify", "--run", "r1", "--workspace", str(workspace)).code == 0
    assert manifest_paths(bag) == {
        "data/run/logs/task.log", "data/run/empty", "data/run/big.bin", "data/run/big-again.bin",
        "data/run/sparse", "data/logs/events.jsonl", "data/state/run.sqlite3",
    }  # fmt: skip
    assert os.stat(bag / "data/run/big.bin").st_ino == os.stat(bag / "data/run/big-again.bin").st_ino
    assert (bag / "data/run/sparse").stat().st_size == 64 << 20
    assert all(SECRET not in path.read_bytes() for path in bag_files(bag))
    assert (bag / "links.txt").read_text() == f"data/run/to-dir\t{tmp_path}\ndata/run/to-secret\t{tmp_path}/secret\n"
    assert (bag / "special-files.txt").read_text() == "data/run/pipe\tfifo\ndata/run/sock\tsocket\n"
    info = (bag / "bag-info.txt").read_text()
    assert "Run-Id: r1\n" in info and "Run-Status: PARTIAL\n" in info and "Bagging-Date: " in info
    assert all(not os.access(path, os.W_OK) or os.geteuid() == 0 for path in bag_files(bag))
    assert all(path.stat().st_mode & 0o222 == 0 for path in bag_files(bag))
    assert bag.stat().st_mode & 0o222 == 0

    snapshot = sqlite3.connect(bag / "data/state/run.sqlite3")
    assert snapshot.execute("SELECT run_id, status FROM runs").fetchall() == [("r1", "PARTIAL")]
    assert {row[0] for row in snapshot.execute("SELECT run_id FROM tasks")} == {"r1"}
    assert snapshot.execute("SELECT status FROM archival_log").fetchall() == [("STARTED",)]
    lines = [orjson.loads(line) for line in (bag / "data/logs/events.jsonl").read_bytes().splitlines()]
    assert [line["type"] for line in lines] == ["ARCHIVE_STARTED"]

    archived = events_of(workspace, "RUN_ARCHIVED")
    assert [e["id"] for e in archived] == ["r1:RUN_ARCHIVED"]
    assert archived[0]["data"]["files"] == 7
    assert archived[0]["data"]["bytes"] == sum((bag / p).stat().st_size for p in manifest_paths(bag))
    state = sqlite3.connect(workspace / ".state" / "orchestration.db")
    rows = state.execute("SELECT status, file_count, manifest_sha256 FROM archival_log WHERE run_id = 'r1'").fetchall()
    assert rows == [("STARTED", None, None), ("SUCCEEDED", 7, archived[0]["data"]["manifest_sha256"])]
    reports = assert_reports_valid(workspace, "r1")  # the bag's facts, as the pipeline hands them to the reports
    assert reports["metrics"]["archive"]["files"] == 7
    assert reports["summary"]["archive"] == {
        "path": str(bag),
        "archived": True,
        "manifest_sha256": archived[0]["data"]["manifest_sha256"],
    }
    assert not (workspace / ".monitor" / "events" / "r1.jsonl").exists()
    assert not (workspace / ".archive" / ".staging").exists()

    again = cli("archive", "--run", "r1", "--workspace", str(workspace))
    assert again.code == 0 and "already archived" in again.out
    assert len(events_of(workspace, "RUN_ARCHIVED")) == 1 and len(events_of(workspace, "ARCHIVE_STARTED")) == 1


def test_a_bag_published_just_before_a_kill_gets_its_succeeded_row_on_the_retry(workspace: Path, cli) -> None:
    (add_terminal_run(workspace, "crashed") / "f").write_text("payload")
    assert cli("archive", "--run", "crashed", "--workspace", str(workspace)).code == 0
    state = sqlite3.connect(workspace / ".state" / "orchestration.db")
    with state:  # as a kill between the rename and the archival_log row leaves it: only STARTED
        state.execute("DELETE FROM archival_log WHERE status = 'SUCCEEDED'")
    for _ in range(2):
        again = cli("archive", "--run", "crashed", "--workspace", str(workspace))
        assert again.code == 0 and "already archived" in again.out
    rows = state.execute("SELECT status, file_count, manifest_sha256 FROM archival_log WHERE run_id = 'crashed'")
    archived = events_of(workspace, "RUN_ARCHIVED")[0]["data"]
    assert rows.fetchall() == [("STARTED", None, None), ("SUCCEEDED", 3, archived["manifest_sha256"])]


def test_a_symlink_in_the_middle_of_the_run_dir_is_never_followed(workspace: Path, cli, tmp_path: Path) -> None:
    (tmp_path / "outside" / "sub").mkdir(parents=True)
    (tmp_path / "outside" / "sub" / "secret").write_bytes(SECRET)
    (tmp_path / "outside" / "sub" / "link").symlink_to("/etc/passwd")
    add_terminal_run(workspace, "deep").rmdir()
    (workspace / "runs" / "deep").symlink_to(tmp_path / "outside")
    sql = sqlite3.connect(workspace / ".state" / "orchestration.db")
    with sql:
        sql.execute("UPDATE runs SET run_dir = 'runs/deep/sub' WHERE run_id = 'deep'")
    result = cli("archive", "--run", "deep", "--workspace", str(workspace))
    assert result.code == 1 and "unsafe_run_dir" in result.err and "deep is a symbolic link" in result.err
    assert events_of(workspace, "ARCHIVE_FAILED")[-1]["data"]["reason"] == "unsafe_run_dir"
    assert not (workspace / ".archive" / "deep").exists()


def test_odd_names_are_kept_and_verified(workspace: Path, cli) -> None:
    run_dir = add_terminal_run(workspace, "names")
    odd = ["ünïcødé ✓.txt", "with space.txt", "100%.txt", "%41 literal", "new\nline.txt", "carriage\rreturn",
           "  leading and trailing  ", "tab\tand\x0cform feed", "line\u2028separator"]  # fmt: skip
    for number, name in enumerate(odd):
        (run_dir / name).write_text(f"content {number}")
    (run_dir / "dir with %").mkdir()
    (run_dir / "dir with %" / "inner\nname").write_text("inner")
    undecodable = os.path.join(os.fsencode(run_dir), b"caf\xe9-\xff.bin")
    with open(undecodable, "wb") as handle:
        handle.write(b"latin-1 named content")

    assert cli("archive", "--run", "names", "--workspace", str(workspace)).code == 0
    bag = workspace / ".archive" / "names"
    result = cli("verify", "--run", "names", "--workspace", str(workspace))
    assert result.code == 0, result.err
    manifest = (bag / "manifest-sha256.txt").read_text()
    assert "data/run/100%25.txt" in manifest and "data/run/new%0Aline.txt" in manifest
    assert "data/run/carriage%0Dreturn" in manifest and "data/run/%2541 literal" in manifest
    assert (bag / "data/run/new\nline.txt").read_text() == "content 4"
    assert (bag / "data/run/  leading and trailing  ").read_text() == "content 6"  # found by bench/chaos.py
    specials = (bag / "special-files.txt").read_text().splitlines()
    assert len(specials) == 1
    shown, kind, stored = specials[0].split("\t")
    assert (shown, kind) == ("data/run/caf%E9-%FF.bin", "undecodable-name")
    assert (bag / stored).read_bytes() == b"latin-1 named content"


def test_unicode_and_undecodable_names_satisfy_the_pypi_validator(workspace: Path, cli) -> None:
    run_dir = add_terminal_run(workspace, "plain-odd")
    (run_dir / "ünïcødé ✓ space.txt").write_text("u")
    with open(os.path.join(os.fsencode(run_dir), b"\xfe\xfe"), "wb") as handle:
        handle.write(b"x")
    assert cli("archive", "--run", "plain-odd", "--workspace", str(workspace)).code == 0
    assert_bagit_valid(workspace / ".archive" / "plain-odd")


def test_verify_names_each_mismatch_missing_and_extra_file(workspace: Path, cli) -> None:
    run_dir = add_terminal_run(workspace, "v")
    for name in ("a.txt", "b.txt"):
        (run_dir / name).write_text(f"payload {name}")
    assert cli("archive", "--run", "v", "--workspace", str(workspace)).code == 0
    bag = workspace / ".archive" / "v"
    os.chmod(bag / "data/run", 0o755)
    flipped = bag / "data/run/a.txt"
    os.chmod(flipped, 0o644)
    data = bytearray(flipped.read_bytes())
    data[3] ^= 0x01
    flipped.write_bytes(bytes(data))
    result = cli("verify", "--run", "v", "--workspace", str(workspace))
    assert result.code == 1
    assert "data/run/a.txt: checksum mismatch" in result.err and "b.txt" not in result.err
    (bag / "data/run/b.txt").unlink()
    (bag / "data/run/extra.txt").write_text("x")
    os.chmod(bag, 0o755)
    os.chmod(bag / "links.txt", 0o644)
    (bag / "links.txt").write_text("tampered\n")
    err = cli("verify", "--run", "v", "--workspace", str(workspace)).err
    assert "data/run/b.txt: missing" in err and "data/run/extra.txt: extra file" in err
    assert "links.txt: checksum mismatch" in err and "Payload-Oxum" in err


def test_empty_runs_give_valid_bags(workspace: Path, cli) -> None:
    add_terminal_run(workspace, "empty-dir")
    add_terminal_run(workspace, "no-dir", tasks=0).rmdir()
    for run_id in ("empty-dir", "no-dir"):
        assert cli("archive", "--run", run_id, "--workspace", str(workspace)).code == 0
        bag = workspace / ".archive" / run_id
        assert_bagit_valid(bag)
        assert manifest_paths(bag) == {"data/logs/events.jsonl", "data/state/run.sqlite3"}
        assert_reports_valid(workspace, run_id)


def test_exit_codes_and_the_storage_reserve(workspace: Path, cli) -> None:
    ws = ["--workspace", str(workspace)]
    sql = sqlite3.connect(workspace / ".state" / "orchestration.db")
    sql.execute("INSERT INTO runs (run_id, status) VALUES ('open', 'RUNNING')")
    sql.commit()
    assert cli("archive", "--run", "nope", *ws).code == 2
    assert cli("archive", "--run", "../etc", *ws).code == 2
    assert cli("verify", "--run", "a/b", *ws).code == 2
    assert cli("report", "--run", "nope", *ws).code == 2
    running = cli("archive", "--run", "open", *ws)
    assert running.code == 1 and "not terminal" in running.err
    assert cli("report", "--run", "open", *ws).code == 1
    add_terminal_run(workspace, "big")
    assert cli("verify", "--run", "big", *ws).code == 1  # not archived
    full = cli("archive", "--run", "big", *ws, "--set", f"archive.reserve_bytes={1 << 62}")
    assert full.code == 3 and "storage_full" in full.err
    assert not (workspace / ".archive" / "big").exists()
    failed = events_of(workspace, "ARCHIVE_FAILED")
    assert [e["data"]["reason"] for e in failed] == ["storage_full"]
    assert cli("archive", "--run", "big", *ws).code == 0


def test_backfill_archives_every_terminal_run_without_an_archive(workspace: Path, cli) -> None:
    for run_id in ("b1", "b2", "b3"):
        (add_terminal_run(workspace, run_id) / "f").write_text(run_id)
    sql = sqlite3.connect(workspace / ".state" / "orchestration.db")
    sql.execute("INSERT INTO runs (run_id, status) VALUES ('open', 'RUNNING')")
    sql.commit()
    assert cli("archive", "--run", "b2", "--workspace", str(workspace)).code == 0
    result = cli("archive", "--backfill", "--workspace", str(workspace), "--set", "archive.parallel=2")
    assert result.code == 0, result.err
    assert "2 of 2 runs archived" in result.out
    assert sorted(p.name for p in (workspace / ".archive").iterdir()) == ["b1", "b2", "b3"]
    for run_id in ("b1", "b2", "b3"):
        assert_bagit_valid(workspace / ".archive" / run_id)
        assert_reports_valid(workspace, run_id)
    assert "0 of 0 runs archived" in cli("archive", "--backfill", "--workspace", str(workspace)).out


class StopAfter:
    """A stop flag that turns on after `checks` looks: an interruption at a chosen point of the copy."""

    def __init__(self, checks: int) -> None:
        self.left = checks

    def is_set(self) -> bool:
        self.left -= 1
        return self.left < 0


def interrupt_archival(workspace: Path, run_id: str, files: int, stop_after: int) -> Settings:
    """A run of `files` files whose archival is stopped after `stop_after` copies; the settings used."""
    run_dir = add_terminal_run(workspace, run_id)
    for n in range(files):
        (run_dir / f"f{n:03d}").write_bytes(os.urandom(2048))
    settings = load_settings(workspace)
    with open_pipeline(settings, StopAfter(stop_after)) as pipeline, pytest.raises(Interrupted):
        pipeline.process(fetch_terminal_run(pipeline.archival, run_id))
    return settings


def test_an_interrupted_archival_resumes_from_its_journal(workspace: Path, cli) -> None:
    settings = interrupt_archival(workspace, "large", files=300, stop_after=150)
    staging = workspace / ".archive" / ".staging" / "large"
    journaled = len((staging / "journal.jsonl").read_bytes().splitlines()) - 1
    assert 50 < journaled < 300
    assert not (workspace / ".archive" / "large").exists()
    with open_pipeline(settings, threading.Event()) as pipeline:
        outcome, reports = pipeline.process(fetch_terminal_run(pipeline.archival, "large"))
    assert outcome.resumed_files == journaled
    assert outcome.copied_files == 300 - journaled
    assert_bagit_valid(workspace / ".archive" / "large")
    assert not staging.exists() and len(reports) == 3


def test_every_bag_is_copied_and_synced_on_the_same_threads(workspace: Path, cli) -> None:
    def archive_threads() -> set[threading.Thread]:
        return {thread for thread in threading.enumerate() if thread.name.startswith(("archive-copy", "archive-sync"))}

    for run_id in ("first", "second"):
        run_dir = add_terminal_run(workspace, run_id)
        for n in range(8):
            (run_dir / f"f{n}").write_bytes(os.urandom(4096))
    assert cli("archive", "--run", "first", "--workspace", str(workspace)).code == 0
    after_first = archive_threads()
    assert cli("archive", "--run", "second", "--workspace", str(workspace)).code == 0
    assert after_first and archive_threads() == after_first  # a pool per bag: none left, new ones each bag
    assert_bagit_valid(workspace / ".archive" / "second")


def test_a_thread_reads_every_file_into_one_buffer_of_its_own() -> None:
    mine = chunk_buffer()
    assert chunk_buffer() is mine  # not a fresh megabyte zeroed and faulted in per file
    theirs: list[bytearray] = []
    thread = threading.Thread(target=lambda: theirs.append(chunk_buffer()))
    thread.start()
    thread.join()
    assert theirs[0] is not mine  # two copies at once never share one


def test_a_failing_resume_closes_the_journal(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = interrupt_archival(workspace, "leak", files=20, stop_after=10)

    def unwritable(path: Path) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted", str(path))

    monkeypatch.setattr(staging, "make_writable", unwritable)  # the resume cannot unseal the staged bag
    with open_pipeline(settings, threading.Event()) as pipeline, pytest.raises(ArchiveFailure):
        pipeline.process(fetch_terminal_run(pipeline.archival, "leak"))
    journal = str(workspace / ".archive" / ".staging" / "leak" / "journal.jsonl")
    fds = Path("/proc/self/fd")
    assert [fd for fd in os.listdir(fds) if os.path.realpath(fds / fd) == journal] == []


def test_a_journal_that_cannot_be_trusted_is_discarded(workspace: Path, cli) -> None:
    (add_terminal_run(workspace, "j") / "f").write_text("real")
    staging = workspace / ".archive" / ".staging" / "j"
    (staging / "bag" / "data" / "run").mkdir(parents=True)
    (staging / "bag" / "data" / "run" / "f").write_text("stale")
    (staging / "journal.jsonl").write_bytes(b'{"run_id": "someone-else", "version": 1}\n')
    assert cli("archive", "--run", "j", "--workspace", str(workspace)).code == 0
    assert (workspace / ".archive" / "j" / "data/run/f").read_text() == "real"


def test_a_file_that_keeps_changing_is_reported(workspace: Path, cli) -> None:
    run_dir = add_terminal_run(workspace, "busy")
    growing = run_dir / "growing.log"
    growing.write_bytes(os.urandom(8 << 20))
    stop = threading.Event()

    def append() -> None:
        with growing.open("ab") as handle:
            while not stop.is_set():
                handle.write(b"more\n")
                handle.flush()

    writer = threading.Thread(target=append)
    writer.start()
    try:
        result = cli("archive", "--run", "busy", "--workspace", str(workspace))
    finally:
        stop.set()
        writer.join()
    assert result.code == 1 and "source_changed" in result.err and "growing.log" in result.err
    failed = events_of(workspace, "ARCHIVE_FAILED")
    assert failed[-1]["data"]["reason"] == "source_changed" and "runs/busy/growing.log" in failed[-1]["data"]["detail"]
    assert not (workspace / ".archive" / "busy").exists()
    assert cli("archive", "--run", "busy", "--workspace", str(workspace)).code == 0  # quiet now


def test_a_command_archival_is_recorded_in_the_ledger(workspace: Path, cli) -> None:
    add_terminal_run(workspace, "led")
    assert cli("archive", "--run", "led", "--workspace", str(workspace)).code == 0
    store = sqlite_store(workspace / ".monitor" / "monitor.db", busy_timeout_seconds=1)
    try:
        assert Ledger(store).phase("led") == "reported"
    finally:
        store.dispose()


def test_a_run_the_monitor_never_decided_on_keeps_its_own_status_which_must_not_move(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_terminal_run(workspace, "moved")
    add_terminal_run(workspace, "retried")
    stage_payload = staging.stage_payload
    statements = {
        "moved": "UPDATE runs SET status = 'RUNNING' WHERE run_id = 'moved'",
        "retried": "UPDATE tasks SET status = 'RUNNING' WHERE task_id = 'retried.t1'",
    }

    def executor_writes_then_copy(run_dir: RunDir, *args: Any, **kwargs: Any) -> Any:
        """After archival read the run terminal, before its snapshot: the executor's write lands."""
        with closing(sqlite3.connect(workspace / ".state" / "orchestration.db")) as state, state:
            state.execute(statements[run_dir.relative.name])
        return stage_payload(run_dir, *args, **kwargs)

    monkeypatch.setattr(staging, "stage_payload", executor_writes_then_copy)
    settings = load_settings(workspace)
    with open_pipeline(settings, threading.Event()) as pipeline:
        with pytest.raises(ArchiveFailure) as failure:
            pipeline.process(fetch_terminal_run(pipeline.archival, "moved"))
        assert failure.value.reason == "source_changed" and "RUNNING now, no longer COMPLETED" in failure.value.detail
        pipeline.process(fetch_terminal_run(pipeline.archival, "retried"))  # no decision of ours to contradict
    assert not (workspace / ".archive" / "moved").exists()
    assert "Run-Status: COMPLETED\n" in (workspace / ".archive" / "retried" / "bag-info.txt").read_text()
    assert events_of(workspace, "RUN_REOPENED") == []
