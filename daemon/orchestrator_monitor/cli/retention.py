"""`orchestrator retention plan|run`: what the retention policies would delete and why, or one pass now.

`plan` makes every check a pass makes (the bags re-verified, the run directories compared with
them) and changes nothing. `run` refuses while retention is off or the running daemon is in safe
mode (exit 3), and while another pass runs. Exit codes: 0 done (held steps are listed, not
failures); 2 bad input; 3 refused or no workspace.
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from ..config import Settings
from ..errors import Unavailable
from ..events.publishing import open_bus
from ..events.types import EventType
from ..ledger.monitor_db import read_heartbeats
from ..ledger.store import MonitorStore, open_store
from ..offload.remote import make_confirmer
from ..retention.prune import PassReport, Retention
from ..timefmt import utc_now
from ..views.health import daemon_view
from ..workspace import Workspace
from .render import write_json

COLUMNS = ("run_id", "target", "action", "why")


def retention_command(settings: Settings, action: str, as_json: bool, out: Console) -> int:
    workspace = Workspace.from_settings(settings)
    workspace.check_initialised()
    store = open_store(settings)
    assert store is not None
    confirm = make_confirmer(settings, store)  # None with offload off: no local bag ever goes
    try:
        if action == "plan":
            retention = Retention(settings.retention, workspace, store, _no_events, confirm_offloaded=confirm)
            report = retention.plan(utc_now())
        else:
            modes = _daemon_safe_modes(settings, store)
            with open_bus(settings, extra_sinks=False, store=store) as bus:
                retention = Retention(
                    settings.retention,
                    workspace,
                    store,
                    bus.publish,
                    confirm_offloaded=confirm,
                    safe_modes=lambda: modes,
                )
                report = retention.run_pass(utc_now())
            if report.refused is not None:
                raise Unavailable(f"retention run refused: {report.refused}")
    finally:
        store.dispose()
    _print(report, as_json, applied=action == "run", out=out)
    return 0


def _no_events(type: EventType, data: dict[str, Any], *, run_id: str | None = None) -> None:
    """A plan publishes nothing."""


def _daemon_safe_modes(settings: Settings, store: MonitorStore) -> list[str]:
    """The safe modes the workspace's live daemon reports (none without a live daemon)."""
    beats = [b for b in read_heartbeats(store) if not store.shared or b.daemon_id == settings.daemon_id()]
    _, view = daemon_view(settings, beats, utc_now())
    return list(view.get("safe_modes", []))


def _rows(report: PassReport, applied: bool) -> list[dict[str, str]]:
    done = "deleted" if applied else "delete"
    return [
        {
            "run_id": step.run_id,
            "target": str(step.target),
            "action": done if step.held is None else f"hold: {step.held}",
            "why": f"{step.detail} ({step.why})" if step.detail else step.why,
        }
        for step in report.steps
    ]


def _print(report: PassReport, as_json: bool, *, applied: bool, out: Console) -> None:
    rows = _rows(report, applied)
    if as_json:
        write_json({"applied": applied, "stopped": report.stopped, "steps": rows}, sys.stdout)
        return
    goes = sum(row["action"] in ("delete", "deleted") for row in rows)
    verb = "deleted" if applied else "would be deleted"
    table = Table(*COLUMNS, title=f"retention: {goes} {verb}, {len(rows) - goes} held")
    for row in rows:
        table.add_row(*(row[c] for c in COLUMNS))
    out.print(table)
