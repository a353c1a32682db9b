"""Sending the lineage outbox's rows through openlineage-python's client and transport (the thread, retries
and backoff: `events/outbox.py`).

The RunEvent is built here, when it is sent, from what the sink recorded: the job, the time, the
end state and the monitor event's data for the facets. The transport's own retries are off: the
outbox retries, with a backoff that outlasts an endpoint's restart, and remembers across ours.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import orjson
from openlineage.client import OpenLineageClient
from openlineage.client.generated.base import EventType, Job, Run, RunEvent, RunFacet

from ..config import OpenLineageSettings
from ..events.outbox import Attempt, Outbox, OutboxDelivery, Pending
from .facets import PRODUCER, archive_facets, outcome_facets

RUN_ID_NAMESPACE = uuid.UUID("5b0e7d3c-4f4e-4c8a-9a43-1f0c8a1e6d21")  # fixed: a run keeps its UUID forever
START, END, ARCHIVED = "START", "END", "ARCHIVED"
_FACETS: dict[str, Callable[[dict[str, object]], dict[str, RunFacet]]] = {
    START: lambda data: {},
    END: outcome_facets,
    ARCHIVED: archive_facets,
}


def lineage_run_id(namespace: str, run_id: str) -> str:
    return str(uuid.uuid5(RUN_ID_NAMESPACE, f"{namespace}/{run_id}"))


class LineageDelivery(OutboxDelivery):
    """Emits the due RunEvents, a run's in order, until stopped; `shown` names the endpoint in the log."""

    def __init__(
        self,
        outbox: Outbox,
        settings: OpenLineageSettings,
        client: OpenLineageClient,
        shown: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(outbox, settings, name="lineage", clock=clock)
        self._namespace = settings.namespace
        self._client = client
        self.shown = shown

    def describe(self, row: Pending) -> str:
        return f"OpenLineage {row.payload['state']} of run {row.payload['run_id']} to {self.shown}"

    def send(self, row: Pending) -> Attempt:
        """Raises what the transport raised (an endpoint down, an HTTP error): the outbox retries."""
        payload = row.payload
        facets = _FACETS[payload["phase"]](orjson.loads(payload["data"]))
        event = RunEvent(
            eventType=EventType(payload["state"]),
            eventTime=payload["time"],
            run=Run(runId=lineage_run_id(self._namespace, payload["run_id"]), facets=facets),
            job=Job(namespace=self._namespace, name=payload["job"]),
            producer=PRODUCER,
        )
        self._client.emit(event)
        return Attempt.SENT
