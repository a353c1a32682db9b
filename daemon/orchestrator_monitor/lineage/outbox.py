"""OpenLineage events waiting for delivery, in the table `monitor_lineage_outbox` of `.monitor/monitor.db`.

The sink records what to say (the run, the phase, the event's inputs) and the delivery thread
builds the RunEvent when it sends it (`lineage/delivery.py`). A run's rows go out in the order
they were added, each only once its earlier ones went (`in_order_of`): START before its end,
also across retries and restarts. Free of openlineage-python, so `orchestrator health` can read it.
"""

from __future__ import annotations

from pathlib import Path

from ..events.outbox import Outbox, read_counts

TABLE = "monitor_lineage_outbox"
PAYLOAD = ("run_id", "phase", "state", "time", "job", "data")
DESTINATION = "openlineage"  # one: the configured transport, whatever it is at the time of sending
KEEP_SECONDS = 86400.0  # a delivered row is forgotten after this (the once-table `monitor_lineage` remembers)


def lineage_outbox(path: Path, *, busy_timeout_seconds: float) -> Outbox:
    """Not power-safe, unlike the alerts': three rows per run, each without an fsync, so a burst of runs does not
    hold up the alerts' writes to the same database; kill -9 loses none."""
    return Outbox(
        path,
        table=TABLE,
        payload=PAYLOAD,
        in_order_of="run_id",
        power_safe=False,
        busy_timeout_seconds=busy_timeout_seconds,
    )


def read_lineage_counts(path: Path, *, busy_timeout_seconds: float) -> dict[str, int]:
    """The outbox's counts for `orchestrator health`, read-only; zeros when there is no outbox."""
    return read_counts(path, TABLE, busy_timeout_seconds=busy_timeout_seconds)
