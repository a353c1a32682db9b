"""Geometry of the report page's inline SVG drawings: pure, so the template only places shapes.

The task timeline has one lane per workstream, a bar per task from start to finish on a
shared time axis; a lane draws at most MAX_TASKS_PER_LANE bars (evenly sampled, the page says
how many), so a run of 100,000 tasks still gives a page of a few hundred kilobytes. The tool
chart has one stacked bar per tool: succeeded, failed, skipped, cancelled.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .numbers import NO_WORKSTREAM, TaskRow, read_time

WIDTH = 760.0
LABEL_WIDTH = 150.0
LANE_HEIGHT = 18.0
MAX_TASKS_PER_LANE = 400
OUTCOMES = ("succeeded", "failed", "skipped", "cancelled")


@dataclass(frozen=True, slots=True)
class Shape:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


def timeline(workstreams: Sequence[Mapping[str, Any]], tasks: list[TaskRow]) -> dict[str, Any]:
    """Lanes and bars of the task timeline; empty when no task has readable start and finish times."""
    spans: defaultdict[str | None, list[tuple[datetime, datetime, str]]] = defaultdict(list)
    for task in tasks:
        start, end = read_time(task.started_at), read_time(task.finished_at)
        if start is not None and end is not None:
            spans[task.workstream_id].append((start, end, task.status))
    if not spans:
        return {"lanes": [], "shapes": [], "height": 0, "drawn": 0, "total": 0}
    first = min(s for lane in spans.values() for s, _, _ in lane)
    last = max(e for lane in spans.values() for _, e, _ in lane)
    scale = (WIDTH - LABEL_WIDTH) / max((last - first).total_seconds(), 1e-6)
    names = {ws["workstream_id"]: ws.get("name") or ws["workstream_id"] for ws in workstreams}
    order = [w for w in names if w in spans] + sorted((w for w in spans if w not in names), key=str)
    lanes, shapes = [], []
    for index, workstream in enumerate(order):
        y = index * LANE_HEIGHT
        lanes.append({"label": names.get(workstream, workstream or NO_WORKSTREAM), "y": y + LANE_HEIGHT * 0.7})
        lane = spans[workstream]
        step = max(1, -(-len(lane) // MAX_TASKS_PER_LANE))
        for start, end, status in lane[::step]:
            seconds = (end - start).total_seconds()
            shapes.append(
                Shape(
                    round(LABEL_WIDTH + (start - first).total_seconds() * scale, 2),
                    y + 3,
                    round(max(seconds * scale, 1.0), 2),
                    LANE_HEIGHT - 6,
                    status.lower(),
                    f"{status} {seconds:.3f} s",
                )
            )
    total = sum(len(lane) for lane in spans.values())
    return {"lanes": lanes, "shapes": shapes, "height": len(order) * LANE_HEIGHT, "drawn": len(shapes), "total": total}


def tool_bars(tools: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One stacked bar per tool, scaled to the tool with the most tasks."""
    most = max((t["tasks"] for t in tools.values()), default=0) or 1
    scale = (WIDTH - LABEL_WIDTH) / most
    lanes, shapes = [], []
    for index, (tool, counts) in enumerate(tools.items()):
        y = index * LANE_HEIGHT
        lanes.append({"label": tool, "y": y + LANE_HEIGHT * 0.7})
        x = LABEL_WIDTH
        for outcome in OUTCOMES:
            if counts[outcome]:
                width = round(counts[outcome] * scale, 2)
                title = f"{outcome}: {counts[outcome]}"
                shapes.append(Shape(round(x, 2), y + 3, width, LANE_HEIGHT - 6, outcome, title))
                x += width
    return {"lanes": lanes, "shapes": shapes, "height": len(lanes) * LANE_HEIGHT}
