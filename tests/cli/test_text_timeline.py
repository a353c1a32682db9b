"""The console's text timeline: failed tasks kept when not all fit, bars on the run's own scale."""

from __future__ import annotations

from datetime import UTC, datetime

from orchestrator_monitor.cli.text_timeline import timeline_rows


def task(n: int, status: str = "SUCCEEDED", attempts: int = 1) -> dict[str, object]:
    return {"task_id": f"t{n:02d}", "status": status, "attempts": attempts,
            "started_at": f"2026-11-24T10:{n:02d}:00Z", "finished_at": f"2026-11-24T10:{n:02d}:30Z"}  # fmt: skip


def test_failed_tasks_stay_when_not_all_fit_and_bars_sit_on_the_runs_scale() -> None:
    rows = [task(n) for n in range(10)] + [task(50, "FAILED", attempts=3)]
    start, end = datetime(2026, 11, 24, 10, 0, tzinfo=UTC), datetime(2026, 11, 24, 11, 0, tzinfo=UTC)
    scale, shown = timeline_rows(rows, (start, end), end, shown=4, cells=60)
    assert scale.startswith("1h")
    assert [str(label) for label, _, _ in shown] == ["t00", "t01", "t02", "t50"]  # by start, the failed one kept
    _, retries, bar = shown[-1]
    assert retries == "↻3" and bar.plain.index("█") == 50  # 50 minutes into an hour of 60 cells
    assert timeline_rows([], (start, end), end, shown=4, cells=60) == ("", [])
