"""The operator's escalation hooks: a command and a webhook, given the ESCALATION event's JSON.

Both are bounded by `escalation.timeout_seconds` and only logged when they fail: a broken
pager must not break the monitor. The command runs without a shell (its words split the way
a shell would split them) and reads the event on standard input.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import urllib.request
from typing import Any

import orjson

from ..config import EscalationSettings

logger = logging.getLogger(__name__)


def deliver_escalation(settings: EscalationSettings, event: dict[str, Any]) -> None:
    """Run the configured command and POST to the webhook; never raises."""
    body = orjson.dumps(event)
    if settings.command:
        _run_command(shlex.split(settings.command), body, settings.timeout_seconds)
    if settings.webhook:
        _post(settings.webhook, body, settings.timeout_seconds)


def _run_command(argv: list[str], body: bytes, timeout: float) -> None:
    try:
        result = subprocess.run(argv, input=body, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        logger.warning("escalation command %s failed: %s", argv[0], err)
        return
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip().splitlines()
        logger.warning("escalation command %s exited %d: %s", argv[0], result.returncode, stderr[-1] if stderr else "")


def _post(url: str, body: bytes, timeout: float) -> None:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # the URL is http(s) only (config)
            response.read()
    except OSError as err:
        logger.warning("escalation webhook %s failed: %s", url, err)
