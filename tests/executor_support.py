"""Real executor schemas (families `uet` and `pipeline`, see /work/shared/EXECUTORS.md) and drivers that write them.

The DDL lives in tests/executor_ddl/<family>.sql. The drivers write the way the executors do: plain sqlite3, one
short `BEGIN IMMEDIATE` transaction per call, timestamps in the engine's `isoformat() + "Z"` shape
(`2026-11-30T23:10:24.508258+00:00Z`). `bulk_fill` makes large databases for benchmarks in one transaction.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DDL_DIR: Path = Path(__file__).resolve().parent / "executor_ddl"
FAMILIES: tuple[str, ...] = ("uet", "pipeline")

UET_RUN_STATES: tuple[str, ...] = ("pending", "running", "succeeded", "failed", "quarantined", "canceled")
UET_STEP_STATES: tuple[str, ...] = ("running", "succeeded", "failed", "canceled")
PIPELINE_RUN_STATES: tuple[str, ...] = ("INITIALIZING", "RUNNING", "PAUSED", "COMPLETED", "FAILED")
PIPELINE_WORKSTREAM_STATES: tuple[str, ...] = (
    "PENDING",
    "INITIALIZING",
    "RUNNING",
    "PAUSED",
    "BLOCKED",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "ABANDONED",
)
PIPELINE_TASK_STATES: tuple[str, ...] = (
    "PENDING",
    "QUEUED",
    "VALIDATING",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "BLOCKED",
    "CANCELLED",
    "RETRYING",
)
PIPELINE_TASK_TERMINAL: tuple[str, ...] = ("COMPLETED", "FAILED", "CANCELLED")
PIPELINE_WORKSTREAM_TERMINAL: tuple[str, ...] = ("COMPLETED", "FAILED", "CANCELLED", "ABANDONED")
PIPELINE_WORKSTREAMS_PER_RUN = 4
OPEN_TASKS = 3  # an open run from bulk_fill has its last OPEN_TASKS task rows still running

# bulk_fill's clock: run n starts RUN_SPACING after run n-1, its rows STEP_SPACING apart.
_BULK_EPOCH = datetime(2026, 11, 1, 0, 0, 0, 508258, tzinfo=UTC)
_RUN_SPACING = timedelta(seconds=61, microseconds=123457)
_STEP_SPACING = timedelta(seconds=2, microseconds=345679)


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown executor family {family!r} (expected one of {', '.join(FAMILIES)})")


def create_database(path: Path, family: str) -> None:
    """Create (or complete) an executor state database of `family` at `path`, making parent directories."""
    _check_family(family)
    ddl = (DDL_DIR / f"{family}.sql").read_text(encoding="utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        connection.executescript(ddl)
    finally:
        connection.close()


def executor_time(moment: datetime | None = None, *, naive: bool = False) -> str:
    """A timestamp as the executors write it: `2026-11-30T23:10:24.508258+00:00Z`, or naive `...T23:10:24.508258`.

    `moment` defaults to now; a naive `moment` is taken to be UTC.
    """
    if moment is None:
        moment = datetime.now(UTC)
    elif moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    if naive:
        return moment.replace(tzinfo=None).isoformat()
    return moment.isoformat() + "Z"


class _Executor:
    """One database file; every call is its own short transaction, as the executors' own writes are."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        finally:
            connection.close()

    def sql(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement in its own transaction and return all its rows."""
        with self._transaction() as connection:
            return [tuple(row) for row in connection.execute(statement, params).fetchall()]

    def state(self, run_id: str) -> str:
        rows = self.sql("SELECT state FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise KeyError(run_id)
        return str(rows[0][0])


class UetExecutor(_Executor):
    """Writes family `uet` as its run engine does: runs, and one step_attempts row per attempt of a step."""

    def start_run(self, run_id: str, *, metadata: dict[str, Any] | None = None) -> None:
        now = executor_time()
        with self._transaction() as connection:
            connection.execute(
                "INSERT INTO runs (run_id, project_id, phase_id, workstream_id, created_at, started_at, state, "
                "metadata) VALUES (?, ?, ?, NULL, ?, ?, 'running', ?)",
                (run_id, "project-1", "phase-1", now, now, json.dumps(metadata or {})),
            )

    def start_step(self, run_id: str, sequence: int, tool_id: str) -> int:
        """A new attempt of step `sequence` (a retry is a new row with the same (run_id, sequence)); its id."""
        with self._transaction() as connection:
            cursor = connection.execute(
                "INSERT INTO step_attempts (run_id, sequence, tool_id, started_at, state, metadata) "
                "VALUES (?, ?, ?, ?, 'running', '{}')",
                (run_id, sequence, tool_id, executor_time()),
            )
            attempt_id = cursor.lastrowid
        assert attempt_id is not None
        return attempt_id

    def end_step(self, attempt_id: int, state: str, *, error: str | None = None, naive: bool = False) -> None:
        with self._transaction() as connection:
            connection.execute(
                "UPDATE step_attempts SET state = ?, ended_at = ?, exit_code = ?, error_log = ? "
                "WHERE step_attempt_id = ?",
                (state, executor_time(naive=naive), 0 if state == "succeeded" else 1, error, attempt_id),
            )

    def run_step(self, run_id: str, sequence: int, tool_id: str, outcomes: list[str]) -> None:
        """One attempt per outcome, in order; an outcome of 'running' leaves that attempt running."""
        for outcome in outcomes:
            attempt_id = self.start_step(run_id, sequence, tool_id)
            if outcome != "running":
                self.end_step(attempt_id, outcome, error=None if outcome == "succeeded" else f"{tool_id} {outcome}")

    def end_run(self, run_id: str, state: str) -> None:
        """The engine finishing the run itself."""
        with self._transaction() as connection:
            connection.execute(
                "UPDATE runs SET state = ?, ended_at = ? WHERE run_id = ?", (state, executor_time(), run_id)
            )


class PipelineExecutor(_Executor):
    """Writes family `pipeline` as its state machine does: runs, workstreams of a run, tasks of a workstream."""

    def start_run(self, run_id: str, *, metadata: dict[str, Any] | None = None) -> None:
        now = executor_time()
        with self._transaction() as connection:
            connection.execute(
                "INSERT INTO runs (run_id, state, created_at, updated_at, metadata, progress_percentage) "
                "VALUES (?, 'RUNNING', ?, ?, ?, 0.0)",
                (run_id, now, now, json.dumps(metadata or {})),
            )

    def add_workstream(self, run_id: str, workstream_id: str, state: str = "RUNNING") -> None:
        now = executor_time()
        with self._transaction() as connection:
            connection.execute(
                "INSERT INTO workstreams (workstream_id, run_id, state, created_at, updated_at, completed_at, "
                "metadata) VALUES (?, ?, ?, ?, ?, ?, '{}')",
                (workstream_id, run_id, state, now, now, now if state in PIPELINE_WORKSTREAM_TERMINAL else None),
            )

    def add_task(self, workstream_id: str, task_id: str, state: str = "PENDING") -> None:
        now = executor_time()
        with self._transaction() as connection:
            connection.execute(
                "INSERT INTO tasks (task_id, workstream_id, state, created_at, updated_at, queued_at, started_at, "
                "completed_at, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '{}')",
                (
                    task_id,
                    workstream_id,
                    state,
                    now,
                    now,
                    now if state == "QUEUED" else None,
                    now if state == "RUNNING" else None,
                    now if state in PIPELINE_TASK_TERMINAL else None,
                ),
            )

    def set_task(self, task_id: str, state: str, *, retry_count: int | None = None) -> None:
        now = executor_time()
        with self._transaction() as connection:
            connection.execute(
                "UPDATE tasks SET state = ?, updated_at = ?, "
                "queued_at = CASE WHEN ? = 'QUEUED' THEN ? ELSE queued_at END, "
                "started_at = CASE WHEN ? = 'RUNNING' THEN ? ELSE started_at END, "
                "completed_at = CASE WHEN ? IN ('COMPLETED', 'FAILED', 'CANCELLED') THEN ? ELSE completed_at END, "
                "retry_count = COALESCE(?, retry_count) WHERE task_id = ?",
                (state, now, state, now, state, now, state, now, retry_count, task_id),
            )

    def set_workstream(self, workstream_id: str, state: str) -> None:
        now = executor_time()
        with self._transaction() as connection:
            connection.execute(
                "UPDATE workstreams SET state = ?, updated_at = ?, completed_at = ? WHERE workstream_id = ?",
                (state, now, now if state in PIPELINE_WORKSTREAM_TERMINAL else None, workstream_id),
            )

    def end_run(self, run_id: str, state: str) -> None:
        """The state machine finishing the run itself."""
        now = executor_time()
        with self._transaction() as connection:
            connection.execute(
                "UPDATE runs SET state = ?, updated_at = ?, completed_at = ?, progress_percentage = 100.0 "
                "WHERE run_id = ?",
                (state, now, now if state in ("COMPLETED", "FAILED") else None, run_id),
            )


def _run_id(n: int) -> str:
    return f"run-{n:06d}"


def bulk_fill(path: Path, family: str, *, runs: int, tasks_per_run: int, open_runs: int, seed: int = 0) -> list[str]:
    """Fill an existing `family` database with `runs` runs of `tasks_per_run` task rows each, in one transaction.

    All but `open_runs` runs are terminal with every task terminal; the open ones ('running' / 'RUNNING') have their
    last 3 task rows still running. uet: a few steps per run are retried (two rows for one (run_id, sequence)), the
    row count per run is exactly `tasks_per_run`. pipeline: 4 workstreams per run, the tasks in contiguous blocks.
    Returns the open run ids in order.
    """
    _check_family(family)
    if not 0 <= open_runs <= runs:
        raise ValueError(f"open_runs must be between 0 and runs ({runs}), not {open_runs}")
    if tasks_per_run < 1:
        raise ValueError("tasks_per_run must be at least 1")
    rng = random.Random(seed)
    open_numbers = set(rng.sample(range(1, runs + 1), open_runs))
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        connection.execute("PRAGMA synchronous = OFF")  # this connection only; the journal mode is untouched
        connection.execute("BEGIN IMMEDIATE")
        try:
            if family == "uet":
                _fill_uet(connection, rng, runs, tasks_per_run, open_numbers)
            else:
                _fill_pipeline(connection, rng, runs, tasks_per_run, open_numbers)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
    finally:
        connection.close()
    return [_run_id(n) for n in sorted(open_numbers)]


def _clock(start: datetime, count: int) -> list[str]:
    return [executor_time(start + _STEP_SPACING * k) for k in range(count)]


def _fill_uet(
    connection: sqlite3.Connection, rng: random.Random, runs: int, tasks_per_run: int, open_numbers: set[int]
) -> None:
    tools = ("lint", "test", "build", "typecheck", "package")
    run_rows: list[tuple[Any, ...]] = []
    attempt_rows: list[tuple[Any, ...]] = []
    for n in range(1, runs + 1):
        run_id = _run_id(n)
        is_open = n in open_numbers
        running = min(OPEN_TASKS, tasks_per_run) if is_open else 0
        # Retried steps: never among the running tail, so each running row is the only attempt of its step.
        retried_count = min(1 + tasks_per_run // 50, (tasks_per_run - running) // 2)
        steps = tasks_per_run - retried_count
        retried = set(rng.sample(range(steps - running), retried_count))
        failed_run = not is_open and rng.random() < 0.1
        times = _clock(_BULK_EPOCH + _RUN_SPACING * n, tasks_per_run + 2)
        tick = 0
        for sequence in range(steps):
            tool = tools[sequence % len(tools)]
            states = ["failed", "succeeded"] if sequence in retried else ["succeeded"]
            if sequence >= steps - running:
                states = ["running"]
            elif failed_run and sequence == steps - 1:
                states[-1] = "failed"
            for state in states:
                started, ended = times[tick], times[tick + 1]
                tick += 1
                if state == "running":
                    attempt_rows.append((run_id, sequence, tool, started, None, "running", None, None))
                else:
                    error = None if state == "succeeded" else f"{tool} exited 1"
                    exit_code = 0 if state == "succeeded" else 1
                    attempt_rows.append((run_id, sequence, tool, started, ended, state, exit_code, error))
        if is_open:
            run_row: tuple[Any, ...] = ("running", None, None)
        else:
            run_row = ("failed", times[tick + 1], 1) if failed_run else ("succeeded", times[tick + 1], 0)
        run_state, ended_at, run_exit = run_row
        metadata = json.dumps({"plan_steps": steps})
        run_rows.append((run_id, "project-1", "phase-1", times[0], times[0], ended_at, run_state, run_exit, metadata))
    connection.executemany(
        "INSERT INTO runs (run_id, project_id, phase_id, created_at, started_at, ended_at, state, exit_code, metadata) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        run_rows,
    )
    connection.executemany(
        "INSERT INTO step_attempts (run_id, sequence, tool_id, started_at, ended_at, state, exit_code, error_log, "
        "metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '{}')",
        attempt_rows,
    )


def _fill_pipeline(
    connection: sqlite3.Connection, rng: random.Random, runs: int, tasks_per_run: int, open_numbers: set[int]
) -> None:
    run_rows: list[tuple[Any, ...]] = []
    workstream_rows: list[tuple[Any, ...]] = []
    task_rows: list[tuple[Any, ...]] = []
    block = -(-tasks_per_run // PIPELINE_WORKSTREAMS_PER_RUN)  # tasks per workstream, rounded up
    for n in range(1, runs + 1):
        run_id = _run_id(n)
        is_open = n in open_numbers
        running_from = tasks_per_run - min(OPEN_TASKS, tasks_per_run) if is_open else tasks_per_run
        failed_task = rng.randrange(running_from) if not is_open and rng.random() < 0.1 else -1
        times = _clock(_BULK_EPOCH + _RUN_SPACING * n, tasks_per_run + 2)
        workstream_state = ["COMPLETED"] * PIPELINE_WORKSTREAMS_PER_RUN
        for i in range(tasks_per_run):
            w = i // block
            task_id = f"{run_id}.t{i:04d}"
            workstream_id = f"{run_id}.ws{w}"
            created, started, ended = times[0], times[i], times[i + 1]
            if i >= running_from:
                workstream_state[w] = "RUNNING"
                task_rows.append((task_id, workstream_id, "RUNNING", created, started, started, started, None, 0))
            elif i == failed_task:
                workstream_state[w] = "FAILED"
                task_rows.append((task_id, workstream_id, "FAILED", created, ended, started, started, ended, 3))
            else:
                retries = 1 if rng.random() < 0.03 else 0
                task_rows.append(
                    (task_id, workstream_id, "COMPLETED", created, ended, started, started, ended, retries)
                )
        last = times[tasks_per_run + 1]
        for w, state in enumerate(workstream_state):
            completed_at = None if state == "RUNNING" else last
            progress = 50.0 if state == "RUNNING" else 100.0
            workstream_rows.append((f"{run_id}.ws{w}", run_id, state, times[0], last, completed_at, progress))
        if is_open:
            done = (tasks_per_run - min(OPEN_TASKS, tasks_per_run)) / tasks_per_run
            run_rows.append((run_id, "RUNNING", times[0], last, None, round(100.0 * done, 1)))
        else:
            run_state = "FAILED" if failed_task >= 0 else "COMPLETED"
            run_rows.append((run_id, run_state, times[0], last, last, 100.0))
    connection.executemany(
        "INSERT INTO runs (run_id, state, created_at, updated_at, completed_at, progress_percentage, metadata) "
        "VALUES (?, ?, ?, ?, ?, ?, '{}')",
        run_rows,
    )
    connection.executemany(
        "INSERT INTO workstreams (workstream_id, run_id, state, created_at, updated_at, completed_at, "
        "progress_percentage, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, '{}')",
        workstream_rows,
    )
    connection.executemany(
        "INSERT INTO tasks (task_id, workstream_id, state, created_at, updated_at, queued_at, started_at, "
        "completed_at, retry_count, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '{}')",
        task_rows,
    )


def finish_open_run(connection: sqlite3.Connection, family: str, run_id: str) -> None:
    """Inside the caller's transaction: end every still-running task of `run_id` successfully, not the run.

    uet: its running attempts become 'succeeded' (the engine died before ending the run); pipeline: its non-terminal
    tasks become COMPLETED and its non-terminal workstreams COMPLETED. The run row stays running either way.
    """
    _check_family(family)
    now = executor_time()
    if family == "uet":
        connection.execute(
            "UPDATE step_attempts SET state = 'succeeded', ended_at = ?, exit_code = 0 "
            "WHERE run_id = ? AND state = 'running'",
            (now, run_id),
        )
        return
    connection.execute(
        "UPDATE tasks SET state = 'COMPLETED', updated_at = ?, completed_at = ?, started_at = COALESCE(started_at, ?) "
        "WHERE state NOT IN ('COMPLETED', 'FAILED', 'CANCELLED') "
        "AND workstream_id IN (SELECT workstream_id FROM workstreams WHERE run_id = ?)",
        (now, now, now, run_id),
    )
    connection.execute(
        "UPDATE workstreams SET state = 'COMPLETED', updated_at = ?, completed_at = ?, progress_percentage = 100.0 "
        "WHERE run_id = ? AND state NOT IN ('COMPLETED', 'FAILED', 'CANCELLED', 'ABANDONED')",
        (now, now, run_id),
    )
