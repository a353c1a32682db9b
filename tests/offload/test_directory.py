"""Offload to another directory (an NFS or USB mount): the same guarantees as S3, checked on disk."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

from archive_support import assert_bagit_valid
from offload_support import archive_runs, configure, corrupt, offload_pass

NOW = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)


def _writable(path: Path) -> None:
    os.chmod(path.parent, stat.S_IRWXU)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


def test_a_bag_is_copied_whole_and_verify_remote_checks_the_copy(cli, workspace: Path, tmp_path: Path) -> None:
    archive_runs(cli, workspace, ["d1", "d2"])
    corrupt(workspace / ".archive" / "d2")
    mount = tmp_path / "usb"
    mount.mkdir()
    (mount / "d1" / "data" / "run").mkdir(parents=True)
    (mount / "d1" / "data" / "run" / ".out0.bin.offload-partial").write_bytes(b"left by a killed copy")
    configure(workspace, f'name = "usb"\nkind = "directory"\npath = "{mount}"\n')
    events: list[tuple[str, dict, str | None]] = []
    done = offload_pass(workspace, events)
    assert done.sent == [("usb", "d1")] and done.failed == [("usb", "d2", "local_mismatch")]
    assert_bagit_valid(mount / "d1")  # whole, and nothing half-written left beside it
    assert not (mount / "d2" / "tagmanifest-sha256.txt").exists() and not (mount / "d2" / "data/run/out0.bin").exists()
    [offloaded] = [data for kind, data, _ in events if kind == "ARCHIVE_OFFLOADED"]
    assert offloaded["location"] == str(mount / "d1") and offloaded["target"] == "usb"
    assert cli("verify", "--run", "d1", "--remote", "--workspace", str(workspace)).code == 0
    assert cli("verify", "--run", "d2", "--remote", "--workspace", str(workspace)).code == 1  # never copied
    copy = mount / "d1" / "data" / "run" / "out1.bin"
    _writable(copy)
    copy.write_bytes(b"changed on the mount")
    (mount / "d1" / "bag-info.txt").unlink()
    bad = cli("verify", "--run", "d1", "--remote", "--workspace", str(workspace))
    assert bad.code == 1 and "data/run/out1.bin: checksum mismatch" in bad.err and "bag-info.txt: missing" in bad.err


def test_an_unmounted_target_fails_and_the_next_pass_sends(cli, workspace: Path, tmp_path: Path) -> None:
    archive_runs(cli, workspace, ["u1"])
    mount = tmp_path / "nfs"
    configure(workspace, f'name = "nfs"\nkind = "directory"\npath = "{mount}"\n')
    events: list[tuple[str, dict, str | None]] = []
    assert offload_pass(workspace, events).failed == [("nfs", "u1", "unreachable")]
    assert not mount.exists()  # a mount point that is not there is not created
    mount.mkdir()
    assert offload_pass(workspace, events).sent == [("nfs", "u1")]
    assert [kind for kind, _, _ in events] == ["OFFLOAD_FAILED", "ARCHIVE_OFFLOADED"]
