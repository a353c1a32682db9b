"""The daemon's Prometheus metrics, in a registry of its own (no global state), served at `/metrics`.

Every name carries `metrics.prefix` (`orchestrator_monitor_`), so several exporters can share
one Prometheus. Counters and histograms of runs and archives are fed by the bus like any other
sink (`handle`), on a thread and queue of their own, so a scrape never slows a publisher.
Gauges that describe "now" (heartbeat age, detection lag, open runs, the archive's size, events
by type) are read at scrape time from functions the service hands in, so they are never stale.
The `*_created` series prometheus_client adds to counters and histograms are left out of the
exposition (`render`), without the process-wide switch, which would reach every registry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..config import DEFAULT_METRICS_PREFIX
from ..events.subscription import SinkHealth
from ..events.types import Event, EventType
from ..state.records import RUN_STATUSES, RUN_TERMINAL
from .safemode import SAFE_MODES, Condition, HealthState

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SAFE_MODE_REASONS = tuple(SAFE_MODES.values())
TERMINAL_STATUSES = tuple(status for status in RUN_STATUSES if status in RUN_TERMINAL)
OPEN_STATUSES = tuple(status for status in RUN_STATUSES if status not in RUN_TERMINAL)
RUN_DURATION_BUCKETS = (1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 21600, 86400)  # seconds: runs last minutes to a day
ARCHIVE_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
DETECTION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class _EventCounts(Collector):
    """`events_total{type}` from the bus's own per-type counter, read at scrape time."""

    def __init__(self, name: str, counts: Callable[[], Mapping[EventType, int]]) -> None:
        self._name = name
        self._counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self._name, "Events published on the bus, by type", labels=["type"])
        for type, count in sorted(self._counts().items()):
            family.add_metric([str(type)], count)
        yield family


class _SinkCounters(Collector):
    """`sink_<counter>_total{sink}` (`sink_outages_total`, `sink_resent_total`) from the sinks that report health."""

    def __init__(self, prefix: str, sink_health: Callable[[], Mapping[str, SinkHealth]]) -> None:
        self._prefix = prefix
        self._sink_health = sink_health

    def collect(self) -> Iterator[CounterMetricFamily]:
        families: dict[str, CounterMetricFamily] = {}
        for sink, health in sorted(self._sink_health().items()):
            for counter, value in sorted(health.counters.items()):
                if counter not in families:
                    families[counter] = CounterMetricFamily(
                        f"{self._prefix}sink_{counter}", f"A sink's {counter}", labels=["sink"]
                    )
                families[counter].add_metric([sink], value)
        yield from families.values()


class _OpenRuns(Collector):
    """`open_runs{status}`: the runs the detector follows now, every open status shown (0 included)."""

    def __init__(self, name: str, counts: Callable[[], Mapping[str, int]]) -> None:
        self._name = name
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self._counts()
        family = GaugeMetricFamily(self._name, "Runs not yet terminal, by status", labels=["status"])
        for status in sorted({*OPEN_STATUSES, *counts}):
            family.add_metric([status], counts.get(status, 0))
        yield family


class _AlertCounts(Collector):
    """The alerts' delivery, read from the alert sink at scrape time (zeros when no rule is configured)."""

    def __init__(self, prefix: str, stats: Callable[[], Mapping[str, int]]) -> None:
        self._prefix = prefix
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        p = self._prefix
        for name, help in (
            ("sent", "Alerts delivered to a destination"),
            ("undeliverable", "Alerts given up after alerts.max_attempts (tried again at the next start)"),
            ("dropped", "Alerts dropped because alerts.queue_size were already waiting"),
        ):
            yield CounterMetricFamily(f"{p}alerts_{name}", help, value=stats.get(name, 0))
        yield GaugeMetricFamily(f"{p}alerts_pending", "Alerts waiting for delivery", value=stats.get("pending", 0))


class _WithoutCreated:
    """The registry's families without their `*_created` samples, for `generate_latest`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for family in self._registry.collect():
            family.samples = [sample for sample in family.samples if not sample.name.endswith("_created")]
            yield family


class MonitorMetrics:
    """Every metric of the daemon, named `<prefix><name>`; also a bus sink (`handle`, `close`)."""

    def __init__(self, prefix: str = DEFAULT_METRICS_PREFIX) -> None:
        self.prefix = prefix
        self.registry = CollectorRegistry()
        r, p = self.registry, prefix
        self.runs_completed = Counter(
            f"{p}runs_completed", "Runs that reached a terminal state, by status", ["status"], registry=r
        )
        self.runs_failed = Counter(f"{p}runs_failed", "Runs that ended FAILED", registry=r)
        self.artifacts_archived = Counter(f"{p}artifacts_archived", "Payload files archived", registry=r)
        self.archived_bytes = Counter(f"{p}archived_bytes", "Payload bytes archived by this daemon", registry=r)
        self.archive_size = Gauge(f"{p}archive_size_bytes", "Payload bytes of every published archive", registry=r)
        self.run_duration = Histogram(
            f"{p}run_duration_seconds",
            "Run durations, start to finish (observed when the run's report is written)",
            buckets=RUN_DURATION_BUCKETS,
            registry=r,
        )
        self.archive_duration = Histogram(
            f"{p}archive_duration_seconds",
            "Seconds to build and publish a run's bag",
            buckets=ARCHIVE_DURATION_BUCKETS,
            registry=r,
        )
        self.detection_latency = Histogram(
            f"{p}detection_latency_seconds",
            "Seconds from the detector seeing a run's last change to its completion recorded (settle window included)",
            buckets=DETECTION_BUCKETS,
            registry=r,
        )
        self.dashboard_requests = Counter(
            f"{p}dashboard_requests",
            "HTTP requests served, by route template and status code",
            ["path", "code"],
            registry=r,
        )
        self.request_duration = Histogram(
            f"{p}dashboard_request_duration_seconds",
            "Seconds to answer an HTTP request, by route template",
            ["path"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.check_ok = Gauge(f"{p}health_check_ok", "1 when the check passes, 0 when not", ["check"], registry=r)
        self.healthy = Gauge(f"{p}monitor_healthy", "1 when live and every check passes", registry=r)
        self.safe_mode = Gauge(f"{p}safe_mode", "1 while in this safe mode", ["reason"], registry=r)
        self.escalations_open = Gauge(f"{p}escalations_open", "Escalated incidents not yet over", registry=r)
        self.heartbeat_age = Gauge(f"{p}heartbeat_age_seconds", "Seconds since the last monitor heartbeat", registry=r)
        self.detection_lag = Gauge(
            f"{p}detection_lag_seconds", "Seconds since the detection loop last made a pass", registry=r
        )
        for reason in SAFE_MODE_REASONS:
            self.safe_mode.labels(reason).set(0)
        for status in TERMINAL_STATUSES:
            self.runs_completed.labels(status)

    def bind(
        self,
        *,
        heartbeat_age: Callable[[], float],
        detection_lag: Callable[[], float],
        event_counts: Callable[[], Mapping[EventType, int]],
        sink_health: Callable[[], Mapping[str, SinkHealth]] = dict,
        open_runs: Callable[[], Mapping[str, int]] = dict,
        archive_bytes: Callable[[], float] | None = None,
        alerts: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        """Attach the live readings of the running daemon (read at every scrape)."""
        self.heartbeat_age.set_function(heartbeat_age)
        self.detection_lag.set_function(detection_lag)
        if archive_bytes is not None:
            self.archive_size.set_function(archive_bytes)
        self.registry.register(_EventCounts(f"{self.prefix}events", event_counts))
        self.registry.register(_OpenRuns(f"{self.prefix}open_runs", open_runs))
        self.registry.register(_AlertCounts(self.prefix, alerts or dict))
        self.registry.register(_SinkCounters(self.prefix, sink_health))

    def show_health(self, state: HealthState, live: bool) -> None:
        for check, seen in state.checks.items():
            self.check_ok.labels(check).set(1 if seen.condition is Condition.OK else 0)
        for reason in SAFE_MODE_REASONS:
            self.safe_mode.labels(reason).set(1 if reason in state.safe_modes else 0)
        self.escalations_open.set(len(state.incidents))
        self.healthy.set(1 if live and state.passing else 0)

    def observe_detection(self, seconds: float) -> None:
        self.detection_latency.observe(max(0.0, seconds))

    def handle(self, event: Event) -> None:
        if event.type is EventType.RUN_COMPLETED:
            status = str(event.data["status"])
            self.runs_completed.labels(status).inc()
            if status == "FAILED":
                self.runs_failed.inc()
        elif event.type is EventType.RUN_ARCHIVED:
            self.artifacts_archived.inc(int(event.data["files"]))
            self.archived_bytes.inc(int(event.data["bytes"]))
            self.archive_duration.observe(float(event.data["seconds"]))
        elif event.type is EventType.REPORT_GENERATED:
            duration = _run_duration(event.data["paths"])
            if duration is not None:
                self.run_duration.observe(duration)

    def close(self) -> None:
        return None

    def render(self) -> bytes:
        return generate_latest(_WithoutCreated(self.registry))


def _run_duration(paths: Iterable[str]) -> float | None:
    """`duration_seconds` of the run's summary report (the first `_summary.json` among `paths`), if it has one."""
    summary = next((Path(path) for path in paths if path.endswith("_summary.json")), None)
    if summary is None:
        return None
    try:
        duration = orjson.loads(summary.read_bytes()).get("duration_seconds")
    except (OSError, orjson.JSONDecodeError) as err:
        logger.warning("run duration not read from %s: %s", summary, err)
        return None
    return float(duration) if isinstance(duration, int | float) else None
