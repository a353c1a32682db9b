"""Why an archival did not finish: a failure the operator must see, or a stop that resumes later."""

from __future__ import annotations

import errno

from ..errors import MonitorError, ProblemFound, Unavailable

STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
PERMISSION_ERRNOS = frozenset({errno.EACCES, errno.EPERM})
STORAGE_REASONS = frozenset({"storage_full", "storage_unavailable"})
REOPENED = "run_reopened"  # the run's rows are no longer those its completion was decided on


UNSAFE_RUN_DIR = "unsafe_run_dir"  # the executor's run_dir leaves the workspace: never followed, never retried


class ArchiveFailure(Exception):
    """An archival that failed; `reason` is the ARCHIVE_FAILED reason of the spec."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    @property
    def reopened(self) -> bool:
        """Not a fault: the run is archived once it has ended again (the detector hands it over then)."""
        return self.reason == REOPENED

    @property
    def storage(self) -> bool:
        """The archive storage is full or unusable: the spec's exit 3, not a problem with the run."""
        return self.reason in STORAGE_REASONS

    def as_monitor_error(self) -> MonitorError:
        message = f"archival failed ({self.reason}): {self.detail}"
        return Unavailable(message) if self.storage else ProblemFound(message)


class Interrupted(Exception):
    """The daemon is stopping: staging and journal stay for the next start to resume."""


def storage_failure(err: OSError, what: str) -> ArchiveFailure:
    """The failure for an error while writing the archive (ENOSPC is storage_full, the rest io)."""
    reason = "storage_full" if err.errno in STORAGE_ERRNOS else "io"
    return ArchiveFailure(reason, f"{what}: {err.strerror or err}")
