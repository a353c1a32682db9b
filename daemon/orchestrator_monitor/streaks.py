"""Whether a failure is news for the log: the first of a streak of like failures, not each retry of it.

A database away for minutes fails every retry of every loop the same way; the log says so once per
loop (and once more when the error changes), then once when the loop works again.
"""

from __future__ import annotations


class Streak:
    """One loop's run of failures; not thread-safe: each loop keeps its own."""

    def __init__(self) -> None:
        self._last: str | None = None
        self.failures = 0

    def news(self, error: str) -> bool:
        """Count a failure; True when it is the streak's first or differs from the one before."""
        self.failures += 1
        fresh, self._last = error != self._last, error
        return fresh

    def ended(self) -> int:
        """A success: how many failures the streak had (0: none); the next failure is news again."""
        failures, self.failures, self._last = self.failures, 0, None
        return failures
