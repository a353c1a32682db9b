"""Retention beside a real offload target (another directory): a local bag goes only when its copy checks out now."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from offload_support import configure as configure_offload
from offload_support import offload_pass
from retention_support import archive_runs, configure

NOW = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)


def test_a_local_bag_goes_once_its_offloaded_copy_checks_out_and_stays_when_the_copy_was_altered(
    cli, workspace: Path, tmp_path: Path
) -> None:
    archive_runs(cli, workspace, ["k1", "k2"])
    mount = tmp_path / "usb"
    mount.mkdir()
    configure(workspace)  # every run's directory and local bag may go after a day
    configure_offload(workspace, f'name = "usb"\nkind = "directory"\npath = "{mount}"\n')
    assert sorted(offload_pass(workspace, []).sent) == [("usb", "k1"), ("usb", "k2")]
    (mount / "k2" / "data" / "run" / "result.json").write_text('{"ok": false}\n')  # the copy, not the bag
    done = cli("retention", "run", "--workspace", str(workspace), "--json")
    assert done.code == 0, done.err
    actions = {(s["run_id"], s["target"]): s["action"] for s in json.loads(done.out)["steps"]}
    assert actions[("k1", "bag")] == "deleted" and actions[("k1", "run_dir")] == "deleted"
    assert actions[("k2", "bag")].startswith("hold")
    assert not (workspace / ".archive" / "k1").exists() and not (workspace / "runs" / "k1").exists()
    assert (workspace / ".archive" / "k2" / "bagit.txt").is_file()  # its copy no longer matches: kept
    assert (mount / "k1" / "bagit.txt").is_file()  # the confirmed copy is what remains
    shown = cli("verify", "--workspace", str(workspace), "--run", "k1", "--remote")
    assert shown.code == 0, shown.out + shown.err
