"""Which run directories and local bags the retention policies let go, and which must stay and why.

Pure: plain facts about each archived run (from the catalog and a look at the disk) and `now` in,
a list of `Step`s out. The rule between policies is the cautious one: a run's directory (or bag)
goes only when at least one policy applying to it covers the run and *every* policy covering it
lets it go; one policy that keeps it is enough to keep it. So adding a policy can only keep more,
never delete more than the others allow, and "keep FAILED runs longer" is a second policy
for FAILED runs with a longer `keep_days`. Within one policy a run is kept while it ended less than
`keep_days` ago or is among the `keep_last` newest of its run name and status (either keeps it).

A step the policies allow may still be held: the run is not terminal, was reopened, its bag is
marked corrupt, or (a run directory) there is no local bag to re-verify it against. The effects
(re-verification, offload confirmation, deletion) are retention/prune.py's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from fnmatch import fnmatchcase

from ..config import RetentionPolicy
from ..state.records import RUN_TERMINAL
from ..timefmt import parse_timestamp

CORRUPT = "corrupt"  # the catalog's verify_result of a bag found not matching its manifest
DAY_SECONDS = 86_400.0


class Target(StrEnum):
    RUN_DIR = "run_dir"  # runs/<id>, the executor's files
    BAG = "bag"  # the local bag under the archive root


_APPLIES = {Target.RUN_DIR: "run_dirs", Target.BAG: "bags"}


class Hold(StrEnum):
    """Why a step the policies allow must not happen (the RETENTION_HELD event's `reason`)."""

    NOT_TERMINAL = "not_terminal"
    REOPENED = "reopened"
    BAG_CORRUPT = "bag_corrupt"  # the catalog marks the bag corrupt: nothing relies on it
    NO_LOCAL_BAG = "no_local_bag"  # a run directory is only deleted against a local bag re-verified
    BAG_UNVERIFIED = "bag_unverified"  # re-verified in this pass, it did not match its manifest
    CHANGED = "changed"  # a file of the run directory differs from its copy in the bag
    UNREADABLE = "unreadable"  # the run directory cannot be read whole (permission, a symlinked component)
    NOT_OFFLOADED = "not_offloaded"  # no confirmed offloaded copy
    BUSY = "busy"  # the run is being archived, or its directory is in the way


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What the decision needs of one archived run."""

    run_id: str
    status: str
    ended_at: str  # RFC 3339, as the catalog holds it
    name: str | None = None
    verify_result: str | None = None
    run_dir_present: bool = False
    bag_present: bool = False  # a local copy is recorded in the catalog
    reopened: bool = False


@dataclass(frozen=True, slots=True)
class Step:
    """Delete `target` of `run_id` because of `why`, unless `held` says why not."""

    target: Target
    run_id: str
    why: str
    held: Hold | None = None
    detail: str = ""


def plan(runs: Sequence[RunFacts], policies: Sequence[RetentionPolicy], now: datetime) -> list[Step]:
    """Every deletion the policies allow, the run's end oldest first, run directories before bags."""
    steps: list[Step] = []
    ends = {run.run_id: parse_timestamp(run.ended_at) for run in runs}
    ordered = sorted((r for r in runs if ends[r.run_id] is not None), key=lambda r: (ends[r.run_id], r.run_id))
    for target in Target:
        applying = [(n, p) for n, p in enumerate(policies, 1) if _APPLIES[target] in p.applies_to]
        if not applying:
            continue
        present = [r for r in ordered if (r.run_dir_present if target is Target.RUN_DIR else r.bag_present)]
        kept_by_count = {n: _newest(ordered, p) for n, p in applying}
        for run in present:
            ended = ends[run.run_id]
            assert ended is not None
            age_days = (now - ended).total_seconds() / DAY_SECONDS
            covering = [(n, p) for n, p in applying if _covers(p, run)]
            if not covering or any(_keeps(p, age_days, run.run_id in kept_by_count[n]) for n, p in covering):
                continue
            why = f"ended {age_days:.1f} days ago; " + "; ".join(_describe(n, p) for n, p in covering)
            held, detail = _held(run, target)
            steps.append(Step(target, run.run_id, why, held, detail))
    return steps


def _covers(policy: RetentionPolicy, run: RunFacts) -> bool:
    return (not policy.statuses or run.status in policy.statuses) and fnmatchcase(
        run.name or run.run_id, policy.run_name
    )


def _newest(ordered: Sequence[RunFacts], policy: RetentionPolicy) -> set[str]:
    """The run ids among the `keep_last` newest of each run name and status the policy covers."""
    if not policy.keep_last:
        return set()
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for run in ordered:  # oldest first
        if _covers(policy, run):
            groups[(run.name or run.run_id, run.status)].append(run.run_id)
    return {run_id for ids in groups.values() for run_id in ids[-policy.keep_last :]}


def _keeps(policy: RetentionPolicy, age_days: float, among_newest: bool) -> bool:
    return among_newest or (policy.keep_days is not None and age_days < policy.keep_days)


def _describe(number: int, policy: RetentionPolicy) -> str:
    scope = f"{','.join(policy.statuses) or 'any status'}, name {policy.run_name}"
    keeps = [f"{policy.keep_days:g} days" if policy.keep_days is not None else ""]
    keeps.append(f"the last {policy.keep_last}" if policy.keep_last is not None else "")
    return f"policy {number} ({scope}) keeps {' and '.join(k for k in keeps if k)}"


def _held(run: RunFacts, target: Target) -> tuple[Hold | None, str]:
    if run.status not in RUN_TERMINAL:
        return Hold.NOT_TERMINAL, f"the bag says the run is {run.status}"
    if run.reopened:
        return Hold.REOPENED, "the run changed after it was archived; it is archived again once it has ended"
    if run.verify_result == CORRUPT:
        return Hold.BAG_CORRUPT, "its bag is marked corrupt in the catalog (orchestrator archives show)"
    if target is Target.RUN_DIR and not run.bag_present:
        return Hold.NO_LOCAL_BAG, "no local bag to re-verify the directory against"
    return None, ""
