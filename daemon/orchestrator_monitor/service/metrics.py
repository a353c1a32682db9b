"""The daemon's Prometheus metrics, in a registry of its own (no global state), served at `/metrics`.

Counters of runs and archives are fed by the bus like any other sink (`handle`), on a thread
and queue of their own, so a scrape never slows a publisher. Gauges that describe "now"
(heartbeat age, detection lag, events by type) are read at scrape time from functions the
service hands in, so they are never stale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from ..events.subscription import SinkHealth
from ..events.types import Event, EventType
from .safemode import SAFE_MODES, Condition, HealthState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SAFE_MODE_REASONS = tuple(SAFE_MODES.values())


class _EventCounts(Collector):
    """`events_total{type}` from the bus's own per-type counter, read at scrape time."""

    def __init__(self, counts: Callable[[], Mapping[EventType, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("events", "Events published on the bus, by type", labels=["type"])
        for type, count in sorted(self._counts().items()):
            family.add_metric([str(type)], count)
        yield family


class _SinkCounters(Collector):
    """`sink_<counter>_total{sink}` (`sink_outages_total`, `sink_resent_total`) from the sinks that report health."""

    def __init__(self, sink_health: Callable[[], Mapping[str, SinkHealth]]) -> None:
        self._sink_health = sink_health

    def collect(self) -> Iterator[CounterMetricFamily]:
        families: dict[str, CounterMetricFamily] = {}
        for sink, health in sorted(self._sink_health().items()):
            for counter, value in sorted(health.counters.items()):
                if counter not in families:
                    families[counter] = CounterMetricFamily(f"sink_{counter}", f"A sink's {counter}", labels=["sink"])
                families[counter].add_metric([sink], value)
        yield from families.values()


class MonitorMetrics:
    """Every metric of the spec; also a bus sink (`handle`, `close`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.runs_completed = Counter("runs_completed", "Runs that reached a terminal state", ["status"], registry=r)
        self.runs_failed = Counter("runs_failed", "Runs that ended FAILED", registry=r)
        self.artifacts_archived = Counter("artifacts_archived", "Payload files archived", registry=r)
        self.archive_size = Gauge("archive_size_bytes", "Bytes of all archives published by this daemon", registry=r)
        self.dashboard_requests = Counter("dashboard_requests", "HTTP requests served", ["path"], registry=r)
        self.check_ok = Gauge("health_check_ok", "1 when the check passes, 0 when not", ["check"], registry=r)
        self.healthy = Gauge("monitor_healthy", "1 when live and every check passes", registry=r)
        self.safe_mode = Gauge("safe_mode", "1 while in this safe mode", ["reason"], registry=r)
        self.escalations_open = Gauge("escalations_open", "Escalated incidents not yet over", registry=r)
        self.heartbeat_age = Gauge("heartbeat_age_seconds", "Seconds since the last monitor heartbeat", registry=r)
        self.detection_lag = Gauge(
            "detection_lag_seconds", "Seconds since the detection loop last made a pass", registry=r
        )
        for reason in SAFE_MODE_REASONS:
            self.safe_mode.labels(reason).set(0)

    def bind(
        self,
        *,
        heartbeat_age: Callable[[], float],
        detection_lag: Callable[[], float],
        event_counts: Callable[[], Mapping[EventType, int]],
        sink_health: Callable[[], Mapping[str, SinkHealth]] = dict,
    ) -> None:
        """Attach the live readings of the running daemon (read at every scrape)."""
        self.heartbeat_age.set_function(heartbeat_age)
        self.detection_lag.set_function(detection_lag)
        self.registry.register(_EventCounts(event_counts))
        self.registry.register(_SinkCounters(sink_health))

    def show_health(self, state: HealthState, live: bool) -> None:
        for check, seen in state.checks.items():
            self.check_ok.labels(check).set(1 if seen.condition is Condition.OK else 0)
        for reason in SAFE_MODE_REASONS:
            self.safe_mode.labels(reason).set(1 if reason in state.safe_modes else 0)
        self.escalations_open.set(len(state.incidents))
        self.healthy.set(1 if live and state.passing else 0)

    def handle(self, event: Event) -> None:
        if event.type is EventType.RUN_COMPLETED:
            status = str(event.data["status"])
            self.runs_completed.labels(status).inc()
            if status == "FAILED":
                self.runs_failed.inc()
        elif event.type is EventType.RUN_ARCHIVED:
            self.artifacts_archived.inc(int(event.data["files"]))
            self.archive_size.inc(int(event.data["bytes"]))

    def close(self) -> None:
        return None

    def render(self) -> bytes:
        return generate_latest(self.registry)
