"""The daemon's offload job: nothing in safe mode; a pass's outcome is the `offload` health check."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

from offload_support import archive_runs, configure
from orchestrator_monitor.config import load_settings
from orchestrator_monitor.ledger.store import open_store
from orchestrator_monitor.service.offload import offload_job
from orchestrator_monitor.service.safemode import Condition, Observation


def test_nothing_is_offloaded_in_safe_mode_and_each_pass_reports_its_check(
    cli, workspace: Path, tmp_path: Path
) -> None:
    archive_runs(cli, workspace, ["s1"])
    mount = tmp_path / "usb"
    configure(workspace, f'name = "usb"\nkind = "directory"\npath = "{mount}"\n')
    settings = load_settings(workspace, environ={})
    store = open_store(settings)
    assert store is not None
    safe_mode, observed = [True], []
    job = offload_job(
        settings,
        store,
        lambda *a, **k: None,
        observed.append,
        threading.Event(),
        workspace / ".archive",
        lambda: not safe_mode[0],
    )
    assert job is not None
    (name, _, run), offloader = job
    now = datetime.now(UTC)
    run(now)  # safe mode: not even an attempt
    assert observed == []
    safe_mode[0] = False
    run(now)  # the mount is not there
    assert [o.condition for o in observed] == [Condition.FAILED] and "s1 to usb: unreachable" in observed[0].detail
    mount.mkdir()
    run(now)
    assert observed[-1] == Observation(name, Condition.OK, "1 bags offloaded this pass")
    assert (mount / "s1" / "tagmanifest-sha256.txt").is_file()
    offloader.close()
    assert (
        offload_job(load_settings(tmp_path, environ={}), store, print, print, threading.Event(), tmp_path, bool) is None
    )
