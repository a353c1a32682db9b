"""systemd's notify protocol (`sd_notify`) in a few lines of the standard library.

systemd (`Type=notify`) passes a unix datagram socket in `NOTIFY_SOCKET`; a name starting
with `@` is in the abstract namespace. Lines such as `READY=1`, `STATUS=...`, `WATCHDOG=1`
and `STOPPING=1` tell it how the service is doing. Without `NOTIFY_SOCKET` (a terminal, a
test) every call does nothing, so the daemon never needs to know how it was started.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

logger = logging.getLogger(__name__)


class Notifier:
    """Sends notify lines to one socket address; a failure is logged once, never raised."""

    def __init__(self, address: str | None) -> None:
        self._address = "\0" + address[1:] if address and address.startswith("@") else address
        self._warned = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Notifier:
        return cls(environ.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *lines: str) -> bool:
        if self._address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(lines).encode(), self._address)
        except OSError as err:
            if not self._warned:
                self._warned = True
                logger.warning("cannot notify systemd at %s: %s", self._address.lstrip("\0"), err)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.send("STOPPING=1", "STATUS=stopping")


def watchdog_interval_seconds(environ: Mapping[str, str], pid: int) -> float | None:
    """How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, as systemd recommends; None when off.

    `WATCHDOG_PID`, when set, names the process the watchdog is meant for (a child that
    inherited the environment must not ping on its parent's behalf).
    """
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (owner and owner != str(pid)):
        return None
    return int(usec) / 2 / 1_000_000
