"""Over random policies and random states of real bags and run directories (corrupt bags, files changed or
added after archival, offloaded copies confirmed or not): a pass never deletes a run directory whose bag
did not verify in that same pass, never a file the bag does not hold as it is, never an unconfirmed bag."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from orchestrator_monitor.config import RetentionPolicy, RetentionSettings, load_settings
from orchestrator_monitor.ledger.catalog import Catalog
from orchestrator_monitor.ledger.store import open_store
from orchestrator_monitor.retention.prune import Retention
from orchestrator_monitor.workspace import Workspace
from retention_support import NOW, Recorder, archive_runs, corrupt_bag_file

RUNS = ("r1", "r2", "x1", "x2")

policies = st.builds(
    RetentionPolicy,
    statuses=st.sampled_from([[], ["COMPLETED"], ["FAILED"]]),
    run_name=st.sampled_from(["*", "r*", "x?"]),
    keep_days=st.sampled_from([0, 3, 30]),
    keep_last=st.sampled_from([None, 0, 1]),
    applies_to=st.sampled_from([["run_dirs"], ["bags"], ["run_dirs", "bags"]]),
)
run_states = st.fixed_dictionaries(
    {"corrupt": st.booleans(), "changed": st.booleans(), "extra": st.booleans(), "confirmed": st.booleans()}
)


def _files(run_dir: Path) -> dict[str, bytes]:
    if not run_dir.is_dir():
        return {}
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    chosen=st.lists(policies, min_size=1, max_size=3),
    states=st.fixed_dictionaries({run_id: run_states for run_id in RUNS}),
    offload_on=st.booleans(),
    audited_ok=st.booleans(),
)
def test_nothing_goes_that_was_not_verified_in_the_same_pass(
    cli, base_workspace: Path, chosen, states, offload_on: bool, audited_ok: bool
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        workspace = Path(scratch) / "ws"
        shutil.copytree(base_workspace, workspace, symlinks=True)
        assert cli("archives", "reindex", "--workspace", str(workspace)).code == 0  # its own bags' locations
        store = open_store(load_settings(workspace))
        assert store is not None
        try:
            catalog = Catalog(store)
            for run_id, state in states.items():
                if audited_ok:  # an audit found every bag sound before the damage: the pass must not trust it
                    catalog.record_check(run_id, "2026-11-30T00:00:00.000000Z", "ok", None)
                if state["corrupt"]:
                    corrupt_bag_file(workspace / ".archive" / run_id)
                if state["changed"]:
                    (workspace / "runs" / run_id / "result.json").write_text("changed after archival\n")
                if state["extra"]:
                    (workspace / "runs" / run_id / "logs" / "late.log").write_text("not in the bag\n")
            before = {run_id: _files(workspace / "runs" / run_id) for run_id in RUNS}
            recorder = Recorder()
            confirm = (lambda run_id: None if states[run_id]["confirmed"] else "not there") if offload_on else None
            retention = Retention(
                RetentionSettings(enabled=True, policies=chosen),
                Workspace.from_settings(load_settings(workspace)),
                store,
                recorder.publish,
                confirm_offloaded=confirm,
            )
            retention.run_pass(NOW)
        finally:
            store.dispose()
        pruned = {run_id for _, run_id in recorder.of("RUN_PRUNED")}
        bags_pruned = {run_id for _, run_id in recorder.of("ARCHIVE_PRUNED")}
        for run_id, state in states.items():
            after = _files(workspace / "runs" / run_id)
            if run_id in pruned:
                assert not state["corrupt"] and not state["changed"]
                assert not offload_on or state["confirmed"]
            else:
                assert after == before[run_id]  # not one file touched
            bag_copy = workspace / ".archive" / run_id / "data" / "run"
            for name, content in before[run_id].items():
                if name not in after:  # gone: the bag held it as it was, and still does (or was offloaded)
                    assert run_id in bags_pruned or (bag_copy / name).read_bytes() == content
            if state["extra"]:
                assert after.get("logs/late.log") == b"not in the bag\n"
            if run_id in bags_pruned:
                assert offload_on and state["confirmed"]
                assert not state["corrupt"] or run_id not in pruned


@pytest.fixture
def base_workspace(cli, workspace: Path) -> Path:
    archive_runs(cli, workspace, ["r1", "r2"])
    archive_runs(cli, workspace, ["x1", "x2"], status="FAILED")
    return workspace
