"""The completion rule of the spec, as pure functions over plain data.

A run is completed by the monitor when it has at least one task, every task and every
workstream is terminal, and nothing of it changed during the settle window (measured on
the monitor's monotonic clock). The detector feeds it snapshots; this module knows no
database, no clock and no events.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

from ..state.records import RUN_TERMINAL, TASK_TERMINAL, RunSnapshot


class Verdict(Enum):
    OPEN = "open"  # something is still to do (or there are no tasks yet)
    SETTLING = "settling"  # done, but changed too recently: look again at `recheck_at`
    MARK = "mark"  # mark it `status` now
    TERMINAL = "terminal"  # the executor set a terminal status itself: take it as it is


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    status: str | None = None
    recheck_at: float | None = None


def final_status(tasks: Mapping[str, int]) -> str:
    """COMPLETED if every task succeeded or was skipped, FAILED if none succeeded, else PARTIAL."""
    if all(status in ("SUCCEEDED", "SKIPPED") for status, count in tasks.items() if count):
        return "COMPLETED"
    if not tasks.get("SUCCEEDED"):
        return "FAILED"
    return "PARTIAL"


def all_terminal(counts: Mapping[str, int], terminal: frozenset[str]) -> bool:
    return all(status in terminal for status, count in counts.items() if count)


def decide(snapshot: RunSnapshot, *, changed_at: float, now: float, settle_seconds: float) -> Decision:
    """The verdict for one run; `changed_at` is when its fingerprint last changed (monotonic)."""
    if snapshot.status in RUN_TERMINAL:
        return Decision(Verdict.TERMINAL, snapshot.status)
    return _decide_rows(snapshot, changed_at=changed_at, now=now, settle_seconds=settle_seconds)


def decide_again(
    snapshot: RunSnapshot,
    *,
    decided: str | None,
    read_back: Callable[[str], str],
    changed_at: float,
    now: float,
    settle_seconds: float,
) -> Decision:
    """The verdict for a run reopened under a terminal status (a task retried after the mark).

    It has ended again once its rows would complete an open run: every task and workstream
    terminal, settled. A run the monitor marked `decided` is decided again by the rule, since the
    retry may have ended otherwise (COMPLETED becomes PARTIAL: MARK, written where the stored status
    differs), as long as its stored status is the one that mark left (`read_back`) or already the
    new outcome; any other status is the executor's own, taken as it is (TERMINAL).
    """
    decision = _decide_rows(snapshot, changed_at=changed_at, now=now, settle_seconds=settle_seconds)
    if decision.verdict is not Verdict.MARK or decision.status is None:
        return decision
    if decided is not None and snapshot.status in (read_back(decided), read_back(decision.status)):
        return decision
    return Decision(Verdict.TERMINAL, snapshot.status)


def _decide_rows(snapshot: RunSnapshot, *, changed_at: float, now: float, settle_seconds: float) -> Decision:
    if not sum(snapshot.tasks.values()):
        return Decision(Verdict.OPEN)  # a run with no tasks is never completed by the monitor
    if not all_terminal(snapshot.tasks, TASK_TERMINAL) or not all_terminal(snapshot.workstreams, RUN_TERMINAL):
        return Decision(Verdict.OPEN)
    settled_at = changed_at + settle_seconds
    if now < settled_at:
        return Decision(Verdict.SETTLING, recheck_at=settled_at)
    return Decision(Verdict.MARK, final_status(snapshot.tasks))
