"""Several daemons on one database: which runs each follows, and taking over from one that died.

Every daemon sees every change; each follows only the runs that rendezvous hashing gives it among
the daemons alive (`owner_of`: the same answer on every host, and a daemon's death moves only its
own runs). A run is still marked and recorded exactly once whatever the daemons believe: the
ledger's intent and completion are claims another daemon cannot overwrite, and the mark is a
compare-and-set. The live set is read again every `refresh_seconds`, when the runs of daemons whose
lease ran out are also taken over (`Ledger.take_over`, `FOR UPDATE SKIP LOCKED`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Protocol

from ..ledger.members import Membership
from ..ledger.runs import Ledger

logger = logging.getLogger(__name__)


class Shares(Protocol):
    """Which runs are this daemon's to follow, among several on one database (all of them when alone)."""

    def mine(self, run_id: str) -> bool: ...

    def take_over(self, mono: float) -> dict[str, str]:
        """Runs (-> ledger phase) this daemon has just taken from daemons whose lease ran out."""
        ...


class Alone:
    """The one daemon of a workspace: every run is its own, none to take over."""

    def mine(self, run_id: str) -> bool:
        return True

    def take_over(self, mono: float) -> dict[str, str]:
        return {}


def owner_of(run_id: str, live: Sequence[str]) -> str | None:
    """The daemon of `live` that follows `run_id` (highest random weight); None when none is live."""
    best: tuple[bytes, str] | None = None
    for daemon_id in live:
        weight = hashlib.blake2b(f"{daemon_id}\0{run_id}".encode(), digest_size=8).digest()
        if best is None or weight > best[0]:
            best = (weight, daemon_id)
    return None if best is None else best[1]


class ClusterShares:
    """This daemon's share of the runs, refreshed from the live daemons (see the module docstring)."""

    def __init__(self, membership: Membership, ledger: Ledger, *, refresh_seconds: float) -> None:
        self._membership = membership
        self._ledger = ledger
        self._me = ledger.daemon_id
        self._refresh = refresh_seconds
        # the others alive now, before the first pass: else a daemon starting beside them takes every run for its own
        self._live: tuple[str, ...] = tuple(sorted({*membership.live(), self._me}))
        self._refreshed_at: float | None = None

    def mine(self, run_id: str) -> bool:
        return owner_of(run_id, self._live) == self._me

    def take_over(self, mono: float) -> dict[str, str]:
        if self._refreshed_at is not None and mono - self._refreshed_at < self._refresh:
            return {}
        self._refreshed_at = mono
        live = tuple(sorted({*self._membership.live(), self._me}))
        if live != self._live:
            logger.info("daemons alive: %s", ", ".join(live))
            self._live = live
        return self._ledger.take_over(live)
