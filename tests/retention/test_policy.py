"""The retention decision over plain data: which policy keeps what, and what holds a deletion they allow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from orchestrator_monitor.config import RetentionPolicy, load_settings
from orchestrator_monitor.errors import BadInput
from orchestrator_monitor.retention.policy import Hold, RunFacts, Target, plan

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _run(run_id: str, days: float, status: str = "COMPLETED", name: str | None = None, **facts: object) -> RunFacts:
    ended = (NOW - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    defaults = {"run_dir_present": True, "bag_present": True}
    return RunFacts(run_id, status, ended, name, **{**defaults, **facts})  # type: ignore[arg-type]


def _going(runs: list[RunFacts], *policies: RetentionPolicy, target: Target = Target.RUN_DIR) -> list[str]:
    return [s.run_id for s in plan(runs, policies, NOW) if s.target is target and s.held is None]


def test_a_run_goes_only_when_every_policy_covering_it_lets_it_go() -> None:
    everything = RetentionPolicy(keep_days=30)
    failed_longer = RetentionPolicy(statuses=["FAILED"], keep_days=90)
    runs = [_run("ok-40", 40), _run("failed-40", 40, "FAILED"), _run("failed-100", 100, "FAILED"), _run("ok-10", 10)]
    assert _going(runs, everything, failed_longer) == ["failed-100", "ok-40"]  # oldest first
    assert _going(runs, everything) == ["failed-100", "failed-40", "ok-40"]  # the same end: by run id
    assert _going(runs, failed_longer) == ["failed-100"]  # a run no policy covers stays


def test_keep_last_counts_per_run_name_and_status() -> None:
    runs = [_run(f"n{d}", d, name="nightly") for d in (1, 2, 3, 4)]
    runs += [_run("nf", 9, "FAILED", name="nightly"), _run("adhoc", 50, name="adhoc-7")]
    assert _going(runs, RetentionPolicy(keep_last=2)) == ["n4", "n3"]
    assert _going(runs, RetentionPolicy(keep_last=2, run_name="adhoc*")) == []
    assert _going(runs, RetentionPolicy(keep_last=1, keep_days=2.5)) == ["n4", "n3"]  # either keeps: n2 is young


def test_a_run_without_a_name_is_matched_and_counted_by_its_id() -> None:
    runs = [_run("build-1", 5), _run("build-2", 4), _run("test-1", 5)]
    assert _going(runs, RetentionPolicy(run_name="build-*", keep_days=1)) == ["build-1", "build-2"]
    assert _going(runs, RetentionPolicy(keep_last=1)) == []  # each id is its own name: the last of each stays


def test_targets_are_separate() -> None:
    runs = [_run("r", 10)]
    bags_only = RetentionPolicy(keep_days=1, applies_to=["bags"])
    assert _going(runs, bags_only) == [] and _going(runs, bags_only, target=Target.BAG) == ["r"]
    assert _going([_run("r", 10, run_dir_present=False)], RetentionPolicy(keep_days=1)) == []  # gone already


@pytest.mark.parametrize(
    ("facts", "hold"),
    [
        ({"status": "RUNNING"}, Hold.NOT_TERMINAL),
        ({"reopened": True}, Hold.REOPENED),
        ({"verify_result": "corrupt"}, Hold.BAG_CORRUPT),
        ({"bag_present": False}, Hold.NO_LOCAL_BAG),
    ],
)
def test_what_holds_a_deletion_the_policies_allow(facts: dict[str, object], hold: Hold) -> None:
    run = _run("r", 10, **facts)
    [step] = plan([run], [RetentionPolicy(keep_days=1)], NOW)
    assert step.held is hold and step.detail


def test_a_policy_that_keeps_nothing_is_refused(tmp_path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "monitor.toml").write_text("[[retention.policies]]\nrun_name = 'x*'\n")
    with pytest.raises(BadInput, match="keep_days, keep_last or both"):
        load_settings(tmp_path)
