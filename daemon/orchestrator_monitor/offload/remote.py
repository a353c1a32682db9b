"""The remote check: is a bag's offloaded copy at each target whole, and does every file still have the
digest its manifest gives? Read from the target now, never from memory; `verify --run ID --remote` and
retention (`make_confirmer`, before it deletes anything the copy would stand in for) ask it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..archive.bag import MANIFEST
from ..config import Settings
from ..errors import MonitorError
from ..ledger.catalog import Catalog
from ..ledger.store import MonitorStore
from .journal import OffloadJournal
from .open import open_targets
from .targets import Target, TargetError


@dataclass
class RemoteCheck:
    target: str
    location: str
    files: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_copy(target: Target, catalog: Catalog, journal: OffloadJournal, run_id: str) -> RemoteCheck:
    """Each file confirmed when the copy was made, present at the target with its digest, nothing else
    there; `TargetError` when the target cannot be asked."""
    check = RemoteCheck(target.name, target.location(run_id))
    entry = catalog.get(run_id)
    if entry is None or check.location not in entry.locations:
        check.problems.append("no confirmed copy")
        return check
    confirmed = journal.confirmed(target.name, run_id)
    manifest = confirmed.get(MANIFEST)
    if manifest is None or manifest.sha256 != entry.manifest_sha256:
        check.problems.append(f"{MANIFEST}: not the manifest the catalog has for the bag")
    there = target.listing(run_id)
    for path, done in sorted(confirmed.items()):
        problem = "missing" if path not in there else target.problem(run_id, path, done.sha256, done.remote_checksum)
        if problem is not None:
            check.problems.append(f"{path}: {problem}")
    check.problems.extend(f"{path}: extra file, not in the bag" for path in sorted(there - confirmed.keys()))
    check.files = len(confirmed)
    return check


def make_confirmer(settings: Settings, store: MonitorStore) -> Callable[[str], str | None] | None:
    """For retention: given a run id, None when its offloaded copy at every target is confirmed now, else a
    short reason. None itself when offload is off (no copy stands in for a local bag)."""
    if not settings.offload.enabled:
        return None
    catalog, journal = Catalog(store), OffloadJournal(store)
    opened: list[Target] = []  # once, at the first question (a retention pass asks per run)

    def confirm(run_id: str) -> str | None:
        if not opened:
            try:
                opened.extend(open_targets(settings))
            except MonitorError as err:
                return f"offload targets unavailable: {err}"
        for target in opened:
            try:
                check = check_copy(target, catalog, journal, run_id)
            except TargetError as err:
                return f"offloaded copy at {target.name} cannot be checked: {err}"
            if not check.ok:
                return f"offloaded copy at {target.name}: {check.problems[0]}"
        return None

    return confirm
