"""A readable line per event (and per log record), for a daemon running in the foreground and `orchestrator events`."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, TextIO

import orjson

from ..types import LOG_TYPE, Event

_TYPE_WIDTH = 18


def format_line(obj: Mapping[str, Any]) -> str:
    """`time  seq  TYPE  run  key=value ...`; a log record shows its level, logger and message."""
    head = f"{obj.get('time', '?')}  {obj.get('seq', '?'):>7}  "
    if obj.get("type") == LOG_TYPE:
        level = str(obj.get("level", "?")).lower()
        return f"{head}{level:<{_TYPE_WIDTH}} {obj.get('logger', '?')}: {obj.get('message', '')}"
    data = obj.get("data")
    details = " ".join(f"{key}={_show(value)}" for key, value in data.items()) if isinstance(data, Mapping) else ""
    return f"{head}{obj.get('type', '?'):<{_TYPE_WIDTH}} {obj.get('run_id') or '-'}  {details}".rstrip()


def _show(value: object) -> str:
    if isinstance(value, str):
        return value if value and " " not in value else orjson.dumps(value).decode()
    return orjson.dumps(value).decode()


class ConsoleSink:
    """Prints each event as `format_line` does, flushed at once so a terminal shows it live."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout

    def handle(self, event: Event) -> None:
        self._stream.write(format_line(event.to_json()) + "\n")
        self._stream.flush()

    def close(self) -> None:
        self._stream.flush()
