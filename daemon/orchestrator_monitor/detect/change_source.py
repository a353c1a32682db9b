"""Where the detection loop learns that the state database changed, chosen per backend at start.

- SQLite: inotify on the database file wakes the loop, `PRAGMA data_version` confirms (`inotify`).
- PostgreSQL with the triggers of `orchestrator init --triggers`: LISTEN wakes the loop and a
  notification is the confirmation, so a quiet database costs no query per poll (`notify`).
- PostgreSQL without them (a DBA who allows no triggers), or `database.change_detection =
  "watermark"`: one tiny query per poll, and the full reconciliation every period whatever it
  says, since a watermark can miss a change (`watermark`).
- Any other backend, or `database.change_detection = "poll"`: every poll counts as a change (`poll`).

The daemon logs which one it uses and puts it in `MONITOR_STARTED` (`change_detection`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..state.access import StateDatabase
from ..state.connection import StateConnection
from ..state.engine import sqlite_path
from ..state.notify import ChangeListener, NotifyProbe, listener_connector
from ..state.probe import PollingProbe, SqliteProbe
from ..state.triggers import channel_name, current_schema, installed
from ..state.watermark import WatermarkProbe, leading_columns, watermark_query
from .job import Probe
from .watch import RunDirWatcher, Signals

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChangeSource:
    mode: str  # inotify, notify, watermark or poll
    probe: Probe
    may_miss: bool  # the probe can miss a change: reconcile every period regardless
    # A configured debounce suits inotify, which sends several events per commit, before it is
    # visible. A notification is sent once per commit, after it; those arriving during a pass are
    # taken together by the next one.
    debounce: bool = True

    def debounce_seconds(self, configured: float) -> float:
        return configured if self.debounce else 0.0


@contextmanager
def watch_database(
    state: StateDatabase, connection: StateConnection, signals: Signals, watcher: RunDirWatcher, choice: str = "auto"
) -> Iterator[ChangeSource]:
    """The change source for this database, running until the context ends; `choice` is
    `database.change_detection` (PostgreSQL: auto, watermark or poll)."""
    db_file = sqlite_path(state.url)
    if db_file is not None:
        watcher.watch_state(db_file.parent, db_file.name)
        yield _chosen(ChangeSource("inotify", SqliteProbe(db_file, connection), may_miss=False), state.name)
        return
    if state.engine.dialect.name != "postgresql" or choice == "poll":
        yield _chosen(ChangeSource("poll", PollingProbe(), may_miss=False), state.name)
        return
    with connection().begin():
        schema = current_schema(connection())
        triggers = choice == "auto" and installed(connection(), state.mapping, schema)
        indexed = [] if triggers else leading_columns(connection(), state.mapping)
    if not triggers:
        probe = WatermarkProbe(connection, watermark_query(state.mapping, indexed))
        probe.reset()
        yield _chosen(ChangeSource("watermark", probe, may_miss=True), state.name)
        return
    notify = NotifyProbe(connection, signals.state_changed)
    listener = ChangeListener(
        listener_connector(state.engine), channel_name(schema), notify, on_reconnect=signals.overflowed
    )
    listener.start()
    try:
        yield _chosen(ChangeSource("notify", notify, may_miss=False, debounce=False), state.name)
    finally:
        listener.close()


def _chosen(source: ChangeSource, database: str) -> ChangeSource:
    how = {
        "inotify": "inotify on the database file, confirmed by data_version",
        "notify": "LISTEN/NOTIFY from the monitor's triggers",
        "watermark": "a watermark poll (no triggers: `orchestrator init --triggers` installs them)",
        "poll": "a poll of every open run",
    }[source.mode]
    logger.info("change detection on %s: %s", database, how)
    return source
