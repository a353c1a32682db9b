"""The OpenLineage sink: a RunEvent per run through openlineage-python's HTTP or file transport.

START when the run is first seen running (`RUN_STATUS_CHANGED` to RUNNING; a run first seen
already ended gets its START just before its end), then at `RUN_COMPLETED` the terminal event,
COMPLETE, FAIL (FAILED and PARTIAL) or ABORT (CANCELLED), with the monitor's outcome and the
task counts; once the run's bag is published (`RUN_ARCHIVED`), an OTHER event adds the
archive's location and manifest digest (the spec's way to add metadata after the end). Each is
sent once per run, also across restarts (`record.py`). The job is `openlineage.namespace` and
`openlineage.job_name`, else the run's name, else its id; the OpenLineage run id is a UUID
derived from the namespace and the run id, so every event of a run carries the same one.

The bus feeds it on its own thread, so a slow or absent endpoint never holds up the daemon; an
event the transport could not send is logged and counted, and not retried (lineage is a record
for other systems, not an alert).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from openlineage.client import OpenLineageClient
from openlineage.client.generated.base import EventType, Job, Run, RunEvent, RunFacet
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport, TokenProvider
from openlineage.client.transport.transport import Transport
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..config import OpenLineageSettings, Settings, url_origin
from ..events.types import Event
from ..events.types import EventType as MonitorEvent
from ..state.engine import read_transaction
from ..state.queries import fetch_run
from ..state.tables import StateTables
from ..workspace import Workspace
from .facets import END_STATES, PRODUCER, archive_facets, outcome_facets
from .record import LineageRecord

logger = logging.getLogger(__name__)

RunName = Callable[[str], str | None]
LINEAGE_TYPES = frozenset({MonitorEvent.RUN_STATUS_CHANGED, MonitorEvent.RUN_COMPLETED, MonitorEvent.RUN_ARCHIVED})
OFFERED_LIMIT = 10_000
RUN_ID_NAMESPACE = uuid.UUID("5b0e7d3c-4f4e-4c8a-9a43-1f0c8a1e6d21")  # fixed: a run keeps its UUID forever
START, END, ARCHIVED = "START", "END", "ARCHIVED"


def lineage_run_id(namespace: str, run_id: str) -> str:
    return str(uuid.uuid5(RUN_ID_NAMESPACE, f"{namespace}/{run_id}"))


def build_transport(settings: OpenLineageSettings, workspace: Settings) -> Transport:
    if settings.transport == "file":
        path = workspace.resolve(settings.file)
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileTransport(FileConfig(log_file_path=str(path), append=True))
    auth = ApiKeyTokenProvider({"apiKey": settings.api_key}) if settings.api_key else TokenProvider({})
    assert settings.url is not None  # the settings' validator
    config = HttpConfig(url=settings.url, endpoint=settings.endpoint, timeout=settings.timeout_seconds, auth=auth)
    return HttpTransport(config)


def state_run_names(engine: Engine, tables: StateTables) -> RunName:
    """The run's name from the state database; None when it has none or cannot be read."""

    def read(run_id: str) -> str | None:
        try:
            with read_transaction(engine) as connection:
                run = fetch_run(connection, tables, run_id)
        except SQLAlchemyError as err:
            logger.warning("the name of run %s cannot be read for OpenLineage: %s", run_id, type(err).__name__)
            return None
        name = run.get("name") if run else None
        return str(name) if name else None

    return read


class LineageSink:
    """`handle(event)` and `close()`, as the bus wants a sink."""

    def __init__(
        self, settings: OpenLineageSettings, transport: Transport, record: LineageRecord, run_name: RunName
    ) -> None:
        self._settings = settings
        self._client = OpenLineageClient(transport=transport)
        self._record = record
        self._run_name = run_name
        self._shown = url_origin(settings.url) if settings.transport == "http" and settings.url else str(settings.file)
        self.sent = 0
        self.failures = 0
        self._offered: set[str] = set()  # runs whose RUNNING was queued (the publisher's thread only)

    def wants(self, type: MonitorEvent, data: Mapping[str, Any], run_id: str | None) -> bool:
        """The bus's filter, on the publisher's thread under its lock: of the status changes, only a run's
        first to RUNNING reaches this sink's queue (a busy executor makes many; one START needs one)."""
        if type is not MonitorEvent.RUN_STATUS_CHANGED:
            return True
        if data["to"] != "RUNNING" or run_id is None or run_id in self._offered:
            return False
        if len(self._offered) >= OFFERED_LIMIT:
            self._offered.clear()  # a run forgotten here is only asked again of the record
        self._offered.add(run_id)
        return True

    def handle(self, event: Event) -> None:
        run_id = event.run_id
        if run_id is None:
            return
        if event.type is MonitorEvent.RUN_STATUS_CHANGED and event.data["to"] == "RUNNING":
            self._start(run_id, event.time)
        elif event.type is MonitorEvent.RUN_COMPLETED:
            self._start(run_id, event.time)
            state = END_STATES.get(str(event.data["status"]), EventType.OTHER)
            self._emit(run_id, END, state, event.time, outcome_facets(dict(event.data)))
        elif event.type is MonitorEvent.RUN_ARCHIVED and self._record.done(run_id, END):
            self._emit(run_id, ARCHIVED, EventType.OTHER, event.time, archive_facets(dict(event.data)))

    def _start(self, run_id: str, time: str) -> None:
        self._emit(run_id, START, EventType.START, time, {})

    def _emit(self, run_id: str, phase: str, state: EventType, time: str, facets: dict[str, RunFacet]) -> None:
        if self._record.done(run_id, phase):
            return
        namespace = self._settings.namespace
        name = self._settings.job_name or self._run_name(run_id) or run_id
        event = RunEvent(
            eventType=state,
            eventTime=time,
            run=Run(runId=lineage_run_id(namespace, run_id), facets=facets),
            job=Job(namespace=namespace, name=name),
            producer=PRODUCER,
        )
        try:
            self._client.emit(event)
        except Exception as err:  # a transport's error may quote its URL: only its type is said
            self.failures += 1
            logger.warning(
                "OpenLineage %s of run %s not sent to %s: %s", state, run_id, self._shown, type(err).__name__
            )
            return
        self._record.record(run_id, phase)
        self.sent += 1

    def stats(self) -> dict[str, int]:
        return {"sent": self.sent, "failures": self.failures}

    def close(self) -> None:
        try:
            self._client.close(timeout=self._settings.timeout_seconds)
        finally:
            self._record.close()


def open_lineage_sink(settings: Settings, run_name: RunName) -> LineageSink:
    workspace = Workspace.from_settings(settings)
    record = LineageRecord(workspace.progress_db, busy_timeout_seconds=settings.database.busy_timeout_seconds)
    return LineageSink(settings.openlineage, build_transport(settings.openlineage, settings), record, run_name)
