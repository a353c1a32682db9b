"""The offload job: a pass every `offload.interval_seconds` (none in safe mode), and its health check.

The check `offload` fails while the last pass left a bag not sent (its detail names how many, where and
why) and passes again after a pass that sent everything due; the bags stay local all the while.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from ..config import Settings
from ..events.types import Publish
from ..ledger.catalog import Catalog
from ..ledger.store import MonitorStore
from ..offload.journal import OffloadJournal
from ..offload.offloader import Offloader, OffloadPass
from ..offload.open import open_targets
from .safemode import Condition, Observation

OFFLOAD = "offload"  # the job's and the health check's name


def report_pass(done: OffloadPass, total_failures: int) -> Observation:
    if done.failed:
        target, run_id, reason = done.failed[0]
        detail = f"{len(done.failed)} bags not offloaded ({total_failures} failures since start)"
        detail += f"; {run_id} to {target}: {reason}"
        return Observation(OFFLOAD, Condition.FAILED, detail)
    return Observation(OFFLOAD, Condition.OK, f"{len(done.sent)} bags offloaded this pass")


def offload_job(
    settings: Settings,
    store: MonitorStore,
    publish: Publish,
    observe: Callable[[Observation], None],
    stop: threading.Event,
    archive_root: Path,
    allowed: Callable[[], bool],
) -> tuple[tuple[str, float, Callable[[datetime], object]], Offloader] | None:
    """The scheduler's entry (name, interval, one pass) and the offloader to close, or None when off."""
    if not settings.offload.enabled:
        return None
    offloader = Offloader(
        settings.offload, open_targets(settings), Catalog(store), OffloadJournal(store), publish, stop, archive_root
    )

    def run(now: datetime) -> None:
        if allowed():
            observe(report_pass(offloader.run_pass(now), offloader.failures))

    return (OFFLOAD, settings.offload.interval_seconds, run), offloader
