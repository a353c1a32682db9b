"""Helpers the tests import: the CLI as a real process, driving the simulated executor."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from orchestrator_monitor.demo.simulator import SimulatedExecutor
from orchestrator_monitor.state.mapping import built_in
from orchestrator_monitor.state.tables import StateTables, build_tables

TESTS = Path(__file__).resolve().parent  # helpers (publish_until_term.py) live here, tests in folders by package
REPO = TESTS.parent


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_process(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> CliResult:
    """Run the installed `orchestrator` command as a real process."""
    completed = subprocess.run(
        [sys.executable, "-m", "orchestrator_monitor.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}, **(env or {})},
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


def free_port() -> int:
    """A TCP port nobody listens on now (the daemon binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def drive_to_end(executor: SimulatedExecutor) -> None:
    for _ in range(10_000):
        if not executor.active_runs:
            return
        executor.step()
    raise AssertionError("the simulated executor did not finish")


class EventLog:
    """Reads `logs/monitor.jsonl` as it grows (a tail that survives being called before the file exists)."""

    def __init__(self, workspace: Path) -> None:
        self.path = workspace / "logs" / "monitor.jsonl"
        self.lines: list[dict[str, Any]] = []
        self._offset = 0

    def read(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return self.lines
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        self.lines.extend(orjson.loads(line) for line in complete.splitlines())
        return self.lines

    def events(self, type: str, run_id: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.read() if e["type"] == type and (run_id is None or e.get("run_id") == run_id)]

    def wait_for(self, condition: Callable[[EventLog], bool], timeout: float = 20.0, what: str = "") -> None:
        """Wait until `condition(self)` holds, re-reading the file (a condition, not a fixed sleep)."""
        deadline = time.monotonic() + timeout
        while not condition(self):
            if time.monotonic() > deadline:
                tail = [
                    f"{e['type']} {e.get('run_id', '')} {e.get('data', e.get('message'))}" for e in self.lines[-15:]
                ]
                raise AssertionError(f"timed out waiting for {what or condition}; last lines:\n" + "\n".join(tail))
            time.sleep(0.01)
            self.read()


class DaemonProcess:
    """`orchestrator daemon` as a real process on a workspace; `stop()` sends SIGTERM and waits."""

    def __init__(
        self, workspace: Path, *settings: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
    ) -> None:
        self.workspace = workspace
        self.log = EventLog(workspace)
        self.port = free_port()
        args = [
            "daemon",
            "--workspace",
            str(workspace),
            "--set",
            "events.sinks=",
            "--set",
            f"dashboard.port={self.port}",
        ]
        for item in settings:
            args += ["--set", item]
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "orchestrator_monitor.cli", *args],  # a prefix that execs keeps the pid
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}, **(env or {})},
        )
        pid = self.process.pid
        self.log.wait_for(
            lambda log: (
                any(e["type"] == "MONITOR_STARTED" and e["data"]["pid"] == pid for e in log.read())
                or self.process.poll() is not None
            ),
            what="MONITOR_STARTED",
        )
        assert self.process.poll() is None, self.process.communicate()
        if "dashboard.enabled=false" not in settings:  # the HTTP server comes up just after MONITOR_STARTED
            self.log.wait_for(lambda log: self._listening() or self.process.poll() is not None, what="the port")

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def get(self, path: str, token: str | None = None) -> tuple[int, bytes]:
        """GET from the daemon's HTTP server: status and body (an error status is an answer too)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as in a crash or an OOM kill."""
        self.process.kill()
        self.process.communicate()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, str]:
        self.process.send_signal(sig)
        _, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, err


class Writer:
    """The executor's side: plain sqlite3 statements on the state database, each its own transaction."""

    def __init__(self, workspace: Path) -> None:
        self.db = workspace / ".state" / "orchestration.db"

    def sql(self, statement: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        connection = sqlite3.connect(self.db, timeout=30, isolation_level=None)
        try:
            return connection.execute(statement, params).fetchall()
        finally:
            connection.close()

    def add_run(
        self,
        run_id: str,
        tasks: list[str],
        workstreams: tuple[str, ...] = ("COMPLETED",),
        failure: tuple[str, str, str] | None = None,
    ) -> None:
        """A run with tasks in the given statuses, all in one transaction; `failure` (tool, error type,
        message) goes on its FAILED tasks."""
        tool, error_type, message = failure or (None, None, None)
        connection = sqlite3.connect(self.db, timeout=30, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("INSERT INTO runs (run_id, status) VALUES (?, 'RUNNING')", (run_id,))
            for n, status in enumerate(tasks):
                failed = status == "FAILED"
                connection.execute(
                    "INSERT INTO tasks (task_id, run_id, status, attempts, finished_at, tool, error_type, "
                    "error_message) VALUES (?, ?, ?, 1, ?, ?, ?, ?)",
                    (
                        f"{run_id}.t{n}",
                        run_id,
                        status,
                        f"2026-11-24T10:00:{n:02d}Z",
                        tool,
                        error_type if failed else None,
                        message if failed else None,
                    ),
                )
            for n, status in enumerate(workstreams):
                connection.execute(
                    "INSERT INTO workstreams (workstream_id, run_id, status) VALUES (?, ?, ?)",
                    (f"{run_id}.w{n}", run_id, status),
                )
            connection.execute("COMMIT")
        finally:
            connection.close()

    def status(self, run_id: str) -> str:
        return self.sql("SELECT status FROM runs WHERE run_id = ?", (run_id,))[0][0]


_LOCK_HOLDER = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[2] == "EXCLUSIVE":
    c.execute("PRAGMA locking_mode=EXCLUSIVE")
c.execute("BEGIN " + sys.argv[2])
c.execute("UPDATE runs SET name = name WHERE 0")
print("locked", flush=True)
sys.stdin.readline()
c.execute("COMMIT")
"""


@contextmanager
def lock_held(db: Path, mode: str = "IMMEDIATE") -> Iterator[None]:
    """Another process holds the database's write lock (EXCLUSIVE: readers too) until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _LOCK_HOLDER, str(db), mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.communicate("\n", timeout=10)


def reference_tables() -> StateTables:
    """The mapped tables of the reference schema, as the daemon builds them for a reference workspace."""
    return build_tables(built_in("reference"), "archival_log")
