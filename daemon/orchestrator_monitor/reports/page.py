"""`reports/<run_id>.html`: the report page, rendered with Jinja2; never a failure because of a template.

The template is looked up in the workspace's `config/templates/` first (an operator's own
page) and then in the package (`orchestrator_monitor/reports/templates/`, shipped as package
data, so an installed wheel finds it without the repository; the repository's
`config/templates/report.html.j2` is a link to that same file, not a copy). A missing or
broken template gives the generic page below and a warning for the caller to publish. The
template is rendered in Jinja2's sandbox: it is a file in the workspace, and whoever can write
it must not thereby run code as the daemon (found by fuzzing: `cycler.__init__.__globals__.os`).
"""

from __future__ import annotations

import html
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from ..units import format_bytes, format_duration
from .drawing import OUTCOME_COLOURS, WIDTH, outcome_bar_svg

TEMPLATE_NAME = "report.html.j2"
TEMPLATE_DIR = Path("config") / "templates"  # under the workspace


@lru_cache(maxsize=8)
def _environment(workspace: Path) -> SandboxedEnvironment:
    """One environment per workspace, so the template is compiled once, not for every report (124 ms a
    run, measured on the daemon's archival of many small runs); Jinja2 still reloads a template whose
    file changed (`auto_reload`)."""
    environment = SandboxedEnvironment(
        loader=jinja2.ChoiceLoader(
            [
                jinja2.FileSystemLoader(workspace / TEMPLATE_DIR),
                jinja2.PackageLoader("orchestrator_monitor.reports", "templates"),
            ]
        ),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters.update(duration=format_duration, bytes=format_bytes)
    return environment


def render_page(context: dict[str, Any], workspace: Path) -> tuple[str, str | None]:
    """The page and, when the template could not be used, why (for a WARNING event)."""
    try:
        template = _environment(workspace).get_template(TEMPLATE_NAME)
        bar = outcome_bar_svg(context["summary"]["tasks"]["by_status"])
        return template.render(width=WIDTH, colours=OUTCOME_COLOURS, outcome_bar=bar, **context), None
    except Exception as err:  # a template is the operator's code: any error in it gets the generic page
        why = f"template {TEMPLATE_NAME} unusable ({type(err).__name__}: {err}); generic page written"
        return generic_page(context), why


def generic_page(context: dict[str, Any]) -> str:
    """A plain page of the summary's numbers, with no template at all."""
    summary = context["summary"]
    rows = [
        ("status", summary["status"]),
        ("started", summary["started_at"]),
        ("finished", summary["finished_at"]),
        ("duration (s)", summary["duration_seconds"]),
        ("tasks", summary["tasks"]["total"]),
        *((f"tasks {status}", count) for status, count in summary["tasks"]["by_status"].items()),
        ("errors", summary["errors"]["total"]),
        ("archive", summary["archive"]["path"]),
    ]
    cells = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape('-' if v is None else str(v))}</td></tr>" for k, v in rows
    )
    title = html.escape(f"Run {summary['run_id']}: {summary['status']}")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>'
        f"<body><h1>{title}</h1><p>Generic report (the report template could not be used).</p>"
        f"<table>{cells}</table></body></html>\n"
    )
