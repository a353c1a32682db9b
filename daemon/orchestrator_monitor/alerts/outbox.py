"""Alerts waiting for delivery, in the table `monitor_alerts` of `.monitor/monitor.db` (`events/outbox.py`).

One row per alert and destination, so that a destination that took it is never sent it again
while another is retried. The key is the rule and the run (or event): the same run alerting the
same rule again is ignored, which is the de-duplication. The destination is kept as a digest of
its URL, never the URL (it holds credentials).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..events.outbox import Outbox, read_counts

TABLE = "monitor_alerts"
PAYLOAD = ("rule", "title", "body")


def destination_id(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:32]


def alert_outbox(path: Path, *, busy_timeout_seconds: float) -> Outbox:
    return Outbox(path, table=TABLE, payload=PAYLOAD, busy_timeout_seconds=busy_timeout_seconds)


def read_alert_counts(path: Path, *, busy_timeout_seconds: float) -> dict[str, int]:
    """The outbox's counts for `orchestrator health`, read-only; zeros when there is no outbox."""
    return read_counts(path, TABLE, busy_timeout_seconds=busy_timeout_seconds)
