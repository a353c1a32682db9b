from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from orchestrator_monitor.config import load_settings
from orchestrator_monitor.errors import BadInput
from orchestrator_monitor.events.publishing import open_bus
from orchestrator_monitor.events.sinks import ENTRY_POINT_GROUP, load_sink
from orchestrator_monitor.events.types import EventType

# A plug-in as the README tells one to write it: the imports are the documented public ones
# (evaluated at definition time: no `from __future__ import annotations` here).
PLUGIN = """
from pathlib import Path

from orchestrator_monitor.config import Settings
from orchestrator_monitor.events.subscription import Sink
from orchestrator_monitor.events.types import Event


class RecordingSink:
    def __init__(self, path: Path) -> None:
        self.out = path.open("a", encoding="utf-8")

    def handle(self, event: Event) -> None:
        self.out.write(f"{event.seq} {event.type}\\n")

    def close(self) -> None:
        self.out.close()


def recording_sink(settings: Settings) -> Sink:
    return RecordingSink(settings.workspace / "plugin.out")
"""


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A real distribution on sys.path: a module and a .dist-info whose entry_points.txt names it."""
    site = tmp_path / "site"
    info = site / "recording_sink_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (site / "recording_sink_plugin.py").write_text(PLUGIN, encoding="utf-8")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: recording-sink-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nrecording = recording_sink_plugin:recording_sink\n")
    monkeypatch.syspath_prepend(str(site))
    yield tmp_path / "ws"
    sys.modules.pop("recording_sink_plugin", None)


def test_a_sink_plugin_registered_by_entry_point_gets_every_event(installed_plugin: Path) -> None:
    settings = load_settings(installed_plugin, environ={"ORCHESTRATOR_EVENTS_SINKS": "recording"})
    with open_bus(settings) as bus:
        published = [bus.publish(EventType.HEARTBEAT, {"uptime_s": n, "safe_mode": False}) for n in range(5)]
    lines = (installed_plugin / "plugin.out").read_text(encoding="utf-8").splitlines()
    assert lines == [f"{seq} HEARTBEAT" for seq in published]


def test_an_unknown_sink_is_refused_naming_the_ones_there_are(installed_plugin: Path) -> None:
    settings = load_settings(installed_plugin, environ={}, overrides=["events.sinks=console,nope"])
    with pytest.raises(BadInput, match=r"unknown sink 'nope' \(available: console, nats, recording\)"):
        load_sink("nope", settings)
