"""What bench/chaos.py and bench/soak.py share: the daemon as a real process, its log, an executor, /proc samples.

- `Daemon`: `orchestrator daemon` started as a real process (console sink and dashboard off),
  every lifetime recorded (pid, how it ended, its stderr in a file of its own), killed, stopped,
  signalled and restarted on request.
- `LogTail`: reads `logs/monitor.jsonl` and its rotated files (`.1`, `.2`, ...) as they grow,
  following each file by its inode, so a rename by logrotate or by the daemon loses nothing;
  `read_log_files` reads them all again, oldest first, for the final checks.
- `Workload`: a random executor on its own thread, plain `sqlite3` and SQL text as a real one
  (the simulator's statements, `demo/simulator.py`): runs of a few to hundreds of tasks over
  several workstreams, artifacts from empty to `max_file_bytes` (sparse or quickly written) under
  awkward names, runs ended by the executor itself (its own terminal status, or a cancel), and
  retries after the monitor's mark (a task set back to RUNNING, then terminal again). It keeps a
  record of everything it did (`RunLog`), which the chaos runner's invariants compare with the
  monitor's events, bags and reports.
- `process_sample`: RSS, descriptors, threads and CPU ticks of a process from /proc.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from random import Random
from typing import Any

import orjson
from orchestrator_monitor.demo.simulator import (
    CANCEL_RUN,
    CANCEL_TASKS,
    CANCEL_WORKSTREAMS,
    FINISH_RUN,
    FINISH_TASK,
    INSERT_RUN,
    INSERT_TASK,
    INSERT_WORKSTREAM,
    SET_WORKSTREAM,
    START_RUN,
    START_TASK,
)

PYTHON = sys.executable
# The daemon runs as the service does, without CAP_DAC_OVERRIDE: as root it would otherwise write a
# database file that is chmod 0444 (tests/service/test_service.py starts it the same way).
NO_DAC_OVERRIDE = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--")
STATE_DB = Path(".state") / "orchestration.db"
TASK_TERMINAL = frozenset({"SUCCEEDED", "FAILED", "SKIPPED", "CANCELLED"})
RUN_TERMINAL = frozenset({"COMPLETED", "FAILED", "PARTIAL", "CANCELLED"})
MIB = 1 << 20
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
EXECUTOR_BUSY_SECONDS = 30.0  # the executor waits this long for a write lock (a fault holds it for up to 10 s)
PATTERN = bytes(range(256)) * (MIB // 256)  # what a written (not sparse) artifact is made of


def final_status(counts: Counter[str] | dict[str, int]) -> str:
    """The spec's outcome of a run's tasks (written here again, independently of detect/rule.py)."""
    present = {status for status, count in counts.items() if count}
    if present <= {"SUCCEEDED", "SKIPPED"}:
        return "COMPLETED"
    if "SUCCEEDED" not in present:
        return "FAILED"
    return "PARTIAL"


def group_status(statuses: Sequence[str]) -> str:
    """A workstream's status once its tasks are done, as the simulator sets it."""
    succeeded = sum(status in ("SUCCEEDED", "SKIPPED") for status in statuses)
    return "COMPLETED" if succeeded == len(statuses) else "FAILED" if succeeded == 0 else "PARTIAL"


def clean_environment(**extra: str) -> dict[str, str]:
    """This environment without ORCHESTRATOR_* leftovers, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(extra)
    return env


def orchestrator(*args: str, timeout: float = 120.0, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the `orchestrator` command as a real process."""
    return subprocess.run(
        [PYTHON, "-m", "orchestrator_monitor.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=clean_environment(),
        check=False,
    )


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now (the daemon's dashboard takes it next)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def init_workspace(workspace: Path) -> None:
    result = orchestrator("init", "--workspace", str(workspace))
    if result.returncode != 0:
        raise RuntimeError(f"orchestrator init failed: {result.stderr.strip()}")


def epoch_of(text: str) -> float:
    """An event's RFC 3339 UTC `time` as seconds since the epoch."""
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --- the event log ---------------------------------------------------------------------------------


def log_files(logs_dir: Path, name: str) -> list[Path]:
    """`name` and its rotated files, oldest first (`name.3`, `name.2`, `name.1`, `name`)."""
    pattern = re.compile(re.escape(name) + r"\.(\d+)$")
    rotated = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.listdir(logs_dir):
            match = pattern.fullmatch(entry)
            if match:
                rotated.append((int(match[1]), logs_dir / entry))
    files = [path for _, path in sorted(rotated, reverse=True)]
    if (logs_dir / name).exists():
        files.append(logs_dir / name)
    return files


@dataclass(frozen=True)
class LogLine:
    """One line of a log file as it is on disk: where it is, its bytes, and what it says (None: not JSON)."""

    path: Path
    number: int
    raw: bytes
    data: dict[str, Any] | None
    ended: bool  # ends with a newline


def read_log_files(logs_dir: Path, name: str) -> list[LogLine]:
    """Every line of `name` and its rotated files, oldest file first, in order."""
    lines: list[LogLine] = []
    for path in log_files(logs_dir, name):
        content = path.read_bytes()
        pieces = content.split(b"\n")
        for number, raw in enumerate(pieces, 1):
            ended = number < len(pieces)
            if not ended and not raw:
                continue  # after the last newline
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError:
                data = None
            lines.append(LogLine(path, number, raw, data if isinstance(data, dict) else None, ended))
    return lines


class LogTail:
    """Follows `logs/monitor.jsonl` and its rotated files as they grow, each file by its inode.

    Lines come in the order they were read, which across files is only roughly the log's order:
    enough to wait for events. Thread-safe.
    """

    def __init__(self, logs_dir: Path, name: str = "monitor.jsonl") -> None:
        self.logs_dir = logs_dir
        self.name = name
        self.lines: list[dict[str, Any]] = []
        self.unparsable = 0
        self._offsets: dict[tuple[int, int], int] = {}
        self._counts: Counter[tuple[str, str | None]] = Counter()
        self._lock = threading.Lock()

    def poll(self) -> None:
        with self._lock:
            for path in log_files(self.logs_dir, self.name):
                try:
                    with path.open("rb") as handle:
                        stat = os.fstat(handle.fileno())
                        identity = (stat.st_dev, stat.st_ino)
                        offset = self._offsets.get(identity, 0)
                        if stat.st_size <= offset:
                            continue
                        handle.seek(offset)
                        chunk = handle.read()
                except FileNotFoundError:
                    continue  # renamed between the listing and the open: found under its new name next time
                complete = chunk[: chunk.rfind(b"\n") + 1]
                self._offsets[identity] = offset + len(complete)
                for raw in complete.splitlines():
                    try:
                        line = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        self.unparsable += 1
                        continue
                    self.lines.append(line)
                    self._counts[(line.get("type", ""), line.get("run_id"))] += 1
                    self._counts[(line.get("type", ""), None)] += 1

    def count(self, type: str, run_id: str | None = None) -> int:
        with self._lock:
            return self._counts[(type, run_id)]

    def since(self, index: int) -> list[dict[str, Any]]:
        with self._lock:
            return self.lines[index:]

    def mark(self) -> int:
        """A position: `since(mark)` gives what was read after it."""
        self.poll()
        with self._lock:
            return len(self.lines)

    def wait_for(self, condition: Callable[[], bool], timeout: float, poll_seconds: float = 0.05) -> bool:
        """Wait until `condition()` holds (re-reading the files), at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if condition():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll_seconds)  # another process writes the file: nothing here to wait on


# --- the daemon --------------------------------------------------------------------------------------


class DaemonError(RuntimeError):
    pass


@dataclass
class Lifetime:
    """One `orchestrator daemon` process: its pid, how it ended, where its stderr went."""

    number: int
    pid: int
    stderr: Path
    started_mono: float
    ended: str = "running"  # running, killed (SIGKILL by us), stopped (SIGTERM by us), died (by itself)
    code: int | None = None
    stop_seconds: float | None = None


class Daemon:
    """`orchestrator daemon` on `workspace`; `start` waits for its MONITOR_STARTED (by pid)."""

    def __init__(
        self,
        workspace: Path,
        tail: LogTail,
        *,
        settings: Sequence[str] = (),
        prefix: Sequence[str] = (),
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        stderr_dir: Path,
    ) -> None:
        self.workspace = workspace
        self.tail = tail
        self.settings = list(settings)
        self.prefix = tuple(prefix)
        self.env = env or clean_environment()
        self.cwd = cwd
        self.stderr_dir = stderr_dir
        self.lifetimes: list[Lifetime] = []
        self.process: subprocess.Popen[bytes] | None = None
        self.lock = threading.RLock()  # one change of the process at a time

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    def command(self) -> list[str]:
        args = [*self.prefix, PYTHON, "-m", "orchestrator_monitor.cli", "daemon", "--workspace", str(self.workspace)]
        args += ["--set", "events.sinks=", "--set", "dashboard.enabled=false"]
        for item in self.settings:
            args += ["--set", item]
        return args

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> Lifetime:
        with self.lock:
            if self.pid is not None:
                raise DaemonError("the daemon is running already")
            number = len(self.lifetimes)
            mark = self.tail.mark()
            stderr = self.stderr_dir / f"daemon-{number:03d}.err"
            with stderr.open("wb") as err:
                process = subprocess.Popen(
                    self.command(), stdin=subprocess.DEVNULL, stdout=err, stderr=err, cwd=self.cwd, env=self.env
                )
            self.process = process
            lifetime = Lifetime(number, process.pid, stderr, time.monotonic())
            self.lifetimes.append(lifetime)

            def started() -> bool:
                return process.poll() is not None or any(
                    line.get("type") == "MONITOR_STARTED" and line.get("data", {}).get("pid") == process.pid
                    for line in self.tail.since(mark)
                )

            if not self.tail.wait_for(started, timeout) or process.poll() is not None:
                code = process.poll()
                if code is None:
                    process.kill()
                    code = process.wait()
                lifetime.ended, lifetime.code = "died", code
                raise DaemonError(f"the daemon did not start (exit {code}): {tail_of(stderr)}")
            return lifetime

    def current(self) -> Lifetime | None:
        return self.lifetimes[-1] if self.lifetimes else None

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer: nothing is cleaned up."""
        with self.lock:
            process, lifetime = self.process, self.current()
            if process is None or lifetime is None or process.poll() is not None:
                return
            process.kill()
            lifetime.code = process.wait()
            lifetime.ended = "killed"

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> Lifetime | None:
        """SIGTERM and wait (SIGCONT first, in case it is stopped); SIGKILL after `timeout`."""
        with self.lock:
            process, lifetime = self.process, self.current()
            if process is None or lifetime is None or process.poll() is not None:
                return lifetime
            sent = time.monotonic()
            process.send_signal(signal.SIGCONT)
            process.send_signal(signal.SIGTERM)
            try:
                lifetime.code = process.wait(timeout)
                lifetime.ended = "stopped"
            except subprocess.TimeoutExpired:
                process.kill()
                lifetime.code = process.wait()
                lifetime.ended = "killed"  # it did not stop in time
            lifetime.stop_seconds = time.monotonic() - sent
            return lifetime

    def send(self, sig: int) -> bool:
        with self.lock:
            if self.process is None or self.process.poll() is not None:
                return False
            self.process.send_signal(sig)
            return True

    def died(self) -> Lifetime | None:
        """The current lifetime if its process ended without us ending it (recorded as `died`)."""
        with self.lock:
            process, lifetime = self.process, self.current()
            if process is None or lifetime is None or lifetime.ended != "running":
                return None
            code = process.poll()
            if code is None:
                return None
            lifetime.ended, lifetime.code = "died", code
            return lifetime


def tail_of(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(text.strip().splitlines()[-lines:])


# --- /proc -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessSample:
    rss_bytes: int
    anon_bytes: int  # RssAnon: the heap; RSS minus this is mapped files and shared memory
    fds: int
    threads: int
    cpu_ticks: int  # utime + stime, in clock ticks


def process_sample(pid: int) -> ProcessSample | None:
    """RSS, open descriptors, threads and CPU time of `pid`; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss = int(fields["VmRSS"].split()[0]) * 1024 if "VmRSS" in fields else 0
    anon = int(fields["RssAnon"].split()[0]) * 1024 if "RssAnon" in fields else rss
    threads = int(fields["Threads"].strip())
    after_name = stat[stat.rfind(")") + 2 :].split()
    cpu = int(after_name[11]) + int(after_name[12])  # fields 14 and 15 of proc(5): utime, stime
    return ProcessSample(rss, anon, fds, threads, cpu)


def writable_files(pid: int) -> list[str]:
    """Paths of regular files `pid` holds open for writing (descriptors 0-2, pipes, sockets left out)."""
    found = []
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, ProcessLookupError):
        return []
    for fd in descriptors:
        if int(fd) <= 2:
            continue
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:
            continue  # closed meanwhile
        if not target.startswith("/"):
            continue
        flags = next((int(line.split()[1], 8) for line in info.splitlines() if line.startswith("flags:")), 0)
        if flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR):
            found.append(target.removesuffix(" (deleted)"))
    return found


# --- the executor ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkloadConfig:
    """The shape of the random executor's work."""

    runs_per_second: float = 0.8  # how often a new run starts (Poisson), while runs are being created
    max_active: int = 12  # runs being worked on at once
    max_tasks: int = 500
    max_workstreams: int = 5
    max_files: int = 30  # artifacts per run (a few runs have several times more small ones)
    max_file_bytes: int = 100 * MIB
    budget_bytes: int = 1536 * MIB  # all artifacts together (apparent sizes); bigger files are skipped past it
    budget_seconds: float | None = None  # spread the budget over this long (None: spend it as it comes)
    awkward_names: bool = True
    executor_ends_share: float = 0.2  # runs the executor sets terminal itself
    cancel_share: float = 0.05  # runs the executor cancels half-way
    retry_share: float = 0.15  # runs the monitor marked that the executor reopens with a retry
    tick_seconds: float = 0.1
    task_seconds: float = 2.0  # a run takes about this long whatever its size (bigger runs move more tasks a tick)


@dataclass
class FileRecord:
    kind: str  # empty, sparse, data, link, fifo
    size: int  # apparent size (0 for a link or a FIFO)
    target: bytes = b""  # a link's


@dataclass
class RunLog:
    """What the executor did to one run (wall-clock times are `time.time()` right after the commit)."""

    run_id: str
    tasks: int
    workstreams: int
    ends: str  # monitor (left RUNNING for the monitor to mark), executor (sets its status), cancel
    retry_delay: float | None  # seconds after the mark it is reopened, None: never
    created_wall: float = 0.0
    first_end_wall: float | None = None
    first_end_tasks: dict[str, str] = field(default_factory=dict)
    first_end_rows: dict[str, tuple[str, int]] = field(default_factory=dict)  # task -> (status, attempts)
    executor_status: str | None = None  # the terminal status the executor set itself
    marked_wall: float | None = None  # when the executor saw the monitor's mark (retry runs only)
    retry_wall: float | None = None
    retry_task: str | None = None
    final_end_wall: float | None = None
    final_tasks: dict[str, str] = field(default_factory=dict)
    final_rows: dict[str, tuple[str, int]] = field(default_factory=dict)
    files: dict[bytes, FileRecord] = field(default_factory=dict)
    retry_skipped: str | None = None  # why a planned retry did not happen

    @property
    def ended(self) -> bool:
        return self.final_end_wall is not None


@dataclass
class _Task:
    task_id: str
    workstream: int
    status: str = "PENDING"
    attempts: int = 0
    retry_pending: bool = False


@dataclass
class _Run:
    log: RunLog
    tasks: list[_Task]
    workstream_ids: list[str]
    workstream_done: list[bool]
    fail_chance: float
    skip_chance: float
    planned: list[tuple[bytes, FileRecord]]
    cancel_at: float | None  # share of tasks done at which it is cancelled
    phase: str = "active"  # active, awaiting_mark, retrying, done
    retry_due: float = 0.0  # monotonic
    retry_finish_due: float = 0.0


_AWKWARD = [
    b"with space.txt",
    b"  leading and trailing  ",
    b"-rf",
    b"--help",
    b"-",
    "caf\u00e9 cr\u00e8me.txt".encode(),
    "\u65e5\u672c\u8a9e\u306e\u30d5\u30a1\u30a4\u30eb.log".encode(),
    "emoji-\U0001f389\U0001f680.bin".encode(),
    ("\u00e9" * 127 + "x").encode(),  # 255 bytes, the longest name: two-byte characters
    b"a" * 255,
    b"percent %0A %25 %.txt",
    b"back\\slash",
    b"quote\"s and 'single'",
    b"*glob?[x]{y}",
    b"tab\there",
    b"semi;colon&amp|pipe",
    b"manifest-sha256.txt",
    b"bagit.txt",
    b"..dots..",
    b".hidden",
    b"~tilde",
    b"dir with space/sub dir/file name.txt",
    b"-dash-dir/--nested/-file",
]
_NEWLINE_NAMES = [b"new\nline.txt", b"carriage\rreturn", b"\nstarts-with-newline"]
_UNDECODABLE_NAMES = [b"latin1-\xe9t\xe9.txt", b"\xff\xfe-not-utf8"]


def filesystem_takes(directory: Path, name: bytes) -> bool:
    """Whether a file named `name` can be created in `directory` (newlines, bytes that are not UTF-8)."""
    path = os.path.join(os.fsencode(directory), name)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
    except OSError:
        return False
    os.unlink(path)
    return True


class Workload:
    """The random executor, on a thread of its own: `start()`, `stop_creating()`, `wait_drained()`, `join()`."""

    def __init__(
        self, workspace: Path, rng: Random, config: WorkloadConfig, *, prefix: str = "run", first_run: int = 0
    ) -> None:
        self.workspace = workspace
        self.db = workspace / STATE_DB
        self.rng = rng
        self.config = config
        self.prefix = prefix
        self.records: dict[str, RunLog] = {}
        self.counts: Counter[str] = Counter()  # transactions, retried transactions, files, ...
        self.bytes_used = 0
        self.errors: list[str] = []  # the executor's own failures (a harness error, not the monitor's)
        self._runs: dict[str, _Run] = {}
        self._next = first_run
        self._creating = threading.Event()
        self._creating.set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_create = time.monotonic()
        self._lock = threading.Lock()
        runs = workspace / "runs"
        self._names = list(_AWKWARD)
        if filesystem_takes(runs, _NEWLINE_NAMES[0]):
            self._names += _NEWLINE_NAMES
        if filesystem_takes(runs, _UNDECODABLE_NAMES[1]):
            self._names += _UNDECODABLE_NAMES
        self.names_note = f"{len(self._names)} awkward names" + (
            "" if b"new\nline.txt" in self._names else " (no newlines: the filesystem refuses them)"
        )
        self._big_done = False
        self._started = time.monotonic()

    # -- control --

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._main, name="executor", daemon=True)
        self._thread.start()

    def stop_creating(self) -> None:
        self._creating.clear()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(EXECUTOR_BUSY_SECONDS + 10)

    @property
    def active(self) -> int:
        with self._lock:
            return sum(run.phase != "done" for run in self._runs.values())

    def wait_drained(self, timeout: float) -> bool:
        """Every run created has ended (retries included), at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self.active:
            if time.monotonic() >= deadline or (self._thread is not None and not self._thread.is_alive()):
                return False
            self._stop.wait(0.1)
        return True

    def abandon_retries(self, why: str) -> None:
        """Runs still waiting for the monitor's mark give up their retry (the drain ran out of time)."""
        with self._lock:
            for run in self._runs.values():
                if run.phase == "awaiting_mark":
                    run.phase = "done"
                    run.log.retry_skipped = why

    # -- the loop --

    def _main(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._tick()
            except sqlite3.OperationalError as err:  # locked past the busy timeout, or a read-only moment
                self.counts["transactions retried"] += 1
                self.counts[f"retried: {err}"] += 1
            except Exception as err:
                self.errors.append(f"executor: {type(err).__name__}: {err}")
                if len(self.errors) > 20:
                    return
            self._stop.wait(max(0.0, self.config.tick_seconds - (time.monotonic() - started)))

    def _tick(self) -> None:
        now = time.monotonic()
        if self._creating.is_set():
            while self._next_create <= now and self.active < self.config.max_active:
                self._create()
                self._next_create += self.rng.expovariate(self.config.runs_per_second)
            self._next_create = max(self._next_create, now - 1.0)  # no catching up after a long lock
        else:
            self._next_create = now
        for run in list(self._runs.values()):
            if run.phase == "active":
                self._advance(run)
            elif run.phase == "retrying" and now >= run.retry_finish_due:
                self._finish_retry(run)
        self._check_marks()

    # -- runs --

    def _transaction(self, statements: list[tuple[str, tuple[object, ...]]]) -> float:
        connection = sqlite3.connect(self.db, timeout=EXECUTOR_BUSY_SECONDS, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    connection.execute(sql, params)
                connection.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
                raise
        finally:
            connection.close()
        self.counts["transactions"] += 1
        return time.time()

    def _new_run_id(self) -> str:
        number = self._next
        self._next += 1
        if number % 23 == 7:  # now and then the longest id allowed (128 characters of the allowed alphabet)
            stem = f"{self.prefix}-{number:05d}.long_id-"
            return stem + "x" * (128 - len(stem))
        return f"{self.prefix}-{number:05d}"

    def _create(self) -> None:
        config, rng = self.config, self.rng
        run_id = self._new_run_id()
        size = rng.random()
        if size < 0.5:
            tasks = rng.randint(1, min(10, config.max_tasks))
        elif size < 0.85:
            tasks = rng.randint(1, min(60, config.max_tasks))
        else:
            tasks = rng.randint(1, config.max_tasks)
        workstreams = rng.randint(1, min(config.max_workstreams, tasks))
        roll = rng.random()
        ends = (
            "cancel"
            if roll < config.cancel_share
            else "executor"
            if roll < config.cancel_share + config.executor_ends_share
            else "monitor"
        )
        retry = None
        if ends == "monitor" and rng.random() < config.retry_share:
            kind = rng.random()  # at once (the race with archival), soon, or after the bag is likely published
            retry = 0.0 if kind < 0.35 else rng.uniform(0.02, 1.0) if kind < 0.75 else rng.uniform(1.0, 4.0)
        log = RunLog(run_id, tasks, workstreams, ends, retry)
        profile = rng.random()
        fail, skip = (0.0, 0.05) if profile < 0.45 else (0.25, 0.05) if profile < 0.8 else (1.0, 0.0)
        if profile > 0.95:
            fail = rng.random()
        workstream_ids = [f"{run_id}.ws{w}" for w in range(workstreams)]
        tasks_list = [_Task(f"{run_id}.t{t:03d}", t % workstreams) for t in range(tasks)]
        run = _Run(
            log,
            tasks_list,
            workstream_ids,
            [False] * workstreams,
            fail,
            skip,
            self._plan_files(run_id),
            rng.uniform(0.2, 0.8) if ends == "cancel" else None,
        )
        statements: list[tuple[str, tuple[object, ...]]] = [(INSERT_RUN, (run_id, f"chaos {run_id}"))]
        statements += [(INSERT_WORKSTREAM, (ws, run_id, f"workstream {n}")) for n, ws in enumerate(workstream_ids)]
        tools = ("lint", "compile", "test", "package", "deploy")
        statements += [
            (INSERT_TASK, (t.task_id, run_id, workstream_ids[t.workstream], f"task {n}", tools[n % len(tools)]))
            for n, t in enumerate(tasks_list)
        ]
        statements.append((START_RUN, (run_id,)))
        (self.workspace / "runs" / run_id).mkdir(parents=True, exist_ok=True)
        log.created_wall = self._transaction(statements)
        with self._lock:
            self.records[run_id] = log
            self._runs[run_id] = run
        self.counts["runs created"] += 1

    def _plan_files(self, run_id: str) -> list[tuple[bytes, FileRecord]]:
        config, rng = self.config, self.rng
        roll = rng.random()
        count = 0 if roll < 0.1 else rng.randint(1, config.max_files) if roll < 0.95 else config.max_files * 4
        plan: list[tuple[bytes, FileRecord]] = []
        used: set[bytes] = set()
        for n in range(count):
            name = self._file_name(n, rng)
            while name in used or any(name.startswith(u + b"/") or u.startswith(name + b"/") for u in used):
                name = f"f{n}-{rng.randrange(1 << 30)}".encode()
            used.add(name)
            kind_roll = rng.random()
            if kind_roll < 0.02:
                target = rng.choice([b"/etc/hostname", b"../../outside-the-workspace", b"missing-target"])
                plan.append((name, FileRecord("link", 0, target)))
                continue
            if kind_roll < 0.03:
                plan.append((name, FileRecord("fifo", 0)))
                continue
            size = self._file_size(rng)
            if not self._big_done and config.budget_bytes >= 4 * config.max_file_bytes:
                size, self._big_done = config.max_file_bytes, True  # one artifact of the largest size early on
            if self.bytes_used + size > self._budget_now():
                size = min(size, 4096)
            self.bytes_used += size
            kind = "empty" if size == 0 else "sparse" if rng.random() < 0.5 and size > 4096 else "data"
            plan.append((name, FileRecord(kind, size)))
        return plan

    def _budget_now(self) -> int:
        """What the artifacts may take by now: the whole budget, or its share of the time so far (plus a tenth)."""
        budget, seconds = self.config.budget_bytes, self.config.budget_seconds
        if not seconds:
            return budget
        share = min(1.0, 0.1 + (time.monotonic() - self._started) / seconds)
        return int(budget * share)

    def _file_name(self, n: int, rng: Random) -> bytes:
        if not self.config.awkward_names or rng.random() < 0.5:
            return f"out/task-{n}.log".encode() if rng.random() < 0.5 else f"artifact-{n}.bin".encode()
        if rng.random() < 0.08:  # deep and long: about 1,000 bytes of path
            return b"/".join([("d" * 60 + f"-{level}").encode() for level in range(15)] + [f"deep-{n}".encode()])
        return rng.choice(self._names)

    def _file_size(self, rng: Random) -> int:
        cap = self.config.max_file_bytes
        roll = rng.random()
        if roll < 0.1:
            return 0
        if roll < 0.65:
            return rng.randint(1, min(cap, 16 << 10))
        if roll < 0.9:
            return rng.randint(1, min(cap, MIB))
        if roll < 0.98:
            return rng.randint(1, min(cap, 10 * MIB))
        return rng.randint(1, cap)

    def _write_file(self, run: _Run, name: bytes, record: FileRecord) -> None:
        run_dir = os.fsencode(self.workspace / "runs" / run.log.run_id)
        path = os.path.join(run_dir, name)
        parent = os.path.dirname(path)
        if parent != run_dir:
            os.makedirs(parent, exist_ok=True)
        if record.kind == "link":
            os.symlink(record.target, path)
        elif record.kind == "fifo":
            os.mkfifo(path)
        else:
            fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
            try:
                if record.kind == "sparse":
                    os.ftruncate(fd, record.size)
                    os.pwrite(fd, b"end", record.size - 3)
                else:
                    left = record.size
                    while left > 0:
                        left -= os.write(fd, PATTERN[: min(left, len(PATTERN))])
            finally:
                os.close(fd)
        run.log.files[name] = record
        self.counts["files"] += 1

    def _write_planned(self, run: _Run, upto: int) -> None:
        while run.planned and len(run.log.files) < upto:
            name, record = run.planned.pop(0)
            self._write_file(run, name, record)

    def _advance(self, run: _Run) -> None:
        rng = self.rng
        statements: list[tuple[str, tuple[object, ...]]] = []
        changes: list[_Change] = []
        open_tasks = [t for t in run.tasks if t.status not in TASK_TERMINAL or t.retry_pending]
        done_share = 1 - len(open_tasks) / len(run.tasks)
        if run.cancel_at is not None and done_share >= run.cancel_at:
            self._cancel(run)
            return
        per_tick = max(1, round(2 * len(run.tasks) * self.config.tick_seconds / self.config.task_seconds))
        for task in rng.sample(open_tasks, min(len(open_tasks), rng.randint(1, per_tick))):
            if task.status in ("PENDING", "QUEUED") or task.retry_pending:
                statements.append((START_TASK, (task.task_id,)))
                changes.append(_Change(task, status="RUNNING", attempts=task.attempts + 1, retry_pending=False))
            elif task.status == "RUNNING":
                roll = rng.random()
                if roll < run.fail_chance:
                    retry = task.attempts < 3 and rng.random() < 0.3
                    statements.append((FINISH_TASK, ("FAILED", "exit_code", f"attempt {task.attempts}", task.task_id)))
                    changes.append(_Change(task, status="FAILED", retry_pending=retry))
                elif roll < run.fail_chance + run.skip_chance:
                    statements.append((FINISH_TASK, ("SKIPPED", None, None, task.task_id)))
                    changes.append(_Change(task, status="SKIPPED"))
                else:
                    statements.append((FINISH_TASK, ("SUCCEEDED", None, None, task.task_id)))
                    changes.append(_Change(task, status="SUCCEEDED"))
        for change in changes:  # applied to a copy of the plan: undone if the commit fails
            change()
        finishing = all(t.status in TASK_TERMINAL and not t.retry_pending for t in run.tasks)
        workstream_updates = self._workstream_updates(run)
        statements += [(SET_WORKSTREAM, (status, run.workstream_ids[w])) for w, status in workstream_updates]
        executor_status = None
        if finishing and run.log.ends == "executor":
            counts = Counter(t.status for t in run.tasks)
            executor_status = final_status(counts) if rng.random() < 0.7 else rng.choice(sorted(RUN_TERMINAL))
            statements.append((FINISH_RUN, (executor_status, run.log.run_id)))
        elif finishing and run.log.ends == "cancel":  # every task ended before its cancel point: cancelled anyway
            executor_status = "CANCELLED"
            statements.append((FINISH_RUN, (executor_status, run.log.run_id)))
        planned_total = len(run.log.files) + len(run.planned)
        self._write_planned(run, planned_total if finishing else round(planned_total * done_share))
        try:
            committed = self._transaction(statements) if statements else None
        except sqlite3.OperationalError:
            for undo in reversed(changes):
                undo.undo()
            raise
        for w, _ in workstream_updates:
            run.workstream_done[w] = True
        if finishing and committed is not None:
            self._ended(run, committed, executor_status)

    def _workstream_updates(self, run: _Run) -> list[tuple[int, str]]:
        updates = []
        for w, done in enumerate(run.workstream_done):
            mine = [t for t in run.tasks if t.workstream == w]
            if not done and all(t.status in TASK_TERMINAL and not t.retry_pending for t in mine):
                updates.append((w, group_status([t.status for t in mine])))
        return updates

    def _ended(self, run: _Run, wall: float, executor_status: str | None) -> None:
        log = run.log
        log.first_end_wall = log.final_end_wall = wall
        log.first_end_tasks = {t.task_id: t.status for t in run.tasks}
        log.final_tasks = dict(log.first_end_tasks)
        log.first_end_rows = {t.task_id: (t.status, t.attempts) for t in run.tasks}
        log.final_rows = dict(log.first_end_rows)
        log.executor_status = executor_status
        if log.retry_delay is not None:
            run.phase = "awaiting_mark"
        else:
            run.phase = "done"
        self.counts["runs ended"] += 1

    def _cancel(self, run: _Run) -> None:
        run_id = run.log.run_id
        self._write_planned(run, len(run.log.files) + len(run.planned))
        wall = self._transaction([(CANCEL_TASKS, (run_id,)), (CANCEL_WORKSTREAMS, (run_id,)), (CANCEL_RUN, (run_id,))])
        for task in run.tasks:
            if task.status in ("PENDING", "QUEUED", "RUNNING"):
                task.status = "CANCELLED"
            task.retry_pending = False
        run.workstream_done = [True] * len(run.workstream_done)
        run.log.retry_delay = None
        self._ended(run, wall, "CANCELLED")

    def _check_marks(self) -> None:
        waiting = [run for run in self._runs.values() if run.phase == "awaiting_mark"]
        if not waiting:
            return
        connection = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=EXECUTOR_BUSY_SECONDS)
        try:
            marks = "?" + ",?" * (len(waiting) - 1)
            statuses = dict(
                connection.execute(
                    f"SELECT run_id, status FROM runs WHERE run_id IN ({marks})", [r.log.run_id for r in waiting]
                ).fetchall()
            )
        finally:
            connection.close()
        now = time.monotonic()
        for run in waiting:
            log = run.log
            if log.marked_wall is None and statuses.get(log.run_id) in RUN_TERMINAL:
                log.marked_wall = time.time()
                run.retry_due = now + (log.retry_delay or 0.0)
            if log.marked_wall is not None and now >= run.retry_due:
                self._retry(run)

    def _retry(self, run: _Run) -> None:
        """Reopen a run the monitor marked: one task back to RUNNING (and its workstream), in one transaction."""
        rng = self.rng
        failed = [t for t in run.tasks if t.status == "FAILED"]
        task = rng.choice(failed or run.tasks)
        ws_id = run.workstream_ids[task.workstream]
        wall = self._transaction([(START_TASK, (task.task_id,)), (SET_WORKSTREAM, ("RUNNING", ws_id))])
        task.status, task.attempts = "RUNNING", task.attempts + 1
        run.log.retry_wall, run.log.retry_task = wall, task.task_id
        run.phase = "retrying"
        run.retry_finish_due = time.monotonic() + rng.uniform(0.05, 1.5)
        self.counts["retries after the mark"] += 1

    def _finish_retry(self, run: _Run) -> None:
        rng = self.rng
        task = next(t for t in run.tasks if t.task_id == run.log.retry_task)
        outcome = "SUCCEEDED" if rng.random() < 0.6 else "FAILED"
        if rng.random() < 0.4:  # the retry leaves an artifact of its own
            self._write_file(run, f"retry-{task.task_id}.log".encode(), FileRecord("data", rng.randint(1, 4096)))
        ws = task.workstream
        statuses = [outcome if t is task else t.status for t in run.tasks if t.workstream == ws]
        error = ("exit_code", "retry failed") if outcome == "FAILED" else (None, None)
        wall = self._transaction(
            [
                (FINISH_TASK, (outcome, *error, task.task_id)),
                (SET_WORKSTREAM, (group_status(statuses), run.workstream_ids[ws])),
            ]
        )
        task.status = outcome
        run.log.final_end_wall = wall
        run.log.final_tasks = {t.task_id: t.status for t in run.tasks}
        run.log.final_rows = {t.task_id: (t.status, t.attempts) for t in run.tasks}
        run.phase = "done"


class _Change:
    """Set attributes of a task now; `undo()` puts the old values back (a commit that failed)."""

    def __init__(self, task: _Task, **values: Any) -> None:
        self.task = task
        self.values = values
        self.old = {key: getattr(task, key) for key in values}

    def __call__(self) -> None:
        for key, value in self.values.items():
            setattr(self.task, key, value)

    def undo(self) -> None:
        for key, value in self.old.items():
            setattr(self.task, key, value)


def walk_run_dir(run_dir: Path) -> dict[bytes, tuple[str, int | bytes]]:
    """What is in a run directory: relative raw path -> (file, size), (link, target) or (special, 0)."""
    found: dict[bytes, tuple[str, int | bytes]] = {}
    root = os.fsencode(run_dir)
    for directory, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(directory, d))]:
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, root)
            stat = os.lstat(path)
            if os.path.islink(path):
                found[relative] = ("link", os.readlink(path))
            elif os.path.isfile(path):
                found[relative] = ("file", stat.st_size)
            else:
                found[relative] = ("special", 0)
    return found


def expected_entry(record: FileRecord) -> tuple[str, int | bytes]:
    if record.kind == "link":
        return ("link", record.target)
    if record.kind == "fifo":
        return ("special", 0)
    return ("file", record.size)


def free_bytes(path: Path) -> int:
    usage = os.statvfs(path)
    return usage.f_bavail * usage.f_frsize


def fill(path: Path, size: int) -> int:
    """A file of `size` bytes really taking the space (fallocate, else written); returns what it got."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        try:
            os.posix_fallocate(fd, 0, max(1, size))
            return size
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.ENOSPC, errno.EINVAL):
                raise
        written = 0
        with contextlib.suppress(OSError):
            while written < size:
                written += os.write(fd, PATTERN[: min(size - written, len(PATTERN))])
        return written
    finally:
        os.close(fd)


@contextlib.contextmanager
def suppress_to(errors: list[str], what: str) -> Iterator[None]:
    """Record an exception in `errors` instead of raising (a fault thread must never die silently)."""
    try:
        yield
    except Exception as err:
        errors.append(f"{what}: {type(err).__name__}: {err}")
