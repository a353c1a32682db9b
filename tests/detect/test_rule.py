"""Every branch of the completion rule, without a database or a clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from orchestrator_monitor.detect.rule import Verdict, decide, decide_again, final_status
from orchestrator_monitor.state.records import TASK_STATUSES, TASK_TERMINAL, RunSnapshot


def snapshot(tasks: dict[str, int], workstreams: dict[str, int] | None = None, status: str = "RUNNING") -> RunSnapshot:
    return RunSnapshot("r1", status, tasks, workstreams or {"COMPLETED": 1}, fingerprint=(1,))


@pytest.mark.parametrize(
    ("tasks", "expected"),
    [
        ({"SUCCEEDED": 3}, "COMPLETED"),
        ({"SUCCEEDED": 2, "SKIPPED": 1}, "COMPLETED"),
        ({"SKIPPED": 2}, "COMPLETED"),
        ({"FAILED": 2}, "FAILED"),
        ({"CANCELLED": 1, "SKIPPED": 1}, "FAILED"),
        ({"SUCCEEDED": 1, "FAILED": 1}, "PARTIAL"),
        ({"SUCCEEDED": 1, "CANCELLED": 1}, "PARTIAL"),
        ({"SUCCEEDED": 1, "FAILED": 0}, "COMPLETED"),
    ],
)
def test_final_status_follows_the_spec(tasks: dict[str, int], expected: str) -> None:
    assert decide(snapshot(tasks), changed_at=0, now=0, settle_seconds=0).status == expected


def test_a_run_with_no_tasks_is_never_completed() -> None:
    assert decide(snapshot({}), changed_at=0, now=1e9, settle_seconds=0).verdict is Verdict.OPEN


@pytest.mark.parametrize("open_status", ["PENDING", "QUEUED", "RUNNING", "SOMETHING_NEW"])
def test_a_task_not_terminal_keeps_the_run_open(open_status: str) -> None:
    decision = decide(snapshot({"SUCCEEDED": 5, open_status: 1}), changed_at=0, now=100, settle_seconds=0)
    assert decision.verdict is Verdict.OPEN


def test_a_workstream_still_running_keeps_the_run_open_though_all_tasks_are_done() -> None:
    decision = decide(snapshot({"SUCCEEDED": 2}, {"COMPLETED": 1, "RUNNING": 1}), changed_at=0, now=9, settle_seconds=0)
    assert decision.verdict is Verdict.OPEN


def test_the_settle_window_counts_from_the_last_change() -> None:
    done = snapshot({"SUCCEEDED": 2})
    settling = decide(done, changed_at=10.0, now=11.0, settle_seconds=5.0)
    assert (settling.verdict, settling.recheck_at) == (Verdict.SETTLING, 15.0)
    assert decide(done, changed_at=10.0, now=15.0, settle_seconds=5.0).verdict is Verdict.MARK


def test_a_status_set_by_the_executor_is_taken_as_it_is() -> None:
    decision = decide(snapshot({"RUNNING": 4}, status="CANCELLED"), changed_at=0, now=0, settle_seconds=0)
    assert (decision.verdict, decision.status) == (Verdict.TERMINAL, "CANCELLED")


@given(st.dictionaries(st.sampled_from(TASK_STATUSES), st.integers(0, 5)))
def test_marking_happens_exactly_when_every_task_is_terminal(tasks: dict[str, int]) -> None:
    decision = decide(snapshot(tasks), changed_at=0, now=0, settle_seconds=0)
    done = sum(tasks.values()) > 0 and all(s in TASK_TERMINAL for s, n in tasks.items() if n)
    assert (decision.verdict is Verdict.MARK) == done
    if done:
        assert decision.status == final_status(tasks)
        assert (decision.status == "COMPLETED") == all(s in ("SUCCEEDED", "SKIPPED") for s, n in tasks.items() if n)


def uet_read_back(status: str) -> str:
    """How uet reads a mark back: PARTIAL is written `failed`."""
    return "FAILED" if status == "PARTIAL" else status


@pytest.mark.parametrize(
    ("stored", "decided", "tasks", "expected"),
    [
        ("COMPLETED", "COMPLETED", {"SUCCEEDED": 2}, (Verdict.MARK, "COMPLETED")),  # the retry succeeded: no change
        ("COMPLETED", "COMPLETED", {"SUCCEEDED": 1, "FAILED": 1}, (Verdict.MARK, "PARTIAL")),  # it failed: marked anew
        ("PARTIAL", "COMPLETED", {"SUCCEEDED": 1, "FAILED": 1}, (Verdict.MARK, "PARTIAL")),  # new mark, not recorded
        ("FAILED", "COMPLETED", {"SUCCEEDED": 1, "FAILED": 1}, (Verdict.TERMINAL, "FAILED")),  # the executor's word
        ("CANCELLED", None, {"SUCCEEDED": 1, "FAILED": 1}, (Verdict.TERMINAL, "CANCELLED")),  # the executor ended it
    ],
)
def test_a_reopened_run_ending_again_is_decided_again_only_where_the_mark_was_ours(
    stored: str, decided: str | None, tasks: dict[str, int], expected: tuple[Verdict, str]
) -> None:
    decision = decide_again(
        snapshot(tasks, status=stored), decided=decided, read_back=str, changed_at=0, now=0, settle_seconds=0
    )
    assert (decision.verdict, decision.status) == expected


def test_a_reopened_run_waits_for_every_row_and_the_settle_window() -> None:
    running = snapshot({"SUCCEEDED": 1, "RUNNING": 1}, status="COMPLETED")
    again = decide_again(running, decided="COMPLETED", read_back=str, changed_at=0, now=100, settle_seconds=0)
    assert again.verdict is Verdict.OPEN
    ended = snapshot({"SUCCEEDED": 2}, status="COMPLETED")
    settling = decide_again(ended, decided="COMPLETED", read_back=str, changed_at=10, now=12, settle_seconds=5)
    assert (settling.verdict, settling.recheck_at) == (Verdict.SETTLING, 15)


def test_a_partial_mark_stored_as_failed_is_still_the_monitors() -> None:
    failed = snapshot({"SUCCEEDED": 1, "FAILED": 1}, status="FAILED")  # uet stores PARTIAL as `failed`
    decision = decide_again(failed, decided="PARTIAL", read_back=uet_read_back, changed_at=0, now=0, settle_seconds=0)
    assert (decision.verdict, decision.status) == (Verdict.MARK, "PARTIAL")
