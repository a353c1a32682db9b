"""Sinks by name: the built-in ones and plug-ins from the entry-point group `orchestrator_monitor.sinks`.

A plug-in's entry point names a factory `factory(settings) -> sink`, where the sink has
`handle(event)` and `close()`; the bus feeds it from its own thread and bounded queue, so
a slow or failing plug-in never holds the daemon back.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

from ...config import Settings
from ...errors import BadInput
from ..subscription import Sink
from .console import ConsoleSink

ENTRY_POINT_GROUP = "orchestrator_monitor.sinks"

SinkFactory = Callable[[Settings], Sink]


def console_sink(settings: Settings) -> Sink:
    return ConsoleSink()


BUILTIN_SINKS: dict[str, SinkFactory] = {"console": console_sink}


def load_sink(name: str, settings: Settings) -> Sink:
    """Build the sink `name`; `BadInput` when no built-in or installed plug-in has that name."""
    if name in BUILTIN_SINKS:
        return BUILTIN_SINKS[name](settings)
    found = entry_points(group=ENTRY_POINT_GROUP, name=name)
    if not found:
        known = sorted({*BUILTIN_SINKS, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})
        raise BadInput(f"events.sinks: unknown sink {name!r} (available: {', '.join(known)})")
    entry_point = next(iter(found))
    try:
        factory = entry_point.load()
    except Exception as exc:
        raise BadInput(f"events.sinks: sink plug-in {name!r} ({entry_point.value}) cannot be loaded: {exc}") from None
    return factory(settings)
