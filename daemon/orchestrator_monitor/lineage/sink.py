"""The OpenLineage sink: a RunEvent per run through openlineage-python's HTTP or file transport.

START when the run is first seen running (`RUN_STATUS_CHANGED` to RUNNING; a run first seen
already ended gets its START just before its end), then at `RUN_COMPLETED` the terminal event,
COMPLETE, FAIL (FAILED and PARTIAL) or ABORT (CANCELLED), with the monitor's outcome and the
task counts; once the run's bag is published (`RUN_ARCHIVED`), an OTHER event adds the
archive's location and manifest digest (the spec's way to add metadata after the end). Each is
sent once per run, also across restarts (`record.py`). The job is `openlineage.namespace` and
`openlineage.job_name`, else the run's name, else its id; the OpenLineage run id is a UUID
derived from the namespace and the run id, so every event of a run carries the same one.

The bus feeds it on its own thread, which puts each event in the outbox (`lineage/outbox.py`);
the delivery thread sends it, retrying with backoff while the endpoint is down, a run's events in
order, what is pending surviving kill -9 (`lineage/delivery.py`). While it fails the sink's
health says so (the check `openlineage_sink`), and its counters are in the metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from openlineage.client import OpenLineageClient
from openlineage.client.generated.base import EventType
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport, TokenProvider
from openlineage.client.transport.transport import Transport
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..config import OpenLineageSettings, Settings, url_origin
from ..events.bus import Bus
from ..events.outbox import Outbox
from ..events.subscription import SinkHealth
from ..events.types import Event
from ..events.types import EventType as MonitorEvent
from ..state.engine import read_transaction
from ..state.queries import fetch_run
from ..state.tables import StateTables
from ..workspace import Workspace
from .delivery import ARCHIVED, END, START, LineageDelivery
from .facets import END_STATES
from .outbox import DESTINATION, KEEP_SECONDS, lineage_outbox
from .record import LineageRecord

logger = logging.getLogger(__name__)

RunName = Callable[[str], str | None]
LINEAGE_TYPES = frozenset({MonitorEvent.RUN_STATUS_CHANGED, MonitorEvent.RUN_COMPLETED, MonitorEvent.RUN_ARCHIVED})
OFFERED_LIMIT = 10_000
SINK_NAME = "openlineage"  # on the bus, and its health check `openlineage_sink`
CLOSE_SECONDS = 5.0  # a delivery attempt under way at shutdown is given this long
NO_RETRIES = {"total": 0}  # urllib3's: the outbox retries (and remembers across restarts)


def build_transport(settings: OpenLineageSettings, workspace: Settings) -> Transport:
    if settings.transport == "file":
        path = workspace.resolve(settings.file)
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileTransport(FileConfig(log_file_path=str(path), append=True))
    auth = ApiKeyTokenProvider({"apiKey": settings.api_key}) if settings.api_key else TokenProvider({})
    assert settings.url is not None  # the settings' validator
    config = HttpConfig(
        url=settings.url, endpoint=settings.endpoint, timeout=settings.timeout_seconds, auth=auth, retry=NO_RETRIES
    )
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
    """`handle(event)` and `close()`, as the bus wants a sink, and `health()` for the daemon's checks."""

    def __init__(
        self,
        settings: OpenLineageSettings,
        transport: Transport,
        outbox: Outbox,
        record: LineageRecord,
        run_name: RunName,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._client = OpenLineageClient(transport=transport)
        self._outbox = outbox
        self._record = record
        self._run_name = run_name
        self._clock = clock
        shown = url_origin(settings.url) if settings.transport == "http" and settings.url else str(settings.file)
        self.delivery = LineageDelivery(outbox, settings, self._client, shown, clock=clock)
        self._offered: set[str] = set()  # runs whose RUNNING was queued (the publisher's thread only)

    def wire(self, bus: Bus, *, queue_size: int) -> None:
        """Feed this sink from `bus` (its own thread and queue) and start delivering."""
        bus.add_sink(self, name=SINK_NAME, queue_size=queue_size, types=LINEAGE_TYPES, accept=self.wants)
        self.delivery.start()

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
            self._put(run_id, START, EventType.START, event.time, {})
        elif event.type is MonitorEvent.RUN_COMPLETED:
            self._put(run_id, START, EventType.START, event.time, {})
            state = END_STATES.get(str(event.data["status"]), EventType.OTHER)
            self._put(run_id, END, state, event.time, event.data)
        elif event.type is MonitorEvent.RUN_ARCHIVED and self._record.done(run_id, END):
            self._put(run_id, ARCHIVED, EventType.OTHER, event.time, event.data)

    def _put(self, run_id: str, phase: str, state: EventType, time: str, data: Mapping[str, Any]) -> None:
        """Into the outbox, then into the once-table: a crash in between offers it again, which the outbox's
        unique key ignores."""
        if self._record.done(run_id, phase):
            return
        payload = {
            "run_id": run_id,
            "phase": phase,
            "state": state.value,
            "time": time,
            "job": self._settings.job_name or self._run_name(run_id) or run_id,
            "data": orjson.dumps(dict(data)).decode(),
        }
        self._outbox.add(f"{run_id}:{phase}", (DESTINATION,), payload, due=self._clock(), keep_seconds=KEEP_SECONDS)
        self._record.record(run_id, phase)
        self.delivery.wake()

    def health(self) -> SinkHealth:
        """Failing while events wait and the last attempt failed, or some were given up until the next start."""
        delivery = self.delivery
        counts = self._outbox.counts()
        counters = {
            "delivered": delivery.sent,
            "attempts_failed": delivery.failures,
            "undeliverable": delivery.undeliverable,
        }
        waiting = f"{counts['pending']} events waiting ({counts['undeliverable']} undeliverable until the next start)"
        if counts["undeliverable"] or (delivery.last_error is not None and counts["pending"]):
            return SinkHealth(
                False, f"{delivery.shown} does not take events ({delivery.last_error}): {waiting}", counters
            )
        return SinkHealth(True, f"{delivery.shown}: {waiting}", counters)

    def close(self) -> None:
        """Stop delivering (what is pending stays in the outbox for the next start) and close the transport."""
        try:
            self.delivery.close(CLOSE_SECONDS)
            self._client.close(timeout=self._settings.timeout_seconds)
        finally:
            self._outbox.close()
            self._record.close()


def open_lineage_sink(settings: Settings, run_name: RunName) -> LineageSink:
    workspace = Workspace.from_settings(settings)
    busy = settings.database.busy_timeout_seconds
    return LineageSink(
        settings.openlineage,
        build_transport(settings.openlineage, settings),
        lineage_outbox(workspace.progress_db, busy_timeout_seconds=busy),
        LineageRecord(workspace.progress_db, busy_timeout_seconds=busy),
        run_name,
    )
