"""An alert's title and body from its rule's templates, rendered in Jinja2's sandbox as the report page is.

A rule's template is the operator's code: one that fails to render gives the default text and
a log line, never a lost alert.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from ..config import DEFAULT_ALERT_BODY, DEFAULT_ALERT_TITLE, AlertRule
from .rules import AlertFacts, Held

logger = logging.getLogger(__name__)

TITLE_CHARS = 250  # chat services cut titles; a runaway template must not make a megabyte message
BODY_CHARS = 8000

_ENVIRONMENT = SandboxedEnvironment(autoescape=False, undefined=jinja2.ChainableUndefined)


@lru_cache(maxsize=256)
def _compile(source: str) -> jinja2.Template:
    return _ENVIRONMENT.from_string(source)


def render_alert(rule: AlertRule, facts: AlertFacts) -> tuple[str, str]:
    context = {"rule": rule.name, **facts.context()}
    title = _render(rule.name, "title", rule.title, DEFAULT_ALERT_TITLE, context)
    body = _render(rule.name, "body", rule.body, DEFAULT_ALERT_BODY, context)
    return title.strip()[:TITLE_CHARS], body.strip()[:BODY_CHARS]


def render_summary(rule: AlertRule, held: Held) -> tuple[str, str]:
    """The throttle window's summary: how many alerts it held back and which runs (or events) they were."""
    title = f"[{rule.name}] {held.count} more alert{'s' if held.count != 1 else ''} held back by the throttle"
    shown = ", ".join(held.keys) + (", ..." if held.count > len(held.keys) else "")
    body = (
        f"Rule {rule.name} matched {held.count} more time{'s' if held.count != 1 else ''} after its "
        f"{rule.throttle_count} alert{'s' if rule.throttle_count != 1 else ''} within {rule.throttle_seconds:g} s: "
        f"{shown}"
    )
    return title, body


def _render(rule: str, part: str, source: str, default: str, context: dict[str, object]) -> str:
    try:
        return _compile(source).render(context)
    except Exception as err:  # the operator's template: any failure gives the default text
        logger.warning(
            "alert rule %s: its %s template failed (%s: %s); the default is used", rule, part, type(err).__name__, err
        )
        return _compile(default).render(context)
