"""The fixity audit: a scheduled job that re-reads published bags against their manifests.

Each pass takes its share of the catalog, the bags verified longest ago first (never verified
before all), so that every bag is re-read within `audit.cycle_days`; the reads are held to
`audit.bytes_per_second` (a sleep between chunks), and a stop ends a pass between two chunks.
Each result and its time go into the catalog. A daemon audits the bags stored under its own archive
root (several daemons on one PostgreSQL may each have their own). A bag that no longer matches its manifest (or is
gone) gives `ARCHIVE_CORRUPT` and stays marked `corrupt` in the catalog, so nothing later relies on
it; while any bag is marked so, the `fixity_audit` check is failing and the escalation
`archive_corrupt` stays open (safemode.py). A later pass that finds the bag sound again clears it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..archive.verify import verify_bag
from ..config import AuditSettings
from ..events.types import EventType, Publish
from ..ledger.catalog import VERIFIED_CORRUPT, VERIFIED_OK, ArchiveFilter, Catalog
from ..timefmt import format_timestamp
from .safemode import Condition, Observation

logger = logging.getLogger(__name__)
AUDIT = "fixity_audit"  # the job's and the health check's name
DAY_SECONDS = 86_400.0
PROBLEMS_SHOWN = 20  # of a corrupt bag's problems in its event


class AuditStopped(Exception):
    """The daemon is stopping: the bag being read is left unrecorded."""


def audit_share(total: int, interval_seconds: float, cycle_days: float) -> int:
    """Bags per pass so that passes every `interval_seconds` read all `total` within `cycle_days`."""
    if total <= 0:
        return 0
    return min(total, math.ceil(total * interval_seconds / (cycle_days * DAY_SECONDS)))


class Throttle:
    """Told each chunk read: waits until that many bytes are due at `bytes_per_second` (0: no limit)."""

    def __init__(
        self,
        bytes_per_second: int,
        stop: threading.Event,
        *,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        self._rate = bytes_per_second
        self._stop = stop
        self._clock = clock
        self._wait = wait or stop.wait
        self._start = clock()
        self.bytes_read = 0

    def __call__(self, size: int) -> None:
        self.bytes_read += size
        if self._stop.is_set():
            raise AuditStopped
        if self._rate:
            ahead = self._start + self.bytes_read / self._rate - self._clock()
            if ahead > 0 and self._wait(ahead):
                raise AuditStopped


@dataclass
class AuditPass:
    verified: list[str] = field(default_factory=list)  # in the order read
    corrupt: list[str] = field(default_factory=list)
    bytes_read: int = 0


class FixityAudit:
    def __init__(
        self,
        catalog: Catalog,
        settings: AuditSettings,
        publish: Publish,
        observe: Callable[[Observation], None],
        stop: threading.Event,
        archive_root: Path,
        *,
        throttle: Callable[[], Throttle] | None = None,
    ) -> None:
        self._catalog = catalog
        self._root = str(archive_root)
        self._settings = settings
        self._publish = publish
        self._observe = observe
        self._stop = stop
        self._throttle = throttle or (lambda: Throttle(settings.bytes_per_second, stop))
        self._failing = False

    def run_pass(self, now: datetime) -> AuditPass:
        """Verify this pass's share of the bags, oldest verification first; record each result."""
        done = AuditPass()
        mine = self._catalog.count(under=self._root)
        share = audit_share(mine, self._settings.interval_seconds, self._settings.cycle_days)
        pace = self._throttle()
        for entry in self._catalog.due_for_audit(share, under=self._root):
            bag = Path(entry.locations[0]) if entry.locations else None
            try:
                problems = self._problems(bag, pace)
            except AuditStopped:
                break
            at = format_timestamp(now)
            done.verified.append(entry.run_id)
            if problems:
                done.corrupt.append(entry.run_id)
                self._catalog.record_check(entry.run_id, at, VERIFIED_CORRUPT, "; ".join(problems[:PROBLEMS_SHOWN]))
                logger.error("archive of run %s is corrupt: %s", entry.run_id, problems[0])
                data = {"archive_path": str(bag), "problems": problems[:PROBLEMS_SHOWN]}
                self._publish(EventType.ARCHIVE_CORRUPT, data, run_id=entry.run_id)
            else:
                self._catalog.record_check(entry.run_id, at, VERIFIED_OK, None)
        done.bytes_read = pace.bytes_read
        self._report()
        return done

    def _problems(self, bag: Path | None, pace: Throttle) -> list[str]:
        if bag is None or not bag.is_dir():
            return [f"{bag}: the bag is gone"]
        return verify_bag(bag, pace).problems

    def _report(self) -> None:
        """The health check: failing while the catalog holds a corrupt bag (said once it changes)."""
        corrupt = self._catalog.search(ArchiveFilter(result=VERIFIED_CORRUPT), limit=5)
        if corrupt.total:
            names = ", ".join(e.run_id for e in corrupt.entries) + (", ..." if corrupt.total > 5 else "")
            self._observe(Observation(AUDIT, Condition.CORRUPT, f"{corrupt.total} corrupt archives: {names}"))
            self._failing = True
        elif self._failing:
            self._observe(Observation(AUDIT, Condition.OK, "every audited archive matches its manifest"))
            self._failing = False


def audit_job(
    settings: AuditSettings,
    catalog: Catalog,
    publish: Publish,
    observe: Callable[[Observation], None],
    stop: threading.Event,
    archive_root: Path,
) -> tuple[str, float, Callable[[datetime], object]] | None:
    """The scheduler's entry (name, interval, one pass), or None when `audit.enabled` is off."""
    if not settings.enabled:
        return None
    audit = FixityAudit(catalog, settings, publish, observe, stop, archive_root)
    return AUDIT, settings.interval_seconds, audit.run_pass
