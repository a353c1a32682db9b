"""Archival under faults: kill -9 at random moments, a file the monitor may not read, a full disk, the daemon."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from archive_support import add_terminal_run, assert_bagit_valid, assert_reports_valid
from orchestrator_monitor.archive import archiver
from orchestrator_monitor.archive.archiver import fetch_terminal_run
from orchestrator_monitor.archive.failures import ArchiveFailure
from orchestrator_monitor.archive.verify import verify_bag
from orchestrator_monitor.config import load_settings
from orchestrator_monitor.finish.pipeline import open_pipeline
from support import EventLog, Writer

ARCHIVE = [sys.executable, "-m", "orchestrator_monitor.cli", "archive", "--run"]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (setpriv to nobody, mount tmpfs)")


def fill_run(run_dir: Path, small: int, large_bytes: int) -> None:
    for n in range(small):
        (run_dir / f"s{n // 50}").mkdir(exist_ok=True)
        (run_dir / f"s{n // 50}" / f"f{n}").write_bytes(os.urandom(4096))
    if large_bytes:
        (run_dir / "large.bin").write_bytes(os.urandom(large_bytes))


def start_archiver(workspace: Path, run_id: str, *prefix: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    return subprocess.Popen([*prefix, *ARCHIVE, run_id, "--workspace", str(workspace)], env=env, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_kill_9_at_random_moments_never_leaves_a_partial_archive(workspace: Path, cli) -> None:
    rng = random.Random(20261124)
    for trial in range(20):
        run_id = f"k{trial}"
        fill_run(add_terminal_run(workspace, run_id), small=100, large_bytes=4 << 20)
        process = start_archiver(workspace, run_id)
        time.sleep(rng.uniform(0.2, 0.9))  # the fault injected: a kill at a random moment of the run
        process.kill()
        process.communicate()
        bag = workspace / ".archive" / run_id
        if bag.exists():
            assert verify_bag(bag).ok, f"trial {trial}: a published bag must be whole"
        assert cli("archive", "--run", run_id, "--workspace", str(workspace)).code == 0
        assert_bagit_valid(bag)
        assert not (workspace / ".archive" / ".staging" / run_id).exists()


@pytest.mark.slow
def test_a_large_run_killed_mid_way_resumes_from_the_journal(workspace: Path) -> None:
    run_dir = add_terminal_run(workspace, "huge")
    fill_run(run_dir, small=2000, large_bytes=0)
    journal = workspace / ".archive" / ".staging" / "huge" / "journal.jsonl"
    process = start_archiver(workspace, "huge")
    deadline = time.monotonic() + 30
    while not (journal.exists() and journal.read_bytes().count(b"\n") > 400):
        assert process.poll() is None and time.monotonic() < deadline, "the archival ended before it was killed"
        time.sleep(0.005)
    process.kill()
    process.communicate()
    assert not (workspace / ".archive" / "huge").exists()
    with open_pipeline(load_settings(workspace), threading.Event()) as pipeline:
        outcome, _ = pipeline.process(fetch_terminal_run(pipeline.archival, "huge"))
    assert outcome.resumed_files >= 400 and outcome.copied_files == 2000 - outcome.resumed_files
    assert_bagit_valid(outcome.path)


@pytest.fixture
def open_workspace(cli) -> Iterator[Path]:
    """A workspace that an unprivileged user can use (pytest's own tmp_path is private to root)."""
    root = Path(tempfile.mkdtemp(prefix="archive-perm-"))
    os.chmod(root, 0o777)
    workspace = root / "ws"
    assert cli("init", "--workspace", str(workspace)).code == 0
    yield workspace
    shutil.rmtree(root)


def archive_as_nobody_refused(workspace: Path, run_id: str, private: Path, mode: int) -> None:
    """Everything open to all but `private` (given `mode`): archiving as nobody fails naming it, leaving no bag."""
    subprocess.run(["chmod", "-R", "a+rwX", str(workspace)], check=True)
    os.chmod(private, mode)
    nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    process = start_archiver(workspace, run_id, *nobody)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    assert b"permission" in err and str(private.relative_to(workspace)).encode() in err
    failed = EventLog(workspace).events("ARCHIVE_FAILED")
    in_run = str(private.relative_to(workspace / "runs" / run_id))
    assert failed[-1]["data"]["reason"] == "permission" and in_run in failed[-1]["data"]["detail"]
    assert not (workspace / ".archive" / run_id).exists()


@pytest.mark.slow
@needs_root
def test_a_file_the_monitor_may_not_read_fails_the_archival_naming_it(open_workspace: Path) -> None:
    run_dir = add_terminal_run(open_workspace, "perm")
    (run_dir / "readable.txt").write_text("ok")
    (run_dir / "secret.key").write_text("private")
    archive_as_nobody_refused(open_workspace, "perm", run_dir / "secret.key", 0o600)


@pytest.mark.slow
@needs_root
def test_a_directory_the_monitor_may_not_list_fails_the_archival_naming_it(open_workspace: Path) -> None:
    run_dir = add_terminal_run(open_workspace, "dirperm")
    (run_dir / "readable.txt").write_text("ok")
    (run_dir / "a" / "locked").mkdir(parents=True)
    (run_dir / "a" / "locked" / "inside.txt").write_text("private")
    archive_as_nobody_refused(open_workspace, "dirperm", run_dir / "a" / "locked", 0o700)


def without_dac_override() -> tuple[str, ...]:
    """A prefix that runs a command as the service does: no CAP_DAC_OVERRIDE or CAP_DAC_READ_SEARCH."""
    prefix = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps=-all")
    if subprocess.run([*prefix, "true"], check=False).returncode:
        pytest.skip("setpriv cannot drop capabilities here (needs CAP_SETPCAP)")
    return prefix


@needs_root
def test_a_monitor_without_dac_override_publishes_read_only_bags(workspace: Path, cli) -> None:
    run_dir = add_terminal_run(workspace, "nocap")
    (run_dir / "sub").mkdir()
    (run_dir / "sub" / "f.txt").write_text("payload")
    process = start_archiver(workspace, "nocap", *without_dac_override())
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    bag = workspace / ".archive" / "nocap"
    assert_bagit_valid(bag)
    assert all(path.stat().st_mode & 0o222 == 0 for path in [bag, *bag.rglob("*")])
    assert not (workspace / ".archive" / ".staging").exists()
    os.chmod(bag, 0o755)  # as a kill between the rename and the sealing of the top leaves it
    again = cli("archive", "--run", "nocap", "--workspace", str(workspace))
    assert again.code == 0 and "already archived" in again.out
    assert bag.stat().st_mode & 0o777 == 0o555


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=False).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root and mount permission)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
@needs_root
def test_enospc_mid_way_leaves_nothing_and_the_run_is_archived_once_space_returns(
    workspace: Path, small_tmpfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    filler = small_tmpfs / "filler"
    filler.write_bytes(b"\0" * (5 << 20))
    fill_run(add_terminal_run(workspace, "full"), small=20, large_bytes=4 << 20)
    overrides = [f"archive.root={small_tmpfs / 'archive'}", "archive.reserve_bytes=0"]
    settings = load_settings(workspace, overrides=overrides)
    monkeypatch.setattr(archiver, "check_storage", lambda *args: None)  # past the reserve check, into ENOSPC
    with open_pipeline(settings, threading.Event()) as pipeline, pytest.raises(ArchiveFailure) as failure:
        pipeline.process(fetch_terminal_run(pipeline.archival, "full"))
    assert failure.value.reason == "storage_full"
    assert os.listdir(small_tmpfs / "archive") == []  # no bag, no staging
    assert EventLog(workspace).events("ARCHIVE_FAILED")[-1]["data"]["reason"] == "storage_full"
    filler.unlink()
    monkeypatch.undo()
    with open_pipeline(settings, threading.Event()) as pipeline:
        outcome, _ = pipeline.process(fetch_terminal_run(pipeline.archival, "full"))
    assert_bagit_valid(outcome.path)


@pytest.mark.slow
def test_the_daemon_archives_reports_and_resumes_after_kill_9(workspace: Path, start_daemon) -> None:
    settings = ("archive.quiet_seconds=0.2", "dashboard.enabled=false")
    daemon = start_daemon(workspace, *settings)
    writer = Writer(workspace)
    (workspace / "runs" / "e2e").mkdir(parents=True)
    (workspace / "runs" / "e2e" / "out.txt").write_text("artifact")
    writer.add_run("e2e", ["SUCCEEDED", "FAILED"])
    daemon.log.wait_for(lambda log: log.events("REPORT_GENERATED", "e2e"), what="REPORT_GENERATED")
    types = [e["type"] for e in daemon.log.read() if e.get("run_id") == "e2e"]
    assert types.index("RUN_COMPLETED") < types.index("ARCHIVE_STARTED") < types.index("RUN_ARCHIVED")
    assert types.index("RUN_ARCHIVED") < types.index("REPORT_GENERATED")
    assert_bagit_valid(workspace / ".archive" / "e2e")
    assert_reports_valid(workspace, "e2e")
    assert not (workspace / ".monitor" / "events" / "e2e.jsonl").exists()

    (workspace / "runs" / "crash").mkdir()
    fill_run(workspace / "runs" / "crash", small=1500, large_bytes=0)
    writer.add_run("crash", ["SUCCEEDED"])
    daemon.log.wait_for(lambda log: log.events("ARCHIVE_STARTED", "crash"), what="ARCHIVE_STARTED")
    daemon.kill()
    restarted = start_daemon(workspace, *settings)
    restarted.log.wait_for(lambda log: log.events("REPORT_GENERATED", "crash"), what="REPORT_GENERATED after restart")
    assert [e["id"] for e in restarted.log.events("RUN_ARCHIVED", "crash")] == ["crash:RUN_ARCHIVED"]
    assert_bagit_valid(workspace / ".archive" / "crash")
    code, err = restarted.stop(signal.SIGTERM)
    assert code == 0, err
