"""orchestrator-monitor: watches a run orchestrator's state, marks, archives and reports finished runs."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("orchestrator-monitor")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
