"""Plain data that the state reads hand to the stages above: the statuses and a run's snapshot.

Nothing here touches a database, so the completion rule (pure) and the views can use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

RUN_STATUSES = ("PENDING", "RUNNING", "COMPLETED", "FAILED", "PARTIAL", "CANCELLED")
RUN_TERMINAL = frozenset({"COMPLETED", "FAILED", "PARTIAL", "CANCELLED"})
TASK_STATUSES = ("PENDING", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "SKIPPED", "CANCELLED")
TASK_TERMINAL = frozenset({"SUCCEEDED", "FAILED", "SKIPPED", "CANCELLED"})


# What a bar of tasks shows, in the order it draws them: failures first; "waiting" is pending and queued.
OUTCOMES = ("failed", "cancelled", "skipped", "succeeded", "running", "waiting")
_TASK_OUTCOMES = {
    "FAILED": "failed",
    "CANCELLED": "cancelled",
    "SKIPPED": "skipped",
    "SUCCEEDED": "succeeded",
    "RUNNING": "running",
}


def task_outcome(status: str) -> str:
    """The outcome a task status is drawn as; an unknown status waits (it is not terminal)."""
    return _TASK_OUTCOMES.get(status, "waiting")


def as_text(value: object) -> str | None:
    """A TEXT column's value as text: SQLite keeps whatever a writer stored there (a BLOB, a number),
    and a view or an event must show it, never crash on it or write bad JSON."""
    return value if value is None or isinstance(value, str) else repr(value)


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    """What the detector read of one run in one read transaction.

    `fingerprint` changes whenever anything of the run changes that the rule depends on
    (counts, attempts, times); two equal fingerprints mean "nothing changed in between".
    """

    run_id: str
    status: str
    tasks: Mapping[str, int]
    workstreams: Mapping[str, int]
    fingerprint: tuple[object, ...]
