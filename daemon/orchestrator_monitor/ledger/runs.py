"""The monitor's record of each run it has finished with, in its own database (`.monitor/`).

This is what makes detection exactly-once across restarts: a decision is written here
before its effect (the intent to mark, before the mark), and its outcome before its event
goes out, so a restart can tell what is done. Events may repeat after a crash (same id),
completions are never lost or repeated.

Phases of a run here:
  baseline   terminal when the monitor first started in this workspace: left for backfill
  marking    the monitor is about to mark it (the mark may or may not have landed)
  completed  terminal, recorded; its RUN_COMPLETED may not have gone out yet
  announced  RUN_COMPLETED went out and the run was handed to archival
  reopened   its rows changed after its completion, before its bag: archived once it has ended again
             (then `completed` again, with the rows and status of its new end)
  published  its bag was renamed into place in the transaction that wrote this (`publish_bag`): a change
             now can no longer take it back; RUN_ARCHIVED may not have gone out yet
  archived   its bag is published and recorded, RUN_ARCHIVED out
  reported   its reports are written and recorded; REPORT_GENERATED may not have gone out yet

`owner` is the daemon that owes the run its remaining work: the one whose intent or completion
landed first. Several daemons on one PostgreSQL share this table; every transition checks the
owner, so each run is marked, announced, archived and reported by exactly one of them, and a
daemon whose lease ran out loses its runs to the others (`take_over`).

The ledger is read by run id, in batches, when a pass needs it: a daemon that runs for months never
holds every run it ever finished.

`fingerprint` is what the latest completion was decided on (`state.snapshots.fingerprint_text`);
`reopened` says RUN_REOPENED went out (once per run, whoever saw the change first: the detector or
archival).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from sys import intern
from types import MappingProxyType
from typing import Any

import orjson
from sqlalchemy import Connection, and_, bindparam, or_, select, update

from ..inlists import chunks, padded
from ..timefmt import format_timestamp, utc_now
from .store import OWED, MonitorStore, monitor_meta, monitor_refusals, monitor_runs

_NO_TASKS: Mapping[str, int] = MappingProxyType({})
_R = monitor_runs
BAGGED_PHASES = ("published", "archived", "reported")  # the run's bag is out: a change now keeps it


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    phase: str
    status: str | None
    marked_by: str | None
    tasks: Mapping[str, int]
    fingerprint: str | None
    reopened: bool
    owner: str | None = None  # the daemon that owes the run its remaining work (None: a workspace's one daemon)


@dataclass(frozen=True, slots=True)
class Completion:
    """What a completion records: the outcome and the rows it was decided on."""

    run_id: str
    status: str
    marked_by: str
    tasks: Mapping[str, int]
    fingerprint: str


def _record(row: Any) -> RunRecord:
    tasks = orjson.loads(row.tasks) if row.tasks else _NO_TASKS
    return RunRecord(
        row.run_id,
        intern(row.phase),
        None if row.status is None else intern(row.status),
        None if row.marked_by is None else intern(row.marked_by),
        tasks,
        row.fingerprint,
        bool(row.reopened),
        row.owner,
    )


class Ledger:
    """Per-run phases in `monitor_runs`; every method is one short transaction."""

    def __init__(self, store: MonitorStore, clock: Callable[[], datetime] = utc_now) -> None:
        self._store = store
        self._clock = clock  # what `updated_at` says: `recent_fingerprints` compares it with a pass's time
        self._me = store.daemon_id
        self._lock = threading.Lock()  # SQLite: one writer at a time in this process, as BEGIN IMMEDIATE would
        # the statements of a mark (`begin_marks`, `complete_many`, `announce_many`), built once: building
        # them was most of each write's 1.2 ms (the commit's fsync 0.2-0.5 ms)
        self._statements: dict[str, Any] = {}

    def _statement(self, name: str, build: Callable[[], Any]) -> Any:
        statement = self._statements.get(name)
        if statement is None:
            statement = self._statements[name] = build()
        return statement

    @property
    def daemon_id(self) -> str:
        return self._me

    @property
    def store(self) -> MonitorStore:
        return self._store

    def _mine(self) -> Any:
        """Rows this daemon may move on: its own, or a single daemon's from before owners (NULL)."""
        return or_(_R.c.owner.is_(None), _R.c.owner == self._me)

    def _write(self, statement: Any, params: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None = None) -> int:
        with self._lock, self._store.write() as connection:
            result = connection.execute(statement, params) if params is not None else connection.execute(statement)
            return int(result.rowcount)

    def _now(self) -> str:
        return format_timestamp(self._clock())

    def refuse(self, run_id: str, reason: str) -> bool:
        """Record that archival refuses the run for good; True the first time (when it must be said)."""
        statement = (
            self._store.insert(monitor_refusals)
            .values(run_id=run_id, reason=reason, at=self._now())
            .on_conflict_do_nothing(index_elements=["run_id"])
        )
        return self._write(statement) > 0

    def baseline_taken(self) -> bool:
        with self._store.engine.connect() as connection:
            found = connection.execute(select(monitor_meta.c.key).where(monitor_meta.c.key == "baseline_at")).first()
        return found is not None

    def take_baseline(self, terminal_runs: Mapping[str, str]) -> None:
        """Record the runs already terminal at the very first start, and that the baseline was taken
        (once: a second daemon starting on a shared database at the same moment adds nothing)."""
        now = self._now()
        rows = [
            {"run_id": run_id, "phase": "baseline", "status": status, "updated_at": now}
            for run_id, status in terminal_runs.items()
        ]
        with self._lock, self._store.write() as connection:
            taken = connection.execute(
                self._store.insert(monitor_meta)
                .values(key="baseline_at", value=now)
                .on_conflict_do_nothing(index_elements=["key"])
            ).rowcount
            if taken and rows:
                connection.execute(self._store.insert(_R).on_conflict_do_nothing(index_elements=["run_id"]), rows)

    def records_among(self, run_ids: Iterable[str]) -> dict[str, RunRecord]:
        """The records of these runs that exist, read by id in batches."""
        found: dict[str, RunRecord] = {}
        ids = list(run_ids)
        with self._store.engine.connect() as connection:
            for chunk in chunks(ids):
                rows = connection.execute(select(_R).where(_R.c.run_id.in_(chunk)))
                found.update((row.run_id, _record(row)) for row in rows)
        return found

    def active_records(self) -> dict[str, RunRecord]:
        """This daemon's runs it still owes work (marking .. archived): few, whatever the history."""
        with self._store.engine.connect() as connection:
            rows = connection.execute(select(_R).where(OWED, self._mine()))
            return {row.run_id: _record(row) for row in rows}

    def recent_fingerprints(self, since: str, batch: int) -> Iterator[dict[str, tuple[str, str]]]:
        """This daemon's runs completed (announced, archived or reported) at or after `since` that a change
        would still reopen (not reopened yet, or waiting for their bag): run_id -> (status, the rows their
        completion was decided on), `batch` runs at a time. The full comparison's hour, read by time
        instead of held in memory, and streamed: at three runs a second that hour is some 10,000 runs,
        and read whole each pass its peak grew for the whole first hour, the allocator's pages with it
        (bench/soak.py, bench/jemalloc_bins.py)."""
        query = select(_R.c.run_id, _R.c.status, _R.c.fingerprint).where(
            _R.c.phase.in_(("announced", *BAGGED_PHASES)),
            _R.c.fingerprint.is_not(None),
            or_(_R.c.reopened == 0, _R.c.phase == "announced"),
            _R.c.updated_at >= since,
            self._mine(),
        )
        with self._store.engine.connect() as connection:
            for rows in connection.execution_options(yield_per=batch).execute(query).partitions():
                yield {run_id: (status or "", fingerprint) for run_id, status, fingerprint in rows}

    def begin_marks(self, intents: Mapping[str, str]) -> set[str]:
        """Record the intent to mark these runs (run -> status); returns those this daemon holds now.

        A run another daemon holds is left to it: its intent or completion landed first."""
        if not intents:
            return set()
        now = self._now()
        rows = [
            {"run_id": r, "phase": "marking", "status": s, "owner": self._me, "updated_at": now}
            for r, s in intents.items()
        ]
        with self._lock, self._store.write() as connection:
            connection.execute(self._statement("begin marks", self._begin_marks), rows)
            held = self._held(connection, list(intents), "marking")
        return held

    def _begin_marks(self) -> Any:
        insert = self._store.insert(_R)
        return insert.on_conflict_do_update(
            index_elements=["run_id"],
            set_={
                "phase": "marking",
                "status": insert.excluded.status,
                "owner": self._me,
                "updated_at": insert.excluded.updated_at,
            },
            where=and_(_R.c.phase == "marking", self._mine()),
        )

    def _held(self, connection: Connection, run_ids: list[str], phase: str) -> set[str]:
        query = self._statement(
            "held",
            lambda: select(_R.c.run_id).where(
                _R.c.run_id.in_(bindparam("run_ids", expanding=True)),
                _R.c.phase == bindparam("phase"),
                _R.c.owner == self._me,
            ),
        )
        held: set[str] = set()
        for chunk in chunks(run_ids):
            held.update(connection.execute(query, {"run_ids": chunk, "phase": phase}).scalars().all())
        return held

    def forget(self, run_ids: Iterable[str]) -> None:
        """Drop intents whose mark never landed (the run changed first)."""
        ids = list(run_ids)
        if ids:
            self._write(_R.delete().where(_R.c.run_id.in_(padded(ids)), _R.c.phase == "marking", self._mine()))

    def complete_many(self, completions: Sequence[Completion]) -> set[str]:
        """Record completions (first ones, or reopened runs' new ends: their `reopened` flag stays) in one
        transaction; returns the runs recorded. A run another daemon holds is not recorded: it is theirs."""
        if not completions:
            return set()
        now = self._now()
        rows = [
            {
                "run_id": c.run_id,
                "phase": "completed",
                "status": c.status,
                "marked_by": c.marked_by,
                "tasks": orjson.dumps(dict(c.tasks)).decode(),
                "fingerprint": c.fingerprint,
                "owner": self._me,
                "updated_at": now,
            }
            for c in completions
        ]
        with self._lock, self._store.write() as connection:
            connection.execute(self._statement("complete", self._complete), rows)
            return self._held(connection, [c.run_id for c in completions], "completed")

    def _complete(self) -> Any:
        insert = self._store.insert(_R)
        return insert.on_conflict_do_update(
            index_elements=["run_id"],
            set_={
                name: insert.excluded[name]
                for name in ("phase", "status", "marked_by", "tasks", "fingerprint", "owner", "updated_at")
            },
            where=and_(or_(_R.c.phase == "marking", _R.c.phase == "reopened"), self._mine()),  # no IN: executemany
        )

    def announce_many(self, run_ids: list[str]) -> None:
        """RUN_COMPLETED of these runs is written: one transaction for a pass's worth of runs."""
        if run_ids:
            statement = self._statement(
                "announce",
                lambda: (
                    update(_R)
                    .where(
                        _R.c.run_id.in_(bindparam("run_ids", expanding=True)), _R.c.phase == "completed", self._mine()
                    )
                    .values(phase="announced", updated_at=bindparam("now"))
                ),
            )
            self._write(statement, {"run_ids": padded(run_ids), "now": self._now()})

    def archived(self, run_id: str, status: str) -> bool:
        """Record a published bag; False when it was recorded already (or the run's completion is not out yet).

        A run the ledger does not know (archived by a command before any daemon saw it) gets a row,
        so a daemon starting later takes it as done, as it would a baseline run.
        """
        insert = self._store.insert(_R)
        statement = insert.values(
            run_id=run_id, phase="archived", status=status, owner=self._me, updated_at=self._now()
        ).on_conflict_do_update(
            index_elements=["run_id"],
            set_={"phase": "archived", "updated_at": insert.excluded.updated_at},
            where=_R.c.phase.in_(("baseline", "announced", "published")),
        )
        return self._write(statement) > 0

    def publish_bag(self, run_id: str, decided_on: str | None, rename: Callable[[], None]) -> bool:
        """Rename a run's bag into place and record it published, in one transaction; False (nothing
        renamed) when the run changed since its bag's rows were checked: reopened, or completed anew
        on other rows than `decided_on`.

        Without it a change seen between archival's check of the rows and its record of the bag
        reopened a run whose bag was out: the bag stayed, and the run was archived and announced
        a second time when it ended again. Inside this transaction a change either came first (the
        bag is not published) or finds the run `published` (it keeps its bag, the spec's "not
        archived again"). A run in another phase (unknown to the ledger, baseline, not announced yet: a
        command's archival) is renamed and recorded by `archived` alone, as before.
        """
        with self._lock, self._store.write() as connection:
            row = connection.execute(
                select(_R.c.phase, _R.c.fingerprint).where(_R.c.run_id == run_id).with_for_update()
            ).first()
            if row is not None and (
                row.phase == "reopened" or (decided_on is not None and row.fingerprint != decided_on)
            ):
                return False
            rename()
            if row is not None and row.phase == "announced":
                connection.execute(
                    update(_R).where(_R.c.run_id == run_id).values(phase="published", updated_at=self._now())
                )
        return True

    def reported(self, run_id: str) -> bool:
        """Record written reports; False when the run was not waiting for them."""
        statement = (
            update(_R)
            .where(_R.c.run_id == run_id, _R.c.phase == "archived")
            .values(phase="reported", updated_at=self._now())
        )
        return self._write(statement) > 0

    def phase(self, run_id: str) -> str | None:
        with self._store.engine.connect() as connection:
            return connection.execute(select(_R.c.phase).where(_R.c.run_id == run_id)).scalar()

    def record(self, run_id: str) -> RunRecord | None:
        """The run's whole record (archival compares the rows with the completion's `fingerprint`)."""
        return self.records_among([run_id]).get(run_id)

    def decision(self, run_id: str) -> str | None:
        """The status the monitor's own mark decided for the run (None if the executor ended it).

        The truth to tell where the executor's vocabulary could not hold it (PARTIAL written `failed`)."""
        with self._store.engine.connect() as connection:
            return connection.execute(
                select(_R.c.status).where(_R.c.run_id == run_id, _R.c.marked_by == "monitor")
            ).scalar()

    def phases_among(self, run_ids: list[str]) -> dict[str, str]:
        """run_id -> phase of these runs: which have a published bag, which archival found reopened."""
        found: dict[str, str] = {}
        with self._store.engine.connect() as connection:
            for chunk in chunks(run_ids):
                rows = connection.execute(select(_R.c.run_id, _R.c.phase).where(_R.c.run_id.in_(chunk)))
                found.update((run_id, intern(phase)) for run_id, phase in rows)
        return found

    def runs_in_phase(self, phase: str) -> list[str]:
        """This daemon's runs waiting in `phase` (an owed one), oldest first: what archival resumes at start."""
        query = select(_R.c.run_id).where(OWED, _R.c.phase == phase, self._mine()).order_by(_R.c.updated_at)
        with self._store.engine.connect() as connection:
            return [row[0] for row in connection.execute(query)]

    def reopened_runs(self) -> list[str]:
        """This daemon's runs waiting for their new end (`ix_monitor_runs_owed`: as many rows as such runs)."""
        return self.runs_in_phase("reopened")

    def take_over(self, live: Iterable[str], limit: int = 1000) -> dict[str, str]:
        """Runs still owed work by daemons that are not `live` (their lease ran out), now this daemon's:
        run_id -> phase. PostgreSQL only: `FOR UPDATE SKIP LOCKED`, so two survivors never take the same run."""
        alive = [*live, self._me]
        owed = (
            select(_R.c.run_id)
            .where(OWED, _R.c.owner.is_not(None), _R.c.owner.not_in(alive))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        statement = (
            update(_R)
            .where(_R.c.run_id.in_(owed.scalar_subquery()))
            .values(owner=self._me, updated_at=self._now())
            .returning(_R.c.run_id, _R.c.phase)
        )
        with self._lock, self._store.write() as connection:
            return {run_id: intern(phase) for run_id, phase in connection.execute(statement)}

    def reopen(self, run_id: str, decided_on: str | None = None) -> tuple[bool, str | None]:
        """Record that the run changed after its completion: (whether RUN_REOPENED is still to be published,
        the run's phase now; None when nothing was recorded).

        A run without a bag yet waits for its new end (phase `reopened`); one whose bag is published
        keeps it (the spec: not archived again). With `decided_on`, nothing happens unless the
        recorded completion is still the one decided on those rows: an archival that read the record
        before the detector completed the run anew must not reopen the new completion.
        """
        with self._lock, self._store.write() as connection:
            row = connection.execute(
                select(_R.c.reopened, _R.c.fingerprint, _R.c.phase).where(_R.c.run_id == run_id).with_for_update()
            ).first()
            if row is None or (decided_on is not None and row.fingerprint != decided_on):
                return False, None
            phase = "reopened" if row.phase in ("completed", "announced") else row.phase
            connection.execute(
                update(_R).where(_R.c.run_id == run_id).values(reopened=1, phase=phase, updated_at=self._now())
            )
        return not row.reopened, intern(phase)
