"""The drawings of a run, as SVG text: pure, so the report and the dashboard show the very same picture.

The task timeline has one row per task, grouped under a row per workstream, on a shared time
axis with labelled ticks: a bar from start to finish (to `now` while a task runs) coloured by
outcome, failed bars drawn over a red outline so a short failure is never a hairline, a
retried task marked with its attempts (`↻3`), and every row's `<title>` giving the details on
hover. Nothing needs JavaScript to be read. A run of thousands of tasks draws at most
`MAX_ROWS` rows: failed, cancelled, retried and running tasks first (they are what an operator
looks for), the rest evenly sampled, and the drawing says how many of how many it shows.

The colours are Okabe and Ito's, which stay apart for the common colour-vision deficiencies,
and every colour also has its word in the legend.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

from ..state.records import OUTCOMES, task_outcome
from .numbers import NO_WORKSTREAM, TaskRow, read_time

WIDTH = 960.0
LABEL_WIDTH = 210.0
RIGHT_MARGIN = 40.0  # room for a retry mark after a bar that ends at the right edge
ROW_HEIGHT = 16.0
GROUP_HEIGHT = 20.0
AXIS_HEIGHT = 22.0
LEGEND_HEIGHT = 22.0
MAX_ROWS = 300
MIN_BAR_WIDTH = 3.0
LABEL_CHARS = 30
MESSAGE_CHARS = 300
OUTCOME_COLOURS = {
    "failed": "#D55E00",
    "cancelled": "#CC79A7",
    "skipped": "#999999",
    "succeeded": "#009E73",
    "running": "#0072B2",
    "waiting": "#E0E0E0",
}
FAILED_OUTLINE = "#8B1A00"
_NICE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
_PRIORITY = {"failed": 0, "cancelled": 1, "running": 2}


@dataclass(frozen=True, slots=True)
class Shape:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass(frozen=True, slots=True)
class Drawing:
    svg: str  # empty when nothing can be drawn
    drawn: int
    total: int


@dataclass(frozen=True, slots=True)
class _Bar:
    task: TaskRow
    start: datetime
    end: datetime
    outcome: str


def _label(text: str, chars: int = LABEL_CHARS) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def format_span(seconds: float) -> str:
    """An axis label or a task's duration: 0.4s, 12s, 3m05s, 2h10m."""
    if seconds < 10 and seconds != int(seconds):
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m" + (f"{whole % 60:02d}s" if whole % 60 else "")
    return f"{whole // 3600}h" + (f"{whole % 3600 // 60:02d}m" if whole % 3600 // 60 else "")


def _bars(tasks: Iterable[TaskRow], now: datetime) -> list[_Bar]:
    bars = []
    for task in tasks:
        start = read_time(task.started_at)
        if start is None:
            continue
        outcome = task_outcome(task.status)
        end = read_time(task.finished_at)
        if end is None:
            end = now if outcome == "running" else start
        bars.append(_Bar(task, start, max(start, end), outcome))
    return bars


def _choose(bars: list[_Bar], limit: int) -> list[_Bar]:
    """At most `limit` bars: the failed, cancelled, running and retried first, then the rest evenly sampled."""
    if len(bars) <= limit:
        return bars
    urgent = [b for b in bars if b.outcome in _PRIORITY or b.task.attempts > 1]
    urgent.sort(key=lambda b: _PRIORITY.get(b.outcome, 3))
    chosen = urgent[:limit]
    rest = [b for b in bars if not (b.outcome in _PRIORITY or b.task.attempts > 1)]
    room = limit - len(chosen)
    if room > 0 and rest:
        step = len(rest) / room
        chosen += [rest[int(n * step)] for n in range(min(room, len(rest)))]
    return chosen


def _tick_step(span_seconds: float) -> float:
    wanted = span_seconds / 8
    return next((step for step in _NICE_STEPS if step >= wanted), math.ceil(wanted / 86400) * 86400)


def _tooltip(bar: _Bar) -> str:
    task = bar.task
    parts = [
        str(task.task_id),
        f"tool {task.tool or '-'}",
        task.status,
        f"attempts {task.attempts}",
        format_span((bar.end - bar.start).total_seconds()),
    ]
    if task.error_type or task.error_message:
        message = " ".join((task.error_message or "").split())
        parts.append(f"{task.error_type or 'error'}: {_label(message, MESSAGE_CHARS)}")
    return " · ".join(parts)


def timeline_svg(workstreams: Sequence[Mapping[str, Any]], tasks: Iterable[TaskRow], now: datetime) -> Drawing:
    """The task timeline as an `<svg>` element; see the module docstring."""
    every = _bars(tasks, now)
    if not every:
        return Drawing("", 0, 0)
    chosen = _choose(every, MAX_ROWS)
    first = min(b.start for b in every)
    last = max(b.end for b in every)
    span = max((last - first).total_seconds(), 1e-3)
    plot = WIDTH - LABEL_WIDTH - RIGHT_MARGIN
    scale = plot / span

    names = {ws["workstream_id"]: ws.get("name") or ws["workstream_id"] for ws in workstreams}
    groups: dict[str | None, list[_Bar]] = {}
    for bar in chosen:
        groups.setdefault(bar.task.workstream_id, []).append(bar)
    order = [w for w in names if w in groups] + sorted((w for w in groups if w not in names), key=str)
    height = AXIS_HEIGHT + len(order) * GROUP_HEIGHT + len(chosen) * ROW_HEIGHT + LEGEND_HEIGHT
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{WIDTH:g}" height="{height:g}" '
        f'viewBox="0 0 {WIDTH:g} {height:g}" role="img" font-family="system-ui, sans-serif" font-size="11" '
        f'data-drawn="{len(chosen)}" data-total="{len(every)}">',
        f"<title>task timeline: {len(chosen)} of {len(every)} tasks</title>",
    ]
    body_bottom = height - LEGEND_HEIGHT
    step = _tick_step(span)
    ticks = int(span // step) + 1
    for n in range(ticks):
        x = LABEL_WIDTH + n * step * scale
        label = f"+{format_span(n * step)}"
        out.append(
            f'<line x1="{x:.1f}" y1="{AXIS_HEIGHT - 4:g}" x2="{x:.1f}" y2="{body_bottom:g}" stroke="#ddd"/>'
            f'<text x="{x:.1f}" y="{AXIS_HEIGHT - 8:g}" text-anchor="middle" fill="#555">{label}</text>'
        )
    y = AXIS_HEIGHT
    for workstream in order:
        lane = sorted(groups[workstream], key=lambda b: (b.start, b.task.task_id))
        failed = sum(1 for b in lane if b.outcome == "failed")
        name = names.get(workstream, workstream or NO_WORKSTREAM)
        note = f" · {failed} failed" if failed else ""
        out.append(
            f'<g class="workstream"><rect x="0" y="{y:g}" width="{WIDTH:g}" height="{GROUP_HEIGHT:g}" fill="#f3f3f3"/>'
            f'<text x="4" y="{y + 14:g}" font-weight="bold">{escape(_label(str(name), 60))}'
            f'<tspan font-weight="normal" fill="#555"> · {len(lane)} tasks{note}</tspan></text></g>'
        )
        y += GROUP_HEIGHT
        for bar in lane:
            out.append(_row(bar, y, first, scale))
            y += ROW_HEIGHT
    out.append(_legend(body_bottom))
    out.append("</svg>")
    return Drawing("".join(out), len(chosen), len(every))


def _row(bar: _Bar, y: float, first: datetime, scale: float) -> str:
    task = bar.task
    task_id = escape(str(task.task_id))
    x = LABEL_WIDTH + (bar.start - first).total_seconds() * scale
    width = max((bar.end - bar.start).total_seconds() * scale, MIN_BAR_WIDTH)
    colour = OUTCOME_COLOURS[bar.outcome]
    outline = f' stroke="{FAILED_OUTLINE}" stroke-width="1"' if bar.outcome == "failed" else ""
    label_colour = OUTCOME_COLOURS["failed"] if bar.outcome == "failed" else "#222"
    parts = [
        f'<g class="task {bar.outcome}" data-task="{task_id}" data-status="{escape(task.status)}">',
        f"<title>{escape(_tooltip(bar))}</title>",
        f'<text x="4" y="{y + 12:g}" fill="{label_colour}">{escape(_label(str(task.task_id)))}</text>',
        f'<rect x="{x:.1f}" y="{y + 3:g}" width="{width:.1f}" height="{ROW_HEIGHT - 6:g}" fill="{colour}"{outline}/>',
    ]
    if task.attempts > 1:
        parts.append(
            f'<text class="retries" x="{x + width + 3:.1f}" y="{y + 12:g}" fill="#333">↻{task.attempts}</text>'
        )
    parts.append("</g>")
    return "".join(parts)


def _legend(y: float) -> str:
    parts = ['<g class="legend">']
    x = LABEL_WIDTH
    for outcome in OUTCOMES:
        parts.append(
            f'<rect x="{x:g}" y="{y + 7:g}" width="10" height="10" fill="{OUTCOME_COLOURS[outcome]}"/>'
            f'<text x="{x + 14:g}" y="{y + 16:g}">{outcome}</text>'
        )
        x += 30 + 7.5 * len(outcome)
    parts.append(f'<text x="{x + 6:g}" y="{y + 16:g}">↻N attempts</text></g>')
    return "".join(parts)


def outcome_bar_svg(by_status: Mapping[str, int], width: float = 400.0, height: float = 14.0) -> str:
    """A run's tasks as one bar split by outcome, failures first; every outcome present gets at least 2 px."""
    counts = dict.fromkeys(OUTCOMES, 0)
    for status, count in by_status.items():
        counts[task_outcome(status)] += count
    total = sum(counts.values())
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="outcomes" width="{width:g}" height="{height:g}" role="img">',
        "<title>" + escape(", ".join(f"{n} {o}" for o, n in counts.items() if n) or "no tasks") + "</title>",
        f'<rect width="{width:g}" height="{height:g}" fill="{OUTCOME_COLOURS["waiting"]}"/>',
    ]
    x = 0.0
    for outcome, count in counts.items():
        if count and total:
            part = max(count * width / total, 2.0)
            out.append(
                f'<rect class="{outcome}" x="{x:.1f}" width="{part:.1f}" height="{height:g}" '
                f'fill="{OUTCOME_COLOURS[outcome]}"><title>{count} {outcome}</title></rect>'
            )
            x += part
    out.append("</svg>")
    return "".join(out)


def tool_bars(tools: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One stacked bar per tool (failed first), scaled to the tool with the most tasks."""
    most = max((t["tasks"] for t in tools.values()), default=0) or 1
    scale = (WIDTH - LABEL_WIDTH - RIGHT_MARGIN) / most
    lanes, shapes = [], []
    for index, (tool, counts) in enumerate(tools.items()):
        y = index * ROW_HEIGHT
        lanes.append({"label": tool, "y": y + ROW_HEIGHT * 0.7})
        x = LABEL_WIDTH
        for outcome in ("failed", "cancelled", "skipped", "succeeded"):
            if counts[outcome]:
                width = round(counts[outcome] * scale, 2)
                title = f"{outcome}: {counts[outcome]}"
                shapes.append(Shape(round(x, 2), y + 3, width, ROW_HEIGHT - 6, outcome, title))
                x += width
    return {"lanes": lanes, "shapes": shapes, "height": len(lanes) * ROW_HEIGHT}
