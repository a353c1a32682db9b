"""Telling a monitoring loop from a busy executor, as a pure state machine.

A wake-up that finds the database unchanged is spurious (a file touched by someone else,
or the monitor's own writes feeding its watcher). A sustained rate of them is a loop: the
detection job then stops reacting to file events and polls slowly (safe mode
`monitoring_loop`) until the rate has stayed low for a calm period. Real commits never
count, so a busy executor never trips it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum

MAX_SPURIOUS_PER_SECOND = 20.0
WINDOW_SECONDS = 10.0
CALM_SECONDS = 30.0


class GuardChange(Enum):
    ENTERED = "entered"
    EXITED = "exited"


@dataclass
class LoopGuard:
    max_per_second: float = MAX_SPURIOUS_PER_SECOND
    window_seconds: float = WINDOW_SECONDS
    calm_seconds: float = CALM_SECONDS
    storm: bool = False

    def __post_init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque()
        self._since: float | None = None  # when the samples began (a rate needs a full window)
        self._calm_since: float | None = None

    def observe(self, now: float, spurious: int) -> GuardChange | None:
        """Record the spurious wake-ups seen at `now` (monotonic); say when the mode changes."""
        if self._since is None:
            self._since = now
        self._samples.append((now, spurious))
        while self._samples and self._samples[0][0] < now - self.window_seconds:
            self._samples.popleft()
        full_window = now - self._since >= self.window_seconds
        rate = sum(count for _, count in self._samples) / self.window_seconds
        if not self.storm:
            if full_window and rate > self.max_per_second:
                self.storm, self._calm_since = True, None
                return GuardChange.ENTERED
            return None
        if rate > self.max_per_second / 4:
            self._calm_since = None
            return None
        if self._calm_since is None:
            self._calm_since = now
        if now - self._calm_since >= self.calm_seconds:
            self.storm = False
            return GuardChange.EXITED
        return None
