"""Python `logging` records as lines of `logs/monitor.jsonl`, numbered with the events.

python-json-logger builds the object (`time`, `type` "log", `seq`, `level`, `logger`,
`message`, plus any `extra=` fields); the bus supplies `seq` and puts the line between the
events in `seq` order, so one `tail -F` shows what the daemon did and why.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pythonjsonlogger.orjson import OrjsonFormatter

from ..timefmt import format_timestamp
from .bus import Bus
from .types import LOG_TYPE

LOG_FIELDS = "%(time)s %(type)s %(seq)s %(levelname)s %(name)s %(message)s"
_RENAMED = {"levelname": "level", "name": "logger"}


class BusLogHandler(logging.Handler):
    """Sends each record through the bus; thread-safe through the bus lock, so it needs none of its own."""

    def __init__(self, bus: Bus, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.bus = bus
        self.setFormatter(OrjsonFormatter(LOG_FIELDS, rename_fields=_RENAMED))

    def handle(self, record: logging.LogRecord) -> bool:
        # Without the handler lock `logging` would take around emit(): a record logged while
        # another thread holds the bus lock would otherwise take the two locks in both orders.
        checked = self.filter(record)
        if checked:
            self.emit(checked if isinstance(checked, logging.LogRecord) else record)
        return bool(checked)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.bus.publish_line(lambda seq: self._line(record, seq))
        except Exception:
            self.handleError(record)

    def _line(self, record: logging.LogRecord, seq: int) -> bytes:
        record.time = format_timestamp(datetime.fromtimestamp(record.created, UTC))
        record.type = LOG_TYPE
        record.seq = seq
        return self.format(record).encode() + b"\n"


def install_log_handler(bus: Bus, level: int = logging.INFO) -> BusLogHandler:
    """Route the root logger's records to the bus; remove with `logging.getLogger().removeHandler`."""
    handler = BusLogHandler(bus, level)
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > level or root.level == logging.NOTSET:
        root.setLevel(level)
    return handler
