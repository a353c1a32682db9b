"""The /metrics exposition: names and types as the README documents them, the prefix, no `*_created`,
every terminal status counted, histograms fed by events, the archive's size cached, and `promtool`'s lint."""

from __future__ import annotations

import logging
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import orjson
import pytest
from orchestrator_monitor.archive.sizes import ArchiveSizes
from orchestrator_monitor.events.types import Event, EventType
from orchestrator_monitor.ledger.catalog import ArchiveEntry, Catalog
from orchestrator_monitor.ledger.store import sqlite_store
from orchestrator_monitor.service.metrics import MonitorMetrics
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from support import REPO

AT = "2026-11-01T00:00:00.000000Z"
DOCUMENTED_ROW = re.compile(r"^\| `orchestrator_monitor_(?P<name>\w+)` \| (?P<type>\w+) \|", re.MULTILINE)


def documented() -> dict[str, str]:
    """The README's metrics table: name (without the prefix, without `_total`) -> type."""
    return {
        row["name"].removesuffix("_total"): row["type"]
        for row in DOCUMENTED_ROW.finditer((REPO / "README.md").read_text())
    }


def fed_metrics(tmp_path: Path, prefix: str = "orchestrator_monitor_") -> MonitorMetrics:
    """Metrics bound to fixed readings and fed one event of each kind they count."""
    metrics = MonitorMetrics(prefix)
    metrics.bind(
        heartbeat_age=lambda: 1.0,
        detection_lag=lambda: 0.5,
        event_counts=lambda: {EventType.RUN_COMPLETED: 2},
        open_runs=lambda: {"RUNNING": 3},
        archive_bytes=lambda: 4096.0,
    )
    summary = tmp_path / "r1_summary.json"
    summary.write_bytes(orjson.dumps({"run_id": "r1", "duration_seconds": 42.0}))
    events = [
        (EventType.RUN_COMPLETED, {"status": "FAILED", "marked_by": "monitor", "tasks": {}}),
        (EventType.RUN_ARCHIVED, {"files": 3, "bytes": 300, "seconds": 0.2}),
        (EventType.REPORT_GENERATED, {"paths": [str(summary), str(tmp_path / "r1.html")]}),
    ]
    for seq, (type, data) in enumerate(events, 1):
        metrics.handle(Event(seq, "t", type, f"r1:{type}", data, "r1"))
    metrics.observe_detection(0.02)
    metrics.dashboard_requests.labels("/metrics", "200").inc()
    metrics.request_duration.labels("/metrics").observe(0.003)
    return metrics


def families(text: str) -> dict[str, tuple[str, list[tuple[str, dict[str, str], float]]]]:
    return {
        family.name: (family.type, [(s.name, s.labels, s.value) for s in family.samples])
        for family in text_string_to_metric_families(text)
    }


def test_the_names_and_types_are_the_documented_ones(tmp_path: Path) -> None:
    exposed = families(fed_metrics(tmp_path).render().decode())
    table = documented()
    assert len(table) >= 18
    assert {name.removeprefix("orchestrator_monitor_"): kind for name, (kind, _) in exposed.items()} == table


def test_the_prefix_is_configurable_and_no_created_series_is_exposed(tmp_path: Path) -> None:
    text = fed_metrics(tmp_path, prefix="lab_").render().decode()
    names = {sample for _, samples in families(text).values() for sample, _, _ in samples}
    assert names and all(name.startswith("lab_") for name in names)
    assert not any(name.endswith("_created") for name in names)
    bare = families(fed_metrics(tmp_path, prefix="").render().decode())
    assert "runs_completed" in bare and "orchestrator_monitor_runs_completed" not in bare
    # only this registry's exposition drops them: prometheus_client's switch for every registry stays on
    other = CollectorRegistry()
    Counter("other_things", "a counter of another registry", registry=other).inc()
    assert b"other_things_created" in generate_latest(other)


def test_every_terminal_status_is_counted_and_the_histograms_are_fed(tmp_path: Path) -> None:
    samples = {
        (name, tuple(sorted(labels.items()))): value
        for _, values in families(fed_metrics(tmp_path).render().decode()).values()
        for name, labels, value in values
    }
    p = "orchestrator_monitor_"
    for status, count in (("FAILED", 1), ("COMPLETED", 0), ("PARTIAL", 0), ("CANCELLED", 0)):
        assert samples[(f"{p}runs_completed_total", (("status", status),))] == count
    assert samples[(f"{p}runs_failed_total", ())] == 1
    assert samples[(f"{p}archived_bytes_total", ())] == 300
    assert samples[(f"{p}archive_size_bytes", ())] == 4096
    assert samples[(f"{p}open_runs", (("status", "RUNNING"),))] == 3
    assert samples[(f"{p}open_runs", (("status", "PENDING"),))] == 0
    assert samples[(f"{p}run_duration_seconds_sum", ())] == 42
    assert samples[(f"{p}archive_duration_seconds_count", ())] == 1
    assert samples[(f"{p}detection_latency_seconds_bucket", (("le", "0.025"),))] == 1
    assert samples[(f"{p}dashboard_requests_total", (("code", "200"), ("path", "/metrics")))] == 1
    assert samples[(f"{p}dashboard_request_duration_seconds_count", (("path", "/metrics"),))] == 1


def test_promtool_finds_nothing_to_lint(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian's prometheus package; .ci/run installs it)")
    text = fed_metrics(tmp_path).render()
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, check=False, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, b"")


def test_the_archive_size_is_the_catalogs_sum_under_the_root_read_at_most_every_refresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The gauge costs no memory per bag: the database sums the catalogued bags under this daemon's root."""
    catalog = Catalog(sqlite_store(tmp_path / "monitor.db", busy_timeout_seconds=1))
    root = tmp_path / "archive"

    def bag(run_id: str, size: int, where: Path = root) -> ArchiveEntry:
        return ArchiveEntry(run_id, "COMPLETED", AT, 1, size, "0" * 64, locations=(str(where / run_id),))

    now = [0.0]
    sizes = ArchiveSizes(catalog, root, refresh_seconds=30, clock=lambda: now[0])
    catalog.record([bag("a", 100), bag("b", 20), bag("x", 5000, tmp_path / "archive-other")], AT)
    assert sizes.total_bytes() == 120
    catalog.record([bag("d", 3)], AT)
    now[0] = 29.0
    assert sizes.total_bytes() == 120  # cached
    now[0] = 30.0
    assert sizes.total_bytes() == 123
    catalog.forget_except({"a", "d", "x"}, under=str(root))
    now[0] = 60.0
    assert sizes.total_bytes() == 103
    with sqlite3.connect(tmp_path / "monitor.db") as broken:  # a catalog that cannot be read: the last reading stays
        broken.execute("ALTER TABLE monitor_archives RENAME TO gone")
    now[0] = 90.0
    with caplog.at_level(logging.WARNING):
        assert sizes.total_bytes() == 103
    assert "archive size not read from the catalog: OperationalError" in caplog.text
