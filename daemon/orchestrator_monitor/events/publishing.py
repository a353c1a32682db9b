"""Builds the event bus of a workspace from the settings: numbering, log files, run spool, sinks, logging.

The one place that knows which files the bus writes; the daemon (`service/daemon.py`) and commands
that publish (`archive`, `report`) open it with `open_bus(settings)` and get it closed (every
accepted line written and synced) however they leave.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from ..config import Settings
from ..ledger.monitor_db import EventSeqBlocks
from ..ledger.store import MonitorStore, open_store
from ..workspace import Workspace
from .bus import Bus
from .log import refetch_events
from .logrecords import install_log_handler
from .sinks import load_sink
from .sinks.jsonl import ARCHIVAL_LOG, MONITOR_LOG, JsonlSink
from .sinks.spool import RunSpoolSink
from .types import ARCHIVAL_TYPES


@contextmanager
def open_bus(
    settings: Settings, *, log_level: int = logging.INFO, extra_sinks: bool = True, store: MonitorStore | None = None
) -> Iterator[Bus]:
    """A running bus writing `logs/monitor.jsonl`, `logs/archival.jsonl` and the run spool.

    `extra_sinks` False leaves out `events.sinks` (console, plug-ins): for commands that
    publish a few events and must not print them. `store` numbers the events (the daemon's own;
    else one is opened here for the bus's life). Every event carries the daemon's id.
    """
    workspace = Workspace.from_settings(settings)
    events = settings.events
    own_store = store is None
    store = store or open_store(settings)
    assert store is not None
    file_options = {
        "queue_size": events.queue_size,
        "fsync": events.fsync,
        "fsync_interval_seconds": events.fsync_interval_seconds,
    }
    rotation = {"rotate_bytes": events.rotate_bytes, "keep_files": events.keep_files}
    monitor_log = JsonlSink(workspace.logs_dir / MONITOR_LOG, logs=True, **rotation, **file_options)  # type: ignore[arg-type]
    plugins = [(name, load_sink(name, settings)) for name in events.sinks] if extra_sinks else []
    bus = Bus(EventSeqBlocks(store), refetch=partial(refetch_events, monitor_log.path), daemon_id=store.daemon_id)
    handler: logging.Handler | None = None
    try:
        bus.add_sink(monitor_log)
        bus.add_sink(JsonlSink(workspace.logs_dir / ARCHIVAL_LOG, types=ARCHIVAL_TYPES, **rotation, **file_options))  # type: ignore[arg-type]
        bus.add_sink(RunSpoolSink(workspace.monitor_dir, **file_options))  # type: ignore[arg-type]
        for name, sink in plugins:
            bus.add_sink(sink, name=name, queue_size=events.subscriber_queue_size)
        handler = install_log_handler(bus, log_level)
        yield bus
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
        bus.close()
        if own_store:
            store.dispose()
