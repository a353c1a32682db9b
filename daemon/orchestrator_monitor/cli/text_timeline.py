"""The console's timeline of a run in text: a row per task, a bar from its start to its finish.

Rows rather than one block of text, so that the console's table changes only the bars that
moved. The scale is the run's own (its start to its finish, or to now while it runs), not the
span of the tasks read, which are only those shown: the first by start and those an operator
looks for (failed, running, retried).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.text import Text

from ..reports.numbers import read_time
from ..state.records import as_text, task_outcome
from ..units import format_duration
from .render import OUTCOME_STYLES

MIN_SCALE_SECONDS = 1e-3


def timeline_rows(
    rows: list[dict[str, Any]], span: tuple[datetime | None, datetime | None], now: datetime, shown: int, cells: int
) -> tuple[str, list[tuple[Any, ...]]]:
    """The scale's length and up to `shown` rows (task id, retries, bar), failed tasks first when they do not all
    fit, then by start; `span` is the run's start and finish (None: not yet), `cells` the bar's width."""
    spans = []
    for row in rows:
        start, end = read_time(row["started_at"]), read_time(row["finished_at"])
        if start is not None:
            spans.append((row, start, end or (now if row["status"] == "RUNNING" else start)))
    if not spans:
        return "", []
    spans.sort(key=lambda item: (task_outcome(as_text(item[0]["status"]) or "") != "failed", item[1]))
    kept = sorted(spans[:shown], key=lambda item: (item[1], str(item[0]["task_id"])))
    first = span[0] or min(start for _, start, _ in spans)
    last = span[1] or max([now, *(end for _, _, end in spans)])
    total = max((last - first).total_seconds(), MIN_SCALE_SECONDS)
    out = []
    for row, start, end in kept:
        outcome = task_outcome(as_text(row["status"]) or "")
        left = min(cells - 1, max(0, int((start - first).total_seconds() / total * cells)))
        length = max(1, round((end - start).total_seconds() / total * cells))
        bar = Text(" " * left + "█" * min(length, cells - left), OUTCOME_STYLES[outcome])
        retries = f"↻{row['attempts']}" if (row["attempts"] or 0) > 1 else ""
        label = Text(str(row["task_id"]))
        if outcome == "failed":
            label.stylize("bold red")  # a span (not the text's base style), so that a change compares unequal
        out.append((label, retries, bar))
    return format_duration(total), out
