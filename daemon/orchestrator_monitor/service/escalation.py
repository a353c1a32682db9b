"""The operator's escalation hooks: a command and a webhook, given the ESCALATION event's JSON.

Both are bounded by `escalation.timeout_seconds` and only logged when they fail: a broken
pager must not break the monitor. The command runs without a shell (its words split the way
a shell would split them) and reads the event on standard input. A failure is logged without
the secrets either may hold: the webhook by its scheme and host only (its path or query is
often the token), the command by its program name only.
"""

from __future__ import annotations

import http.client
import logging
import shlex
import subprocess
import urllib.error
import urllib.request
from typing import Any

import orjson

from ..config import EscalationSettings, url_origin

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
    except subprocess.TimeoutExpired:  # its message quotes every argument, a token among them perhaps
        logger.warning("escalation command %s timed out after %g s", argv[0], timeout)
        return
    except OSError as err:
        logger.warning("escalation command %s failed: %s", argv[0], err.strerror or type(err).__name__)
        return
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip().splitlines()
        logger.warning("escalation command %s exited %d: %s", argv[0], result.returncode, stderr[-1] if stderr else "")


def _post(url: str, body: bytes, timeout: float) -> None:
    try:
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=timeout) as response:  # the URL is http(s) only (config)
            response.read()
    except (OSError, ValueError, http.client.HTTPException) as err:  # InvalidURL, BadStatusLine... quote the URL
        logger.warning("escalation webhook %s failed: %s", url_origin(url), _failure(err))


def _failure(err: Exception) -> str:
    """Why a POST failed, in words that never quote the URL (urllib's and http.client's own messages may)."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError) and isinstance(err.reason, OSError):
        err = err.reason  # refused, unreachable, timed out, TLS
    elif isinstance(err, urllib.error.URLError | ValueError | http.client.InvalidURL):
        return "not a valid URL"
    if isinstance(err, OSError):
        return err.strerror or type(err).__name__
    return f"a broken HTTP answer ({type(err).__name__})"
