"""One retention pass: the policies' plan (retention/policy.py), then each deletion checked again and made.

A run directory goes only after, in this same pass, its local bag was verified whole against its
manifests and every file of the directory that the bag holds was hashed again and found equal to
its copy (retention/check.py); and, when offload is on, after `confirm_offloaded(run_id)` said the
offloaded copy is there and matches. Only the files that are in the bag are deleted. A local bag
goes only when `confirm_offloaded` confirms its offloaded copy (never while offload is off).
A bag found corrupt here is marked so in the catalog (`ARCHIVE_CORRUPT`), like the audit does.

Nothing is deleted while retention is off, in safe mode, or once the daemon is stopping; the
plan (`apply=False`) makes the same checks, reads only, and changes nothing, not even a record.
Each deletion is a `RUN_PRUNED` or `ARCHIVE_PRUNED` event and a `monitor_prunings` row; each
refusal a `RETENTION_HELD` event, once per run, target and reason. One pass at a time per
workspace (`.monitor/locks/retention.lock`), and a run's own lock (archival's) while it is worked on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from ..archive.archiver import run_lock
from ..archive.bag import read_payload_oxum
from ..archive.copier import Flag
from ..archive.failures import ArchiveFailure
from ..archive.tree import RunDir
from ..archive.verify import verify_bag
from ..config import RetentionSettings
from ..errors import Unavailable
from ..events.types import EventType, Publish
from ..ledger.catalog import VERIFIED_CORRUPT, VERIFIED_OK, Catalog
from ..ledger.prunings import CatalogRun, Pruned, Prunings
from ..ledger.store import MonitorStore
from ..lock import hold_lock
from ..timefmt import format_timestamp
from ..workspace import Workspace
from .check import check_run_dir
from .policy import Hold, RunFacts, Step, Target, plan
from .removal import CHECKING, DELETING, aside, delete_files, is_empty, leftovers, remove_tree, rename_durably

logger = logging.getLogger(__name__)
RETENTION = "retention"  # the scheduled job's name
Confirm = Callable[[str], str | None]  # run id -> None when a confirmed offloaded copy matches now, else why not
SHOWN = 5  # names of changed files or bag problems in an event
INTERRUPTED = "finished after an interrupted pass"


class _Held(Exception):
    def __init__(self, hold: Hold, detail: str) -> None:
        super().__init__(detail)
        self.hold = hold
        self.detail = detail


@dataclass
class PassReport:
    """The steps as they ended: a step not held was done (or, in a plan, would be)."""

    steps: list[Step] = field(default_factory=list)
    refused: str | None = None  # why nothing at all was deleted (retention off, safe mode)
    stopped: bool = False  # the pass ended early (the daemon is stopping, safe mode began)

    @property
    def done(self) -> list[Step]:
        return [s for s in self.steps if s.held is None]


class Retention:
    def __init__(
        self,
        settings: RetentionSettings,
        workspace: Workspace,
        store: MonitorStore,
        publish: Publish,
        *,
        confirm_offloaded: Confirm | None = None,
        safe_modes: Callable[[], Collection[str]] = frozenset,
        stop: Flag | None = None,
    ) -> None:
        self._settings = settings
        self._workspace = workspace
        self._catalog = Catalog(store)
        self._prunings = Prunings(store)
        self._publish = publish
        self._confirm = confirm_offloaded
        self._safe_modes = safe_modes
        self._stop = stop

    def plan(self, now: datetime) -> PassReport:
        """What a pass would delete now and what it would hold, with every check but nothing changed."""
        return self._pass(now, apply=False)

    def run_pass(self, now: datetime) -> PassReport:
        """Delete what the policies let go and every check allows; `Unavailable` when another pass runs."""
        refused = self._refusal()
        if refused is not None:
            return PassReport(refused=refused)
        with hold_lock(self._workspace.monitor_dir / "locks" / "retention.lock", "a retention pass"):
            self._recover(now)
            return self._pass(now, apply=True)

    def _refusal(self) -> str | None:
        if not self._settings.enabled:
            return "retention is off (retention.enabled = false): nothing is deleted"
        modes = sorted(self._safe_modes())
        if modes:
            return f"safe mode {', '.join(modes)}: nothing is deleted"
        return None

    def _pass(self, now: datetime, *, apply: bool) -> PassReport:
        rows = {row.run_id: row for row in self._prunings.catalog_runs(under=str(self._workspace.archive_root))}
        facts = [self._facts(row) for row in rows.values()]
        report = PassReport()
        said = self._prunings.holds() if apply else set()
        new_holds: list[tuple[str, str, str]] = []
        for step in plan(facts, self._settings.policies, now):
            if apply and not report.stopped and (self._stopping() or self._refusal() is not None):
                report.stopped = True  # the rest stays as the plan has it, unchecked and untouched
            if report.stopped:
                report.steps.append(replace(step, held=step.held or Hold.BUSY, detail=step.detail or "pass stopped"))
                continue
            if step.held is None:
                try:
                    step = replace(step, detail=self._carry_out(step, rows[step.run_id], now, apply))
                except _Held as held:
                    step = replace(step, held=held.hold, detail=held.detail)
                except Unavailable as busy:  # the run's lock: being archived right now
                    step = replace(step, held=Hold.BUSY, detail=str(busy))
                except OSError as err:  # one run's trouble ends its step, not the pass (a leftover is finished later)
                    step = replace(step, held=Hold.UNREADABLE, detail=f"{err.filename or ''}: {err.strerror or err}")
            if apply and step.held is not None:
                self._say_held(step, said, new_holds)
            report.steps.append(step)
        self._prunings.add_holds(new_holds, format_timestamp(now))
        return report

    def _facts(self, row: CatalogRun) -> RunFacts:
        run_dir_present = "run_dir" not in row.pruned and os.path.lexists(self._run_dir(row.run_id))
        return RunFacts(
            run_id=row.run_id,
            status=row.status,
            ended_at=row.ended_at,
            name=row.name,
            verify_result=row.verify_result,
            run_dir_present=run_dir_present,
            bag_present=row.local_bag is not None and "bag" not in row.pruned,
            reopened=row.reopened,
        )

    def _run_dir(self, run_id: str) -> Path:
        return self._workspace.runs_dir / run_id

    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    def _carry_out(self, step: Step, row: CatalogRun, now: datetime, apply: bool) -> str:
        """Check the step again (raising `_Held`), then, when `apply`, make it; what goes and what stays."""
        self._confirmed(step)
        assert row.local_bag is not None  # the plan holds a step without one
        bag = Path(row.local_bag)
        if not apply:
            if step.target is Target.BAG:
                if not bag.is_dir():
                    raise _Held(Hold.BAG_UNVERIFIED, f"{bag}: the bag is gone")
                return f"{bag}"
            self._verified(step.run_id, bag, now, record=False)
            return _what_goes(*self._compared(bag, self._run_dir(step.run_id)))
        with hold_lock(run_lock(self._workspace, step.run_id), f"run {step.run_id}", remove=True):
            if step.target is Target.RUN_DIR:
                return self._prune_run_dir(step, bag, now)
            self._prune_bag(step.run_id, bag, step.why, now)
            return f"{bag}"

    def _confirmed(self, step: Step) -> None:
        if self._confirm is None:
            if step.target is Target.BAG:
                detail = "offload is off: a local bag goes only once its offloaded copy is confirmed"
                raise _Held(Hold.NOT_OFFLOADED, detail)
            return
        reason = self._confirm(step.run_id)
        if reason is not None:
            raise _Held(Hold.NOT_OFFLOADED, f"the offloaded copy is not confirmed: {reason}")

    def _verified(self, run_id: str, bag: Path, now: datetime, *, record: bool) -> None:
        """The bag verified whole, now; a failure is recorded (when `record`) and holds the step."""
        problems = verify_bag(bag).problems if bag.is_dir() else [f"{bag}: the bag is gone"]
        if not record:
            if problems:
                raise _Held(Hold.BAG_UNVERIFIED, "; ".join(problems[:SHOWN]))
            return
        at = format_timestamp(now)
        if problems:
            self._catalog.record_check(run_id, at, VERIFIED_CORRUPT, "; ".join(problems[:20]))
            data = {"archive_path": str(bag), "problems": problems[:20]}
            self._publish(EventType.ARCHIVE_CORRUPT, data, run_id=run_id)
            raise _Held(Hold.BAG_UNVERIFIED, "; ".join(problems[:SHOWN]))
        self._catalog.record_check(run_id, at, VERIFIED_OK, None)

    def _compared(self, bag: Path, directory: Path, *, resumed: bool = False) -> tuple[list[bytes], int, int]:
        """The names in the bag, their bytes and how many stay; `_Held` when the directory cannot be read or
        (unless `resumed`) a file differs. A resumed deletion keeps a differing file instead: none differed
        when the deletion began, so one that differs now changed since, and what is gone is gone."""
        try:
            found = check_run_dir(bag, RunDir(directory.parent, Path(directory.name)))
        except ArchiveFailure as failure:
            raise _Held(Hold.UNREADABLE, failure.detail) from None
        except OSError as err:  # a bag without a SHA-256 manifest or links.txt (not one of ours)
            raise _Held(Hold.UNREADABLE, f"{bag}: {err.strerror or err}") from None
        if found.changed and not resumed:
            shown = ", ".join(found.changed[:SHOWN]) + (", ..." if len(found.changed) > SHOWN else "")
            raise _Held(Hold.CHANGED, f"{_files(len(found.changed))} changed since the bag was made: {shown}")
        return found.in_bag, found.size, len(found.kept) + len(found.changed)

    def _prune_run_dir(self, step: Step, bag: Path, now: datetime) -> str:
        self._verified(step.run_id, bag, now, record=True)
        original = self._run_dir(step.run_id)
        checking, deleting = aside(original, CHECKING), aside(original, DELETING)
        try:
            rename_durably(original, checking)
        except OSError as err:
            raise _Held(Hold.BUSY, f"{original} cannot be set aside: {err.strerror or err}") from None
        try:
            names, size, kept = self._compared(bag, checking)
        except _Held:
            rename_durably(checking, original)  # nothing deleted: it is back as it was
            raise
        rename_durably(checking, deleting)
        self._delete_run_files(step.run_id, deleting, names, size, kept, step.why, now)
        return _what_goes(names, size, kept)

    def _delete_run_files(
        self, run_id: str, deleting: Path, names: list[bytes], size: int, kept: int, why: str, now: datetime
    ) -> None:
        original = self._run_dir(run_id)
        delete_files(deleting, names)
        self._prunings.record(Pruned(run_id, Target.RUN_DIR, format_timestamp(now), why, len(names), size, kept))
        data = {"run_dir": str(original), "files": len(names), "bytes": size, "kept": kept, "why": why}
        self._publish(EventType.RUN_PRUNED, data, run_id=run_id)
        if is_empty(deleting):
            os.rmdir(deleting)
        else:  # what the bag does not have stays, under the run's own name
            rename_durably(deleting, original)
        logger.info("retention: run %s: %d files deleted, %d kept (%s)", run_id, len(names), kept, why)

    def _prune_bag(self, run_id: str, bag: Path, why: str, now: datetime) -> None:
        if not bag.is_dir():
            raise _Held(Hold.BAG_UNVERIFIED, f"{bag}: the bag is gone")
        deleting = aside(bag, DELETING)
        rename_durably(bag, deleting)
        self._bag_deleted(run_id, bag, deleting, why, now)

    def _bag_deleted(self, run_id: str, bag: Path, deleting: Path, why: str, now: datetime) -> None:
        size, files = read_payload_oxum(deleting)
        done = Pruned(run_id, Target.BAG, format_timestamp(now), why, files, size, 0)
        self._prunings.record(done, drop_location=str(bag))
        self._publish(EventType.ARCHIVE_PRUNED, {"archive_path": str(bag), "bytes": size, "why": why}, run_id=run_id)
        remove_tree(deleting)
        logger.info("retention: the local bag of run %s deleted (%s)", run_id, why)

    def _say_held(self, step: Step, said: set[tuple[str, str, str]], new: list[tuple[str, str, str]]) -> None:
        """RETENTION_HELD once per run, target and reason (remembered at the end of the pass: a crash
        before that says it again, never not at all)."""
        assert step.held is not None
        key = (step.run_id, str(step.target), str(step.held))
        if key not in said:
            said.add(key)
            new.append(key)
            data = {"target": str(step.target), "reason": str(step.held), "detail": step.detail}
            self._publish(EventType.RETENTION_HELD, data, run_id=step.run_id)

    def _recover(self, now: datetime) -> None:
        """Finish or undo what a pass killed midway left (see retention/removal.py)."""
        for run_id, checking in leftovers(self._workspace.runs_dir, CHECKING):
            original = self._run_dir(run_id)
            if not original.exists():
                rename_durably(checking, original)  # nothing was deleted yet
        half_deleted = leftovers(self._workspace.runs_dir, DELETING)
        rows = {row.run_id: row for row in self._prunings.catalog_runs()} if half_deleted else {}
        for run_id, deleting in half_deleted:
            row = rows.get(run_id)
            try:
                if row is None or row.local_bag is None:
                    raise _Held(Hold.NO_LOCAL_BAG, f"{deleting} is left as it is: no local bag to verify it against")
                bag = Path(row.local_bag)
                self._verified(run_id, bag, now, record=True)
                names, size, kept = self._compared(bag, deleting, resumed=True)
                self._delete_run_files(run_id, deleting, names, size, kept, INTERRUPTED, now)
            except _Held as held:
                said, new = self._prunings.holds(), list[tuple[str, str, str]]()
                self._say_held(Step(Target.RUN_DIR, run_id, INTERRUPTED, held.hold, held.detail), said, new)
                self._prunings.add_holds(new, format_timestamp(now))
        for run_id, deleting in leftovers(self._workspace.archive_root, DELETING):
            self._bag_deleted(run_id, self._workspace.archive_root / run_id, deleting, INTERRUPTED, now)


def _files(count: int) -> str:
    return f"{count} file{'' if count == 1 else 's'}"


def _what_goes(names: list[bytes], size: int, kept: int) -> str:
    stays = f", {_files(kept)} not in it {'stays' if kept == 1 else 'stay'}" if kept else ""
    return f"{_files(len(names))} ({size} bytes) in the bag go{stays}"


def retention_job(
    settings: RetentionSettings,
    workspace: Workspace,
    store: MonitorStore,
    publish: Publish,
    safe_modes: Callable[[], Collection[str]],
    stop: Flag,
    confirm_offloaded: Confirm | None = None,
) -> tuple[str, float, Callable[[datetime], object]] | None:
    """The scheduler's entry (name, interval, one pass), or None when retention is off."""
    if not settings.enabled:
        return None
    retention = Retention(
        settings, workspace, store, publish, confirm_offloaded=confirm_offloaded, safe_modes=safe_modes, stop=stop
    )

    def one_pass(now: datetime) -> PassReport | None:
        try:
            report = retention.run_pass(now)
        except Unavailable as busy:  # `orchestrator retention run` is making a pass right now
            logger.info("retention pass skipped: %s", busy)
            return None
        if report.refused is not None:
            logger.info("retention pass skipped: %s", report.refused)
        return report

    return RETENTION, settings.interval_seconds, one_pass
