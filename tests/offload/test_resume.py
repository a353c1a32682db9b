"""Offload survives being stopped or killed mid-bag: a restarted daemon sends only what the journal does
not have confirmed, a multipart upload goes on from its last part, and the copy ends whole."""

from __future__ import annotations

import os
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from archive_support import add_terminal_run, assert_bagit_valid
from offload_support import archive_runs, configure, download, s3_target
from orchestrator_monitor.config import load_settings
from orchestrator_monitor.ledger.catalog import Catalog
from orchestrator_monitor.ledger.store import open_store
from orchestrator_monitor.offload.journal import OffloadJournal
from orchestrator_monitor.offload.offloader import Offloader
from orchestrator_monitor.offload.open import open_targets
from support import DaemonProcess

MIB = 1 << 20


def _offloader(workspace: Path, stop: threading.Event) -> Offloader:
    settings = load_settings(workspace, environ={})
    store = open_store(settings)
    assert store is not None
    journal = OffloadJournal(store)
    return Offloader(
        settings.offload,
        open_targets(settings),
        Catalog(store),
        journal,
        lambda *_, **__: None,
        stop,
        workspace / ".archive",
    )  # type: ignore[arg-type]


def _calls(offloader: Offloader, *operations: str) -> list[str]:
    seen: list[str] = []
    for operation in operations:
        offloader.targets[0]._client.meta.events.register(  # type: ignore[attr-defined]
            f"before-parameter-build.s3.{operation}", lambda params, model, **_: seen.append(model.name)
        )
    return seen


def test_a_stopped_multipart_upload_goes_on_from_its_last_part(
    cli, workspace: Path, s3_endpoint: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    archive_runs(cli, workspace, ["m1"], sizes=(16 * MIB,))  # four parts of 5 MiB (the last 1 MiB)
    configure(workspace, s3_target(workspace, s3_endpoint, bucket), multipart_bytes=5 * MIB, parallel=1)
    key = "lab/bags/m1/data/run/out0.bin"
    stray = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]  # killed before it was journalled
    stop = threading.Event()
    first = _offloader(workspace, stop)
    first.targets[0]._client.meta.events.register(  # type: ignore[attr-defined]
        "after-call.s3.UploadPart", lambda **_: stop.set()
    )
    assert first.run_pass(datetime.now(UTC)).sent == []  # stopped after the first part
    first.close()
    [open_upload] = s3.list_multipart_uploads(Bucket=bucket, Prefix=key)["Uploads"]
    assert open_upload["UploadId"] != stray  # the stray one aborted, ours kept
    second = _offloader(workspace, threading.Event())
    calls = _calls(second, "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload")
    assert second.run_pass(datetime.now(UTC)).sent == [("s3", "m1")]
    second.close()
    assert calls == ["UploadPart", "UploadPart", "UploadPart", "CompleteMultipartUpload"]  # parts 2-4 only
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket, Prefix=key)
    download(s3, bucket, "lab/bags/m1/", tmp_path / "m1")
    assert_bagit_valid(tmp_path / "m1")


def _confirmed(workspace: Path) -> set[str]:
    with sqlite3.connect(f"file:{workspace / '.monitor' / 'monitor.db'}?mode=ro", uri=True) as connection:
        return {row[0] for row in connection.execute("SELECT path FROM monitor_offload_files")}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["s3", "directory"])
def test_kill_9_during_an_offload_then_the_restarted_daemon_finishes_without_resending(
    kind: str, cli, workspace: Path, s3_endpoint: str, s3: Any, bucket: str, tmp_path: Path, start_daemon
) -> None:
    run_dir = add_terminal_run(workspace, "k1")
    for n in range(8):
        (run_dir / f"part{n}.bin").write_bytes(os.urandom(MIB))
    (run_dir / "big.bin").write_bytes(os.urandom(12 * MIB))
    assert cli("archive", "--workspace", str(workspace), "--run", "k1").code == 0
    copies = tmp_path / "copies"
    copies.mkdir()
    body = (
        s3_target(workspace, s3_endpoint, bucket)
        if kind == "s3"
        else f'name = "usb"\nkind = "directory"\npath = "{copies}"\n'
    )
    configure(workspace, body, multipart_bytes=5 * MIB, parallel=2, interval_seconds=0.5)
    daemon: DaemonProcess = start_daemon(workspace, f"offload.bytes_per_second={2 * MIB}")
    daemon.log.wait_for(lambda log: len(_confirmed(workspace)) >= 4, timeout=60, what="four files confirmed")
    daemon.kill()
    before = _confirmed(workspace)
    assert "tagmanifest-sha256.txt" not in before and not daemon.log.events("ARCHIVE_OFFLOADED")
    if kind == "s3":
        versions = lambda: {v["Key"]: v for v in s3.list_object_versions(Bucket=bucket).get("Versions", [])}  # noqa: E731
        kept = {key: v["VersionId"] for key, v in versions().items()}
    else:
        kept = {p: os.stat(copies / "k1" / p).st_ino for p in before}
    again = start_daemon(workspace)
    again.log.wait_for(lambda log: bool(log.events("ARCHIVE_OFFLOADED", "k1")), timeout=60, what="ARCHIVE_OFFLOADED")
    assert again.stop()[0] == 0
    if kind == "s3":
        everything = s3.list_object_versions(Bucket=bucket)["Versions"]
        for path in before:  # a confirmed file is not sent again: still its one version
            assert [v["VersionId"] for v in everything if v["Key"] == f"lab/bags/k1/{path}"] == [
                kept[f"lab/bags/k1/{path}"]
            ]
        assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
        download(s3, bucket, "lab/bags/k1/", tmp_path / "k1")
        assert_bagit_valid(tmp_path / "k1")
    else:
        assert {p: os.stat(copies / "k1" / p).st_ino for p in before} == kept
        assert_bagit_valid(copies / "k1")
    assert cli("verify", "--run", "k1", "--remote", "--workspace", str(workspace)).code == 0
