"""A simulated executor: creates runs and moves them along with plain SQL, as a real one would.

It deliberately uses only `sqlite3` and SQL text, never the monitor's own code, so the
monitor is exercised the way it will be in production: by another program's commits
(short `BEGIN IMMEDIATE` transactions, timestamps written by SQLite's `strftime`, files
appearing in run directories). The demo, the tests and the benchmarks all drive it.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

NOW_SQL = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"

INSERT_RUN = (
    f"INSERT INTO runs (run_id, name, status, created_at, updated_at) VALUES (?, ?, 'PENDING', {NOW_SQL}, {NOW_SQL})"
)
START_RUN = f"UPDATE runs SET status = 'RUNNING', started_at = {NOW_SQL}, updated_at = {NOW_SQL} WHERE run_id = ?"
INSERT_WORKSTREAM = (
    "INSERT INTO workstreams (workstream_id, run_id, name, status, created_at, updated_at) "
    f"VALUES (?, ?, ?, 'PENDING', {NOW_SQL}, {NOW_SQL})"
)
SET_WORKSTREAM = f"UPDATE workstreams SET status = ?, updated_at = {NOW_SQL} WHERE workstream_id = ?"
START_WORKSTREAM = (
    f"UPDATE workstreams SET status = 'RUNNING', updated_at = {NOW_SQL} WHERE workstream_id = ? AND status = 'PENDING'"
)
INSERT_TASK = (
    "INSERT INTO tasks (task_id, run_id, workstream_id, name, tool, status, attempts, created_at, updated_at) "
    f"VALUES (?, ?, ?, ?, ?, 'PENDING', 0, {NOW_SQL}, {NOW_SQL})"
)
QUEUE_TASK = f"UPDATE tasks SET status = 'QUEUED', updated_at = {NOW_SQL} WHERE task_id = ?"
START_TASK = (
    "UPDATE tasks SET status = 'RUNNING', attempts = attempts + 1, error_type = NULL, error_message = NULL, "
    f"started_at = {NOW_SQL}, finished_at = NULL, updated_at = {NOW_SQL} WHERE task_id = ?"
)
FINISH_TASK = (
    "UPDATE tasks SET status = ?, error_type = ?, error_message = ?, "
    f"finished_at = {NOW_SQL}, updated_at = {NOW_SQL} WHERE task_id = ?"
)
RESET_TASK = (
    "UPDATE tasks SET status = 'PENDING', attempts = 0, started_at = NULL, finished_at = NULL, "
    f"updated_at = {NOW_SQL} WHERE task_id = ?"
)
FINISH_RUN = f"UPDATE runs SET status = ?, finished_at = {NOW_SQL}, updated_at = {NOW_SQL} WHERE run_id = ?"
CANCEL_RUN = f"UPDATE runs SET status = 'CANCELLED', finished_at = {NOW_SQL}, updated_at = {NOW_SQL} WHERE run_id = ?"
CANCEL_TASKS = (
    f"UPDATE tasks SET status = 'CANCELLED', finished_at = {NOW_SQL}, updated_at = {NOW_SQL} "
    "WHERE run_id = ? AND status IN ('PENDING', 'QUEUED', 'RUNNING')"
)
CANCEL_WORKSTREAMS = (
    f"UPDATE workstreams SET status = 'CANCELLED', updated_at = {NOW_SQL} "
    "WHERE run_id = ? AND status IN ('PENDING', 'RUNNING')"
)

TOOLS = {"lint": 0.03, "compile": 0.08, "test": 0.15, "package": 0.05, "deploy": 0.25}  # tool: failure chance
# What runs, workstreams and tasks are called, so that a demo reads like a real pipeline's.
RUN_NAMES = ("nightly build", "release candidate", "pull request checks", "data backfill", "hotfix", "weekly soak")
WORKSTREAM_NAMES = ("api service", "web frontend", "billing worker", "search indexer", "docs site", "cli")
TASK_SUBJECTS = {
    "lint": "ruff check src/",
    "compile": "build wheels",
    "test": "pytest tests/",
    "package": "container image",
    "deploy": "deploy to staging",
}
ERROR_MESSAGES = {
    "timeout": "no output for 600 s; killed",
    "exit_code": "process exited with status 1",
    "out_of_memory": "killed by the OOM killer (RSS 3.9 GiB of 4 GiB)",
    "network": "connection reset by peer while fetching dependencies",
}
ERROR_TYPES = tuple(ERROR_MESSAGES)
MAX_ATTEMPTS = 3
RETRY_CHANCE = 0.7


@dataclass
class _Task:
    task_id: str
    workstream_id: str
    tool: str
    status: str = "PENDING"
    attempts: int = 0
    retry_pending: bool = False


class SimulatedExecutor:
    """Runs with workstreams and tasks across several tools, moved along one `step` at a time."""

    def __init__(self, db_path: Path, workspace: Path, rng: random.Random, *, concurrency: int = 3) -> None:
        self.db_path = db_path
        self.workspace = workspace
        self.rng = rng
        self.concurrency = concurrency
        self._runs: dict[str, list[_Task]] = {}
        self._workstreams: dict[str, set[str]] = {}  # run -> workstreams not yet finished
        self._started: set[str] = set()  # workstreams some task of which has started
        self._created = 0

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db_path, timeout=30, isolation_level=None)

    def _transaction(self, statements: list[tuple[str, tuple[object, ...]]]) -> None:
        connection = self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
            for sql, params in statements:
                connection.execute(sql, params)
            connection.execute("COMMIT")
        finally:
            connection.close()

    def create_run(self, run_id: str, *, workstreams: int = 3, tasks_per_workstream: int = 4) -> None:
        """Insert a run with its workstreams and tasks, start it, and make its directory."""
        self._created += 1
        name = f"{RUN_NAMES[self._created % len(RUN_NAMES)]} #{self._created}"
        statements: list[tuple[str, tuple[object, ...]]] = [(INSERT_RUN, (run_id, name))]
        tasks: list[_Task] = []
        tools = list(TOOLS)
        for w in range(workstreams):
            ws_id = f"{run_id}.ws{w}"
            ws_name = WORKSTREAM_NAMES[w % len(WORKSTREAM_NAMES)]
            statements.append((INSERT_WORKSTREAM, (ws_id, run_id, ws_name)))
            for t in range(tasks_per_workstream):
                task = _Task(task_id=f"{ws_id}.t{t}", workstream_id=ws_id, tool=tools[(w + t) % len(tools)])
                subject = f"{TASK_SUBJECTS[task.tool]} ({ws_name})"
                statements.append((INSERT_TASK, (task.task_id, run_id, ws_id, subject, task.tool)))
                tasks.append(task)
        statements.append((START_RUN, (run_id,)))
        (self.workspace / "runs" / run_id / "logs").mkdir(parents=True, exist_ok=True)
        self._transaction(statements)
        self._runs[run_id] = tasks
        self._workstreams[run_id] = {f"{run_id}.ws{w}" for w in range(workstreams)}

    def cancel_run(self, run_id: str) -> None:
        """The executor gives up on a run and marks it terminal itself."""
        self._transaction([(CANCEL_TASKS, (run_id,)), (CANCEL_WORKSTREAMS, (run_id,)), (CANCEL_RUN, (run_id,))])
        self._runs.pop(run_id, None)
        self._workstreams.pop(run_id, None)

    @property
    def active_runs(self) -> list[str]:
        return list(self._runs)

    def step(self) -> None:
        """Advance every active run by one tick, one transaction per run."""
        for run_id in list(self._runs):
            statements = list(self._advance(run_id))
            if statements:
                self._transaction(statements)
            if not self._workstreams[run_id]:
                del self._runs[run_id], self._workstreams[run_id]

    def _advance(self, run_id: str) -> Iterator[tuple[str, tuple[object, ...]]]:
        tasks = self._runs[run_id]
        running = [task for task in tasks if task.status == "RUNNING"]
        for task in running:
            if self.rng.random() < 0.5:
                yield self._finish(run_id, task)
        for task in tasks:
            if task.retry_pending:
                task.retry_pending, task.status = False, "RUNNING"
                task.attempts += 1
                yield START_TASK, (task.task_id,)
        slots = self.concurrency - sum(task.status == "RUNNING" for task in tasks)
        for task in tasks:
            if slots <= 0:
                break
            if task.status == "QUEUED":
                task.status, slots = "RUNNING", slots - 1
                task.attempts += 1
                yield START_TASK, (task.task_id,)
                if task.workstream_id not in self._started:  # a workstream runs once its first task does
                    self._started.add(task.workstream_id)
                    yield START_WORKSTREAM, (task.workstream_id,)
            elif task.status == "PENDING":
                task.status = "QUEUED"
                yield QUEUE_TASK, (task.task_id,)
        yield from self._finish_workstreams(run_id, tasks)

    def _finish(self, run_id: str, task: _Task) -> tuple[str, tuple[object, ...]]:
        run_dir = self.workspace / "runs" / run_id
        failed = self.rng.random() < TOOLS[task.tool]
        with (run_dir / "logs" / f"{task.task_id}.log").open("a", encoding="utf-8") as log:
            log.write(f"attempt {task.attempts}: {task.tool} {'failed' if failed else 'succeeded'}\n")
        if not failed:
            task.status = "SUCCEEDED"
            (run_dir / f"{task.task_id}.out").write_text(f"output of {task.task_id} ({task.tool})\n", encoding="utf-8")
            return FINISH_TASK, ("SUCCEEDED", None, None, task.task_id)
        task.status = "FAILED"
        task.retry_pending = task.attempts < MAX_ATTEMPTS and self.rng.random() < RETRY_CHANCE
        error_type = self.rng.choice(ERROR_TYPES)
        message = f"{TASK_SUBJECTS[task.tool]}, attempt {task.attempts}: {ERROR_MESSAGES[error_type]}"
        return FINISH_TASK, ("FAILED", error_type, message, task.task_id)

    def _finish_workstreams(self, run_id: str, tasks: list[_Task]) -> Iterator[tuple[str, tuple[object, ...]]]:
        for ws_id in sorted(self._workstreams[run_id]):
            mine = [task for task in tasks if task.workstream_id == ws_id]
            if any(task.status not in ("SUCCEEDED", "FAILED") or task.retry_pending for task in mine):
                continue
            succeeded = sum(task.status == "SUCCEEDED" for task in mine)
            status = "COMPLETED" if succeeded == len(mine) else "FAILED" if succeeded == 0 else "PARTIAL"
            self._workstreams[run_id].discard(ws_id)
            yield SET_WORKSTREAM, (status, ws_id)


def bulk_populate(
    db_path: Path,
    *,
    runs: int,
    tasks_per_run: int,
    workstreams_per_run: int = 5,
    open_runs: int | None = None,
    open_tasks_per_run: int = 3,
) -> None:
    """A large workspace in one transaction, with the same SQL shapes, for benchmarks.

    Most runs are finished and terminal, with their workstreams terminal, as if marked
    earlier: every task SUCCEEDED (run COMPLETED), or every third task FAILED when
    r % 7 == 0 (PARTIAL), or every task FAILED when r % 13 == 0 (FAILED). `open_runs`
    (default a tenth) stay open, spread evenly (run r is open when r * open_runs % runs <
    open_runs: r % 10 == 0 by default): RUNNING, with every workstream RUNNING and every task
    done (the failures as above) but the last `open_tasks_per_run`, which are RUNNING and
    PENDING in turn, so that an executor finishing those tasks and the workstreams completes
    the run. Run directories are not created.
    """
    tools = list(TOOLS)
    open_runs = runs // 10 if open_runs is None else max(0, min(open_runs, runs))
    workstream_ids = [f".ws{w}" for w in range(workstreams_per_run)]
    connection = sqlite3.connect(db_path, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        for r in range(runs):
            run_id = f"run-{r:06d}"
            is_open = r * open_runs % runs < open_runs
            connection.execute(INSERT_RUN, (run_id, f"bulk {r}"))
            connection.execute(START_RUN, (run_id,))
            connection.executemany(
                INSERT_WORKSTREAM,
                [(run_id + ws, run_id, f"workstream {w}") for w, ws in enumerate(workstream_ids)],
            )
            connection.executemany(
                INSERT_TASK,
                [
                    (
                        f"{run_id}.t{t}",
                        run_id,
                        run_id + workstream_ids[t % workstreams_per_run],
                        f"task {t}",
                        tools[t % len(tools)],
                    )
                    for t in range(tasks_per_run)
                ],
            )
            connection.execute(
                f"UPDATE tasks SET status = 'SUCCEEDED', attempts = 1, started_at = {NOW_SQL}, finished_at = {NOW_SQL} "
                "WHERE run_id = ?",
                (run_id,),
            )
            failing = range(tasks_per_run) if r % 13 == 0 else range(0, tasks_per_run, 3) if r % 7 == 0 else range(0)
            connection.executemany(
                FINISH_TASK, [("FAILED", "exit_code", "bulk failure", f"{run_id}.t{t}") for t in failing]
            )
            if is_open:
                unfinished = range(max(0, tasks_per_run - open_tasks_per_run), tasks_per_run)
                connection.executemany(RESET_TASK, [(f"{run_id}.t{t}",) for t in unfinished])
                connection.executemany(START_TASK, [(f"{run_id}.t{t}",) for t in unfinished if t % 2 == 0])
                connection.executemany(SET_WORKSTREAM, [("RUNNING", run_id + ws) for ws in workstream_ids])
                continue
            failed = set(failing)
            connection.executemany(
                SET_WORKSTREAM,
                [
                    (_outcome(range(w, tasks_per_run, workstreams_per_run), failed), run_id + ws)
                    for w, ws in enumerate(workstream_ids)
                ],
            )
            connection.execute(FINISH_RUN, (_outcome(range(tasks_per_run), failed), run_id))
        connection.execute("COMMIT")
    finally:
        connection.close()


def _outcome(tasks: range, failed: set[int]) -> str:
    """A finished group's status by the completion rule: COMPLETED, FAILED (nothing succeeded) or PARTIAL."""
    failures = sum(t in failed for t in tasks)
    return "COMPLETED" if not failures else "FAILED" if failures == len(tasks) else "PARTIAL"
