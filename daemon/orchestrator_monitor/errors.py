"""Errors that reach the user, each carrying the exit code of the spec.

Every module raises one of these for a condition a user can act on; `cli/main.py` turns it
into one line on stderr and the exit code, so no traceback ever reaches the user.
"""

from __future__ import annotations


class MonitorError(Exception):
    """Base class: a message for the user and the exit code that goes with it."""

    exit_code = 1


class ProblemFound(MonitorError):
    """The operation ran and found a problem (unhealthy, mismatch, run not terminal)."""

    exit_code = 1


class BadInput(MonitorError):
    """Bad input: malformed or unknown run id, bad configuration, bad flags."""

    exit_code = 2


class Unavailable(MonitorError):
    """Something needed to do the work is unavailable (database, storage, a lock)."""

    exit_code = 3
