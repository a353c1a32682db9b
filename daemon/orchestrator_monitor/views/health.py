"""`orchestrator health`: run the checks once here, and read the running daemon's heartbeat and view.

The command is a second opinion beside the daemon: it checks the database and the archive
storage itself (so it works with no daemon at all) and adds what only the daemon knows
(monitoring loop, report failures, safe modes, escalations) from its heartbeat row, but only
while that heartbeat is fresh: a stale daemon's view is history, not health.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import exc

from ..alerts.outbox import read_alert_counts
from ..config import Settings
from ..ledger.members import Member, read_members
from ..ledger.monitor_db import Heartbeat, read_heartbeats
from ..ledger.store import MonitorStore, open_store
from ..lineage.outbox import read_lineage_counts
from ..service.health import DatabaseChecker, check_archival_storage, check_heartbeats, process_alive
from ..service.safemode import Condition, Observation
from ..state.access import SchemaMismatch, check_fit, configured_mapping
from ..state.engine import describe_database, open_engine, sqlite_path
from ..workspace import Workspace

SCHEMA = "db_schema_check"


def collect_health(settings: Settings, now: datetime) -> dict[str, Any]:
    """`healthy` (live and every check passing), `live`, and each check's status and detail."""
    workspace = Workspace.from_settings(settings)
    busy = settings.database.busy_timeout_seconds
    url = settings.database_url()
    name = describe_database(url)
    db_file = sqlite_path(url)
    server = None if db_file is not None else open_engine(url, busy_timeout_seconds=busy, readonly=True)
    try:
        database = DatabaseChecker(db_file, server, name, timeout_seconds=busy)(settings.health.quick_check_seconds)
        schema = _schema_check(settings, url, name) if database.condition is Condition.OK else None
    finally:
        if server is not None:
            server.dispose()
    storage = check_archival_storage(
        workspace.archive_root,
        reserve_bytes=settings.archive.reserve_bytes,
        min_free_percent=settings.health.min_free_percent,
    )
    store = open_store(settings, readonly=True)
    try:  # this workspace's daemon is the one checked (by its id on a shared database); the others are listed
        beats = read_heartbeats(store)
        if store is not None and store.shared:
            beats = [b for b in beats if b.daemon_id == settings.daemon_id()]
        daemons = [asdict(member) for member in _members(store)]
    finally:
        if store is not None:
            store.dispose()
    heartbeat, view = daemon_view(settings, beats, now)
    live = heartbeat.condition is Condition.OK
    observed = (heartbeat, database, *((schema,) if schema is not None else ()), storage)
    checks = {o.check: {"status": str(o.condition), "detail": o.detail} for o in observed}
    for name, reported in view.get("checks", {}).items():
        checks.setdefault(name, reported)  # what only the daemon sees (a loop, report failures)
    healthy = live and all(c["status"] == str(Condition.OK) for c in checks.values())
    return {
        "healthy": healthy,
        "live": live,
        "checks": checks,
        "safe_modes": view.get("safe_modes", []),
        "escalations": view.get("escalations", []),
        "recent_errors": view.get("recent_errors", []),
        "alerts": read_alert_counts(workspace.progress_db, busy_timeout_seconds=busy),
        "lineage": read_lineage_counts(workspace.progress_db, busy_timeout_seconds=busy),
        "heartbeat_age_s": max((round(b.age_seconds(now), 3) for b in beats), default=None),
        "daemons": daemons,
    }


def daemon_view(settings: Settings, beats: list[Heartbeat], now: datetime) -> tuple[Observation, dict[str, Any]]:
    """The daemon's liveness from its heartbeats, and what it last reported of itself (its checks, safe
    modes, escalations) while it is live; nothing of a stale daemon, whose view is history."""
    heartbeat = check_heartbeats(
        beats, now=now, stale_after_seconds=settings.health.stale_after_seconds, alive=process_alive
    )
    live = heartbeat.condition is Condition.OK
    return heartbeat, next((b.detail for b in beats if b.job == "scheduler"), {}) if live else {}


def _schema_check(settings: Settings, url: str, name: str) -> Observation:
    """Does the reachable database fit the configured schema mapping? (The daemon refuses one that does not.)"""
    mapping = configured_mapping(settings)
    engine = open_engine(url, busy_timeout_seconds=settings.database.busy_timeout_seconds, readonly=True)
    try:
        check_fit(engine, mapping, name)
    except SchemaMismatch as err:
        return Observation(SCHEMA, Condition.UNAVAILABLE, str(err))
    finally:
        engine.dispose()
    return Observation(SCHEMA, Condition.OK, f"{name} fits the schema mapping {mapping.name!r}")


def read_daemons(settings: Settings) -> list[Member]:
    """The daemons sharing the configured PostgreSQL and whether each holds its lease; none on SQLite."""
    store = open_store(settings, readonly=True)
    try:
        return _members(store)
    finally:
        if store is not None:
            store.dispose()


def _members(store: MonitorStore | None) -> list[Member]:
    if store is None:
        return []
    try:
        return read_members(store)
    except exc.DBAPIError:  # no monitor_ tables yet (no daemon ever ran on it)
        return []
