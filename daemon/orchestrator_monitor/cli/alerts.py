"""`orchestrator alerts test RULE`: send the rule a sample alert now, to every destination it has."""

from __future__ import annotations

from rich.console import Console

from ..alerts.delivery import send_alert
from ..alerts.facts import sample_facts
from ..alerts.message import render_alert
from ..config import Settings
from ..errors import BadInput, ProblemFound
from ..timefmt import format_timestamp, utc_now
from .render import write_plain


def alerts_test_command(settings: Settings, rule_name: str, out: Console) -> int:
    """Exit 0 when every destination took it; `ProblemFound` (1) naming those that did not; 2 for no such rule."""
    rules = {rule.name: rule for rule in settings.alerts.rules}
    rule = rules.get(rule_name)
    if rule is None:
        known = ", ".join(sorted(rules)) or "none configured"
        raise BadInput(f"no alert rule {rule_name!r} (alerts.rules: {known})")
    title, body = render_alert(rule, sample_facts(rule.events, format_timestamp(utc_now())))
    failed = []
    for url in rule.urls or settings.alerts.urls:
        sent, shown = send_alert(url, title, body)
        write_plain(out, f"{'sent' if sent else 'failed'}\t{shown}")
        if not sent:
            failed.append(shown)
    if failed:
        raise ProblemFound(f"alert rule {rule_name}: not delivered to {', '.join(failed)}")
    return 0
