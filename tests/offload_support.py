"""Helpers of the offload tests: a workspace whose configuration points offload targets at a server."""

from __future__ import annotations

import os
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from archive_support import add_terminal_run
from orchestrator_monitor.config import load_settings
from orchestrator_monitor.ledger.catalog import Catalog
from orchestrator_monitor.ledger.store import open_store
from orchestrator_monitor.offload.journal import OffloadJournal
from orchestrator_monitor.offload.offloader import Offloader, OffloadPass
from orchestrator_monitor.offload.open import open_targets

ACCESS_KEY = "AKIAOFFLOADTEST7Q3Z"  # distinctive: a test greps every output for them
SECRET_KEY = "offload/secret+Sk9rT2p4Zk1uN3Fw"
PASS_TIME = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)


def credentials_file(workspace: Path) -> Path:
    path = workspace / "config" / "s3.credentials"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n")
    path.chmod(0o600)
    return path


def configure(workspace: Path, *targets: str, **offload: object) -> None:
    """`[offload]` (on) with these `[[offload.targets]]` bodies in the workspace's configuration."""
    lines = [
        "",
        "[offload]",
        "enabled = true",
        *(f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in offload.items()),
    ]
    lines += [part for body in targets for part in ("", "[[offload.targets]]", body)]
    (workspace / "config").mkdir(exist_ok=True)
    with (workspace / "config" / "monitor.toml").open("a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def s3_target(workspace: Path, endpoint: str, bucket: str, name: str = "s3", extra: str = "") -> str:
    return (
        f'name = "{name}"\nkind = "s3"\nbucket = "{bucket}"\nprefix = "lab/bags"\nendpoint_url = "{endpoint}"\n'
        f'region = "us-east-1"\ncredentials_file = "{credentials_file(workspace)}"\n{extra}'
    )


def archive_runs(cli, workspace: Path, run_ids: list[str], sizes: tuple[int, ...] = (300_000, 70_000)) -> None:
    """Runs with files of these sizes (random bytes), archived by the real archiver into bags."""
    for run_id in run_ids:
        run_dir = add_terminal_run(workspace, run_id)
        for n, size in enumerate(sizes):
            (run_dir / f"out{n}.bin").write_bytes(os.urandom(size))
        assert cli("archive", "--workspace", str(workspace), "--run", run_id).code == 0


def corrupt(bag: Path, relative: str = "data/run/out0.bin") -> None:
    """Flip bytes in a sealed (read-only) bag's file, as bit rot would."""
    target = bag / relative
    os.chmod(target.parent, stat.S_IRWXU)
    os.chmod(target, stat.S_IRUSR | stat.S_IWUSR)
    with target.open("r+b") as handle:
        handle.write(b"\0rot")


def download(s3: Any, bucket: str, prefix: str, into: Path) -> None:
    """Every object under `prefix` into the directory `into`, as a restore would fetch a bag."""
    for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]:
        path = into / item["Key"][len(prefix) :]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())


def offload_pass(workspace: Path, events: list[tuple[str, dict, str | None]]) -> OffloadPass:
    """One offload pass of the workspace's configured targets, its events appended to `events`."""
    settings = load_settings(workspace, environ={})
    store = open_store(settings)
    assert store is not None
    offloader = Offloader(
        settings.offload,
        open_targets(settings),
        Catalog(store),
        OffloadJournal(store),
        lambda type, data, *, run_id=None: events.append((str(type), data, run_id)),
        threading.Event(),
        workspace / ".archive",
    )
    try:
        return offloader.run_pass(PASS_TIME)
    finally:
        offloader.close()
        store.dispose()
