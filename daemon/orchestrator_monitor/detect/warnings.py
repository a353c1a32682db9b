"""The detector's WARNING events: each said once (by key), so a bad row is one line, not one per pass."""

from __future__ import annotations

import logging
from typing import TypeVar

from ..events.types import EventType, Publish
from ..ids import run_id_problem
from ..state.records import TASK_STATUSES, RunSnapshot

logger = logging.getLogger(__name__)
T = TypeVar("T")


class OnceWarnings:
    """Warnings by key: the first time logged and published, then silent until `clear`."""

    def __init__(self, publish: Publish) -> None:
        self._publish = publish
        self._warned: set[str] = set()

    def warn(self, key: str, what: str, detail: str, run_id: str | None = None) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        logger.warning("%s: %s", what, detail)
        self._publish(EventType.WARNING, {"what": what, "detail": detail}, run_id=run_id)

    def clear(self, key: str) -> None:
        self._warned.discard(key)

    def admit(self, rows: dict[str, T]) -> dict[str, T]:
        """Runs whose id is valid; any other is ignored (it would become a path) with one warning."""
        return {run_id: row for run_id, row in rows.items() if self.admitted(run_id)}

    def admitted(self, run_id: str) -> bool:
        problem = run_id_problem(run_id)
        if problem is not None:
            self.warn(f"bad-id:{run_id!r}", "invalid run id", f"run {run_id!r} is ignored: {problem}")
        return problem is None

    def unknown_task_statuses(self, snapshot: RunSnapshot) -> None:
        for status in snapshot.tasks:
            if status not in TASK_STATUSES:
                self.warn(
                    f"task-status:{snapshot.run_id}:{status}",
                    "unknown status",
                    f"run {snapshot.run_id} has tasks with status {status!r}, counted as not terminal",
                    snapshot.run_id,
                )
