"""The monitor's custom run facets and its words for a run's end, in OpenLineage's terms.

Custom facets carry a `_producer` and a `_schemaURL`; ours point at this package's facet
schema (`schema/openlineage-facets.json`), one definition per facet.
"""

from __future__ import annotations

from typing import Any

import attr
from openlineage.client.generated.base import EventType, RunFacet

from .. import __version__

PRODUCER = f"https://pypi.org/project/orchestrator-monitor/{__version__}"
FACETS_SCHEMA = "https://pypi.org/project/orchestrator-monitor/schema/openlineage-facets.json"

END_STATES: dict[str, EventType] = {
    "COMPLETED": EventType.COMPLETE,
    "FAILED": EventType.FAIL,
    "PARTIAL": EventType.FAIL,
    "CANCELLED": EventType.ABORT,
}


@attr.define
class MonitorOutcomeRunFacet(RunFacet):
    """How the monitor saw the run end: its status (PARTIAL kept, which an executor may not store), who marked it."""

    status: str
    markedBy: str

    @staticmethod
    def _get_schema() -> str:
        return f"{FACETS_SCHEMA}#/$defs/MonitorOutcomeRunFacet"


@attr.define
class TaskCountsRunFacet(RunFacet):
    """The run's tasks by status at its end."""

    counts: dict[str, int]
    total: int

    @staticmethod
    def _get_schema() -> str:
        return f"{FACETS_SCHEMA}#/$defs/TaskCountsRunFacet"


@attr.define
class ArchiveRunFacet(RunFacet):
    """Where the run's BagIt bag is and the SHA-256 of its manifest (what `orchestrator verify` rechecks)."""

    location: str
    manifestSha256: str
    files: int
    bytes: int

    @staticmethod
    def _get_schema() -> str:
        return f"{FACETS_SCHEMA}#/$defs/ArchiveRunFacet"


def outcome_facets(data: dict[str, Any]) -> dict[str, RunFacet]:
    """A RUN_COMPLETED event's data as run facets."""
    counts = {str(status): int(count) for status, count in dict(data["tasks"]).items()}
    return {
        "orchestratorMonitor_outcome": MonitorOutcomeRunFacet(
            status=str(data["status"]), markedBy=str(data["marked_by"]), producer=PRODUCER
        ),
        "orchestratorMonitor_tasks": TaskCountsRunFacet(counts=counts, total=sum(counts.values()), producer=PRODUCER),
    }


def archive_facets(data: dict[str, Any]) -> dict[str, RunFacet]:
    """A RUN_ARCHIVED event's data as a run facet."""
    return {
        "orchestratorMonitor_archive": ArchiveRunFacet(
            location=str(data["archive_path"]),
            manifestSha256=str(data["manifest_sha256"]),
            files=int(data["files"]),
            bytes=int(data["bytes"]),
            producer=PRODUCER,
        )
    }
