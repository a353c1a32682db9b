"""The archive catalog: filled as bags are published, rebuilt from the bags, searched by the commands."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
from pathlib import Path

from archive_support import add_terminal_run


def _run(workspace: Path, run_id: str, name: str, status: str = "COMPLETED", finished: str | None = None) -> None:
    add_terminal_run(workspace, run_id, status)
    with sqlite3.connect(workspace / ".state" / "orchestration.db") as connection:
        connection.execute("UPDATE runs SET name = ? WHERE run_id = ?", (name, run_id))
        if finished is not None:
            connection.execute("UPDATE runs SET finished_at = ? WHERE run_id = ?", (finished, run_id))
        if status == "COMPLETED":  # a run without failures: no error type, only the tool `lint`
            connection.execute(
                "UPDATE tasks SET status = 'SUCCEEDED', error_type = NULL, tool = 'lint' WHERE run_id = ?", (run_id,)
            )


def _archived(cli, workspace: Path) -> None:
    _run(workspace, "r-ok", "nightly-build", finished="2026-11-20T08:00:00Z")
    _run(workspace, "r-bad", "nightly-test", status="FAILED", finished="2026-11-24T10:05:00Z")
    _run(workspace, "r-old", "weekly", finished="2026-10-01T00:00:00Z")
    for run_id in ("r-ok", "r-bad", "r-old"):
        assert cli("archive", "--workspace", str(workspace), "--run", run_id).code == 0


def _listed(cli, workspace: Path, *options: str) -> list[str]:
    result = cli("archives", "search", "--workspace", str(workspace), "--json", *options)
    assert result.code == 0, result.err
    return [entry["run_id"] for entry in json.loads(result.out)]


def test_a_published_bag_is_in_the_catalog_with_its_facts(cli, workspace: Path) -> None:
    _archived(cli, workspace)
    result = cli("archives", "show", "r-bad", "--workspace", str(workspace), "--json")
    assert result.code == 0, result.err
    entry = json.loads(result.out)
    bag = workspace / ".archive" / "r-bad"
    info = (bag / "bag-info.txt").read_text()
    assert entry["status"] == "FAILED" and entry["name"] == "nightly-test"
    assert entry["finished_at"] == "2026-11-24T10:05:00.000000Z"
    assert entry["tools"] == ["lint", "test"] and entry["error_types"] == ["timeout"]
    assert f"Payload-Oxum: {entry['bytes']}.{entry['files']}" in info
    assert entry["manifest_sha256"] == hashlib.sha256((bag / "manifest-sha256.txt").read_bytes()).hexdigest()
    assert entry["locations"] == [str(bag)] and entry["verified_at"] is None


def test_search_filters_and_output_formats(cli, workspace: Path) -> None:
    _archived(cli, workspace)
    assert _listed(cli, workspace) == ["r-bad", "r-ok", "r-old"]  # the run's end, newest first
    assert _listed(cli, workspace, "--status", "FAILED") == ["r-bad"]
    assert _listed(cli, workspace, "--name", "nightly-*") == ["r-bad", "r-ok"]
    assert _listed(cli, workspace, "--tool", "test") == ["r-bad"]
    assert _listed(cli, workspace, "--error-type", "timeout") == ["r-bad"]
    assert _listed(cli, workspace, "--since", "2026-11-01T00:00:00Z", "--until", "2026-11-21T00:00:00Z") == ["r-ok"]
    assert _listed(cli, workspace, "--result", "unverified", "--limit", "1") == ["r-bad"]
    tsv = cli("archives", "list", "--workspace", str(workspace), "--tsv", "--status", "COMPLETED")
    header, *rows = tsv.out.splitlines()
    assert header.split("\t")[:3] == ["run_id", "name", "status"]
    assert [row.split("\t")[:3] for row in rows] == [
        ["r-ok", "nightly-build", "COMPLETED"],
        ["r-old", "weekly", "COMPLETED"],
    ]
    table = cli("archives", "list", "--workspace", str(workspace))
    assert table.code == 0 and "r-old" in table.out and "3 archives" in table.out
    shown = cli("archives", "show", "r-ok", "--workspace", str(workspace))
    assert shown.code == 0 and "manifest_sha256" in shown.out


def test_exit_codes(cli, workspace: Path, tmp_path: Path) -> None:
    assert cli("archives", "show", "nope", "--workspace", str(workspace)).code == 2
    assert cli("archives", "search", "--since", "yesterday-ish", "--workspace", str(workspace)).code == 2
    assert cli("archives", "list", "--workspace", str(tmp_path / "missing")).code == 3


def test_reindex_rebuilds_an_emptied_catalog_and_reports_a_corrupt_bag(cli, workspace: Path) -> None:
    _archived(cli, workspace)
    with sqlite3.connect(workspace / ".monitor" / "monitor.db") as connection:
        for table in ("monitor_archives", "monitor_archive_facets", "monitor_archive_locations"):
            connection.execute(f"DELETE FROM {table}")
        connection.execute(
            "INSERT INTO monitor_archives (run_id, status, archived_at, ended_at, files, bytes, manifest_sha256) "
            "VALUES ('ghost', 'COMPLETED', 'x', '2000', 0, 0, 'd'), ('elsewhere', 'COMPLETED', 'x', '2000', 0, 0, 'd')"
        )
        connection.execute(
            "INSERT INTO monitor_archive_locations VALUES ('ghost', 'local', ?, 'x'), "
            "('elsewhere', 'local', '/another/host/elsewhere', 'x')",
            (str(workspace / ".archive" / "ghost"),),
        )
    broken = workspace / ".archive" / "r-old"
    os.chmod(broken, stat.S_IRWXU)
    os.chmod(broken / "bag-info.txt", stat.S_IRUSR | stat.S_IWUSR)
    (broken / "bag-info.txt").write_text("not a bag-info\n")
    result = cli("archives", "reindex", "--workspace", str(workspace))
    assert result.code == 1
    assert "r-old" in result.err and "no Run-Id" in result.err
    assert "2 bags catalogued, 1 unreadable, 1 entries without a bag removed" in result.out
    assert _listed(cli, workspace) == ["r-bad", "r-ok", "elsewhere"]  # another archive root's bag is not ours
    assert _listed(cli, workspace, "--tool", "test") == ["r-bad"]  # the facets come back from the bag
    again = cli("archives", "reindex", "--workspace", str(workspace))  # idempotent
    assert "2 bags catalogued, 1 unreadable, 0 entries" in again.out
    assert _listed(cli, workspace) == ["r-bad", "r-ok", "elsewhere"]
