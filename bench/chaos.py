"""Chaos runner: a random executor workload against a real daemon while faults are injected, then invariants.

Issue #13, deliver 2. Goal for a 10-minute run (the default): at least 300 runs ended, at least
80 faults injected, zero invariant violations.

What it does:

1. makes a scratch root (`--workdir`): `ws/` an `orchestrator init` workspace, `sandbox/` the
   daemon's private cwd, TMPDIR and HOME (all must stay empty), `control/` the daemon's stderr
   files. As root, a tmpfs of `--tmpfs-mb` is mounted on `ws/.archive` (the archive root), so
   that the archive disk can really fill up; elsewhere the "disk full" fault raises
   `archive.reserve_bytes` past the free space by a SIGHUP reload instead (the output says which).
2. starts `orchestrator daemon` (`--set events.sinks= --set dashboard.enabled=false`, the health
   checks every 1 s (database) and 2 s (storage) so that safe mode follows the faults, the
   reloadable keys in `ws/config/monitor.toml`) without CAP_DAC_OVERRIDE (`setpriv`), as the
   service runs, so that `chmod 0444` makes the database read-only for it while the executor
   (root) goes on writing;
3. runs the executor (`chaos_support.Workload`, plain SQL on its own thread): runs of 1 to 500
   tasks in 1 to 5 workstreams, artifacts from empty to 100 MB (sparse or written, `--budget-mb`
   in all) under awkward names (spaces, unicode, leading dashes, 255-byte names, deep paths,
   newlines, `%`, bytes that are not UTF-8), a few symbolic links and FIFOs, runs the executor
   ends itself (its own terminal status, or a cancel half-way) and runs reopened after the
   monitor's mark (a task back to RUNNING at once, soon, or seconds later; then terminal again);
4. meanwhile injects faults, each kind in turn in a shuffled order, at random gaps: `kill9` (then
   a restart), `sigstop` (SIGCONT after up to 8 s), `db_lock` (another process holds
   `BEGIN IMMEDIATE` for up to 10 s), `disk_full` (the archive tmpfs filled to below the reserve
   or to the last byte, emptied after up to 8 s), `log_rotate` (`monitor.jsonl` and sometimes
   `archival.jsonl` renamed to `.1` as logrotate does, older ones shifted), `sighup_good` (a
   changed valid `config/monitor.toml`), `sighup_bad` (a broken one: TOML syntax, unknown key,
   wrong type, bad value, a too-short secret token; the good file is put back after the answer),
   `db_readonly` (`chmod 0444` on the database for up to 8 s, then its files back). Signals to the daemon never
   overlap each other; the other kinds may overlap anything;
5. stops injecting, lets the executor finish every run (retries included), waits until the
   daemon is quiet (every ended run archived and reported, every reopened run announced) or
   150 s have passed, stops the daemon with SIGTERM and checks the invariants, printing a table:
   marked, archived and reported exactly once (an event repeated after a kill -9 with the same id
   is allowed), reopened runs announced once and archived after their new end, every bag valid
   for the `bagit` validator and `orchestrator verify`, consistent with itself (`Run-Status`
   against every task and workstream row of its snapshot) and with the database's final rows,
   holding every artifact, events in order (`RUN_COMPLETED` before `RUN_ARCHIVED` before
   `REPORT_GENERATED`), `seq` increasing, no torn line in `logs/*.jsonl*`, no staging leftovers,
   nothing written outside the workspace and the archive root, the daemon never dying by itself,
   every SIGHUP answered, no rejected secret echoed, one `archival_log` SUCCEEDED row per bag.

"Nothing written outside" is seen three ways: the sandbox stays empty, the scratch root, the
workspace's top level and `.state/` hold only what they should and every run directory holds
exactly what the executor wrote, and /proc/PID/fd (sampled every 0.2 s) never shows the daemon
holding a file outside the workspace open for writing. The `bagit` validator cannot read names
with `%`, CR or LF (RFC 8493 percent-encodes them; it does not decode `%25`) or ending in
whitespace (it strips manifest lines): a bag whose only complaints are about such names counts as
valid for it (said in the notes); `orchestrator verify` must accept every bag. With `--keep`, the
scratch root stays, with `control/faults.tsv` (each fault's kind, start and end) and
`control/runs.jsonl` (everything the executor did to each run) for a post-mortem.

Exit 0 when every invariant holds, 1 when one does not, 2 when the harness itself failed.

    .venv/bin/python bench/chaos.py                 # 10 minutes
    .venv/bin/python bench/chaos.py --quick         # 2 minutes, smaller budget
    .venv/bin/python bench/chaos.py --minutes 30 --seed 7 --keep
    .venv/bin/python bench/chaos.py --quick --no-tmpfs    # the "disk full" of a run that is not root
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import orjson
from chaos_support import (
    MIB,
    NO_DAC_OVERRIDE,
    PYTHON,
    RUN_TERMINAL,
    STATE_DB,
    TASK_TERMINAL,
    Daemon,
    DaemonError,
    LogLine,
    LogTail,
    RunLog,
    Workload,
    WorkloadConfig,
    clean_environment,
    epoch_of,
    expected_entry,
    fill,
    final_status,
    free_bytes,
    init_workspace,
    read_log_files,
    suppress_to,
    tail_of,
    walk_run_dir,
    writable_files,
)
from orchestrator_monitor.archive.names import listing_name as tag_listing_name
from orchestrator_monitor.archive.names import manifest_path

FAULT_KINDS = (
    "kill9",
    "sigstop",
    "db_lock",
    "disk_full",
    "log_rotate",
    "sighup_good",
    "sighup_bad",
    "db_readonly",
)
SIGNAL_KINDS = frozenset({"kill9", "sigstop", "sighup_good", "sighup_bad"})  # never two at once
GOAL_RUNS = 300
GOAL_FAULTS = 80
FILLER = ".chaos-filler"  # in the archive root: not a run id (they never start with '.')
ANSWER_SECONDS = 15.0  # the daemon's main loop looks at the reload flag every second
EXAMPLES = 4
DAEMON_SETTINGS = ("health.db_check_seconds=1", "health.storage_check_seconds=2")
WORKSPACE_ENTRIES = frozenset({".state", ".monitor", "runs", "logs", ".archive", "reports", "config"})
STATE_ENTRIES = frozenset(
    {"orchestration.db", "orchestration.db-wal", "orchestration.db-shm", "orchestration.db-journal"}
)
STOP_GOAL_SECONDS = 10.0

_LOCK_HOLDER = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None)
c.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
c.execute("COMMIT")
"""

_VERIFY_BATCH = """
import contextlib, io, sys
from orchestrator_monitor.cli.main import main
workspace = sys.argv[1]
for run_id in sys.stdin.read().split():
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["verify", "--workspace", workspace, "--run", run_id])
    first = (err.getvalue().strip() or out.getvalue().strip()).replace("\\n", " | ")[:300]
    print(run_id, code, first, sep="\\t", flush=True)
"""

# SIGHUP: the broken files, each refused with the running configuration kept
BAD_CONFIGS = {
    "toml syntax": "[archive\nquiet_seconds = 0.5\n",
    "unknown key": "[archive]\nquiet_secondz = 0.5\n",
    "unknown section": "[nonsense]\nvalue = 1\n",
    "wrong type": '[archive]\nquiet_seconds = "soon"\n',
    "bad value": "[archive]\nreserve_bytes = -5\n",
    "short secret": '[dashboard]\ntoken = "{secret}"\n',
}


@dataclass(frozen=True)
class ChaosConfig:
    seconds: float = 600.0
    seed: int = 1
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    fault_gap_seconds: float = 5.0  # mean gap between two faults' starts (exponential)
    max_hold_seconds: float = 10.0  # the longest a fault lasts (the database lock; the others up to 8 s)
    drain_seconds: float = 120.0  # for the executor to end its last runs after the injection stops
    quiet_timeout_seconds: float = 150.0  # for the daemon to archive and report every ended run
    tmpfs_bytes: int = 2048 * MIB
    use_tmpfs: bool = True  # False: disk_full raises archive.reserve_bytes instead (what happens when not root)
    reserve_bytes: int = 32 * MIB
    workdir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    keep: bool = False
    require_every_kind: bool = True  # inject past the end (up to 30 s) until each kind happened once
    progress_seconds: float = 60.0


@dataclass
class Invariant:
    name: str
    hint: str  # how to reproduce or where to look
    checked: int = 0
    violations: list[str] = field(default_factory=list)

    def check(self, ok: bool, example: str) -> None:
        self.checked += 1
        if not ok:
            self.violations.append(example)


@dataclass
class ChaosResult:
    faults: Counter[str]
    fault_notes: dict[str, Counter[str]]
    runs: list[tuple[str, str]]  # (what, how many), for the table
    invariants: list[Invariant]
    harness_errors: list[str]
    notes: list[str]
    runs_ended: int
    root: Path

    @property
    def violations(self) -> int:
        return sum(len(invariant.violations) for invariant in self.invariants)


# --- faults ---------------------------------------------------------------------------------------


class Faults:
    """The fault injector: `run(until)` on a thread of its own, each fault on a thread of its own."""

    def __init__(self, chaos: Chaos) -> None:
        self.chaos = chaos
        self.rng = random.Random(chaos.config.seed * 7919 + 1)
        self.counts: Counter[str] = Counter()
        self.notes: dict[str, Counter[str]] = defaultdict(Counter)
        self.signals = threading.Lock()  # the kinds that signal the daemon never overlap
        self.busy = {kind: threading.Lock() for kind in FAULT_KINDS}
        self.threads: list[threading.Thread] = []
        self.stop_event = threading.Event()
        self.sighups: list[tuple[str, bool, str]] = []  # (kind, answered as expected, detail)
        self.secrets: list[str] = []
        self._count_lock = threading.Lock()
        self._bad_order: list[str] = []
        self.intervals: list[tuple[str, float, float]] = []  # (kind, wall-clock start, end) of each fault injected

    def run(self, until: float) -> None:
        config = self.chaos.config
        order: list[str] = []
        hard_stop = until + (30.0 if config.require_every_kind else 0.0)
        while not self.stop_event.is_set():
            now = time.monotonic()
            missing = [kind for kind in FAULT_KINDS if not self.counts[kind] and not self.busy[kind].locked()]
            if now >= until and not (config.require_every_kind and missing and now < hard_stop):
                return
            gap = min(self.rng.expovariate(1 / config.fault_gap_seconds), 3 * config.fault_gap_seconds)
            if self.stop_event.wait(max(0.2, gap)):
                return
            if time.monotonic() >= until:
                order = [kind for kind in order if kind in missing] or missing
            if not order:
                order = list(FAULT_KINDS)
                self.rng.shuffle(order)
            kind = next((k for k in order if not self.busy[k].locked() and self._may_start(k)), None)
            if kind is None:
                continue
            order.remove(kind)
            seed = self.rng.randrange(1 << 30)
            thread = threading.Thread(target=self._run_one, args=(kind, seed), name=f"fault-{kind}", daemon=True)
            self.threads.append(thread)
            thread.start()

    def _may_start(self, kind: str) -> bool:
        return kind not in SIGNAL_KINDS or not self.signals.locked()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run_one(self, kind: str, seed: int) -> None:
        rng = random.Random(seed)
        if not self.busy[kind].acquire(blocking=False):
            return
        before, started = self.counts[kind], time.time()
        try:
            with suppress_to(self.chaos.errors, f"fault {kind}"):
                if kind in SIGNAL_KINDS:
                    with self.signals:
                        getattr(self, f"_{kind}")(rng)
                else:
                    getattr(self, f"_{kind}")(rng)
        finally:
            self.busy[kind].release()
            if self.counts[kind] > before:
                self.intervals.append((kind, started, time.time()))

    def near(self, start: float, end: float) -> str:
        """The faults under way between two wall-clock times, for an example's context."""
        found = [f"{kind} {stamp(s)}-{stamp(e)}" for kind, s, e in self.intervals if s <= end and e >= start]
        return ", ".join(found) or "none"

    def _count(self, kind: str, note: str | None = None) -> None:
        with self._count_lock:
            self.counts[kind] += 1
            if note:
                self.notes[kind][note] += 1

    def _hold(self, rng: random.Random, longest: float = 8.0) -> float:
        return rng.uniform(0.3, min(longest, self.chaos.config.max_hold_seconds))

    # -- the kinds --

    def _kill9(self, rng: random.Random) -> None:
        daemon = self.chaos.daemon
        daemon.kill()
        self._count("kill9")
        time.sleep(rng.uniform(0.0, 1.5))  # down for a moment: the executor goes on
        self.chaos.restart_daemon("after kill -9")

    def _sigstop(self, rng: random.Random) -> None:
        daemon = self.chaos.daemon
        if not daemon.send(signal.SIGSTOP):
            return
        self._count("sigstop")
        try:
            time.sleep(self._hold(rng))
        finally:
            daemon.send(signal.SIGCONT)

    def _db_lock(self, rng: random.Random) -> None:
        holder = subprocess.Popen(
            [PYTHON, "-c", _LOCK_HOLDER, str(self.chaos.db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None
            if holder.stdout.readline().strip() != "locked":
                raise RuntimeError("the lock holder did not get the lock")
            self._count("db_lock")
            time.sleep(self._hold(rng, 10.0))
        finally:
            holder.communicate("\n", timeout=30)

    def _db_readonly(self, rng: random.Random) -> None:
        db = self.chaos.db
        mode = db.stat().st_mode & 0o777
        db.chmod(0o444)
        self._count("db_readonly")
        try:
            time.sleep(self._hold(rng))
        finally:  # as an operator would (`chmod 664 orchestration.db*`): the executor, root here, may have
            # made a -wal or -shm during the spell, which SQLite creates with the database's mode (0444)
            for path in (db, *db.parent.glob(db.name + "-*")):
                path.chmod(mode)

    def _log_rotate(self, rng: random.Random) -> None:
        logs = self.chaos.ws / "logs"
        names = ["monitor.jsonl"] + (["archival.jsonl"] if rng.random() < 0.5 else [])
        for name in names:
            if not (logs / name).exists():
                continue
            numbers = sorted(
                (int(entry.rsplit(".", 1)[1]) for entry in os.listdir(logs) if entry.startswith(name + ".")),
                reverse=True,
            )
            for number in numbers:  # as logrotate does: .2 -> .3, .1 -> .2, then the file -> .1
                os.rename(logs / f"{name}.{number}", logs / f"{name}.{number + 1}")
            os.rename(logs / name, logs / f"{name}.1")
        self._count("log_rotate", "+archival.jsonl" if len(names) > 1 else "monitor.jsonl")

    def _disk_full(self, rng: random.Random) -> None:
        chaos = self.chaos
        if chaos.tmpfs:
            filler = chaos.archive_root / FILLER
            reserve = chaos.reserve_bytes
            leave = 0 if rng.random() < 0.4 else rng.randint(0, reserve // 2)
            size = free_bytes(chaos.archive_root) - leave
            if size <= 0:
                return
            try:
                fill(filler, size)
                self._count("disk_full", "to the last byte" if leave == 0 else "below the reserve")
                time.sleep(self._hold(rng))
            finally:
                filler.unlink(missing_ok=True)
            return
        with self.signals:  # no tmpfs: the reserve raised past the free space, by a reload
            free = free_bytes(chaos.archive_root)
            if not self._sighup(chaos.good_config(reserve_bytes=free + 1024 * MIB), "configuration reloaded"):
                return
            self._count("disk_full", "archive.reserve_bytes past the free space (SIGHUP)")
            try:
                time.sleep(self._hold(rng))
            finally:
                chaos.config_text = chaos.good_config()
                self._sighup(chaos.config_text, "configuration reloaded")

    def _sighup_good(self, rng: random.Random) -> None:
        config = self.chaos.good_config(
            quiet_seconds=rng.choice([0.0, 0.2, 0.5, 1.0]),
            settle_seconds=rng.choice([0.0, 0.0, 0.1, 0.3]),
            stall_after_seconds=rng.choice([600.0, 900.0, 1800.0]),
            restart_key=rng.random() < 0.3,
        )
        self.chaos.config_text = config
        answered = self._sighup(config, "configuration reloaded")
        self.sighups.append(("good", answered, config.replace("\n", " ")[:120]))
        self._count("sighup_good")

    def _sighup_bad(self, rng: random.Random) -> None:
        if not self._bad_order:  # every kind in turn; the secret first, so that a short run checks it too
            self._bad_order = sorted(BAD_CONFIGS)
            rng.shuffle(self._bad_order)
        if not self.counts["sighup_bad"] and "short secret" in self._bad_order:
            self._bad_order.remove("short secret")
            self._bad_order.insert(0, "short secret")
        kind = self._bad_order.pop(0)
        secret = f"chaos-{rng.randrange(10**6):06d}"  # 12 characters: a token must have at least 16
        text = BAD_CONFIGS[kind].format(secret=secret)
        if kind == "short secret":
            self.secrets.append(secret)
        try:
            answered = self._sighup(text, "configuration not reloaded")
        finally:
            self.chaos.write_config(self.chaos.config_text)  # the running configuration, back in the file
        self.sighups.append(("bad", answered, kind))
        self._count("sighup_bad", kind)

    def _sighup(self, text: str, answer: str) -> bool:
        """Write the configuration, SIGHUP, wait for the daemon's answer (a log record saying `answer`)."""
        chaos = self.chaos
        mark = chaos.tail.mark()
        chaos.write_config(text)
        if not chaos.daemon.send(signal.SIGHUP):
            return False

        def answered() -> bool:
            return any(
                line.get("type") == "log" and str(line.get("message", "")).startswith(answer)
                for line in chaos.tail.since(mark)
            )

        return chaos.tail.wait_for(answered, ANSWER_SECONDS, poll_seconds=0.1)


# --- the run ----------------------------------------------------------------------------------------


class Chaos:
    """One chaos run: the scratch root, the daemon, the executor, the faults; `run()` then `check()`."""

    def __init__(self, config: ChaosConfig, out: TextIO | None) -> None:
        self.config = config
        self.out = out
        self.errors: list[str] = []
        self.notes: list[str] = []
        self.root = Path(tempfile.mkdtemp(prefix="chaos-", dir=config.workdir)).absolute()
        self.ws = self.root / "ws"
        self.archive_root = self.ws / ".archive"
        self.db = self.ws / STATE_DB
        self.sandbox = self.root / "sandbox"
        self.control = self.root / "control"
        self.tmpfs = False
        self.reserve_bytes = config.reserve_bytes
        self.config_text = ""
        self.outside_writes: Counter[str] = Counter()
        self.unexpected_exits: list[str] = []
        self.stop_lifetime: tuple[int | None, float | None] = (None, None)
        self.quiet_reached = False
        self.drained = False
        self.tail = LogTail(self.ws / "logs")
        for name in ("cwd", "tmp", "home"):
            (self.sandbox / name).mkdir(parents=True)
        self.control.mkdir()
        prefix: tuple[str, ...] = ()
        if os.geteuid() == 0:
            if shutil.which("setpriv") and subprocess.run([*NO_DAC_OVERRIDE, "true"], check=False).returncode == 0:
                prefix = NO_DAC_OVERRIDE
                self.notes.append("daemon runs without CAP_DAC_OVERRIDE (setpriv): chmod 0444 makes the db read-only")
            else:
                self.notes.append("setpriv unavailable: the daemon runs as root and db_readonly cannot stop its writes")
        else:
            self.notes.append("not root: db_readonly is chmod 0444 for the daemon's own user")
        env = clean_environment(
            TMPDIR=str(self.sandbox / "tmp"), HOME=str(self.sandbox / "home"), PYTHONDONTWRITEBYTECODE="1"
        )
        self.daemon = Daemon(
            self.ws,
            self.tail,
            settings=DAEMON_SETTINGS,
            prefix=prefix,
            env=env,
            cwd=self.sandbox / "cwd",
            stderr_dir=self.control,
        )
        self.workload: Workload | None = None
        self.faults = Faults(self)
        self._stop_sampling = threading.Event()

    def say(self, text: str) -> None:
        if self.out is not None:
            print(text, file=self.out, flush=True)

    # -- configuration --

    def good_config(
        self,
        *,
        quiet_seconds: float = 0.2,
        settle_seconds: float = 0.0,
        stall_after_seconds: float = 900.0,
        reserve_bytes: int | None = None,
        restart_key: bool = False,
    ) -> str:
        text = (
            "# written by bench/chaos.py: the reloadable keys it varies\n"
            f"[archive]\nquiet_seconds = {quiet_seconds}\nreserve_bytes = {reserve_bytes or self.reserve_bytes}\n"
            f"[completion]\nsettle_seconds = {settle_seconds}\nstall_after_seconds = {stall_after_seconds}\n"
            "[health]\nmin_free_percent = 1.0\n"
        )
        if restart_key:
            text += "[events]\nfsync = 'batch'\n"  # takes effect at the next restart (kill -9), said in the log
        return text

    def write_config(self, text: str) -> None:
        path = self.ws / "config" / "monitor.toml"
        path.parent.mkdir(exist_ok=True)
        staged = path.with_name("monitor.toml.chaos-new")
        staged.write_text(text)
        os.replace(staged, path)

    def restart_daemon(self, why: str) -> None:
        for attempt in range(3):
            try:
                self.daemon.start()
                return
            except DaemonError as err:  # the daemon's own failure: an invariant's, not the harness's
                self.unexpected_exits.append(f"start {why} failed (attempt {attempt + 1}): {err}")
                time.sleep(1.0)
        raise DaemonError(f"the daemon would not start {why}")

    # -- setting up --

    def prepare(self) -> None:
        init_workspace(self.ws)
        self.config_text = self.good_config()
        self.write_config(self.config_text)
        if self.config.use_tmpfs and os.geteuid() == 0 and shutil.which("mount"):
            size = self.config.tmpfs_bytes
            mounted = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(self.archive_root)],
                capture_output=True,
                text=True,
                check=False,
            )
            self.tmpfs = mounted.returncode == 0
            if not self.tmpfs:
                self.notes.append(f"mount -t tmpfs failed ({mounted.stderr.strip()})")
        if self.tmpfs:
            self.notes.append(
                f"archive root is a tmpfs of {self.config.tmpfs_bytes // MIB} MiB: disk_full fills it with a file"
            )
        else:
            self.notes.append("no tmpfs: disk_full raises archive.reserve_bytes past the free space (SIGHUP)")

    def sample_writes(self) -> None:
        """Every 0.2 s: files the daemon holds open for writing outside the workspace (a write out of bounds)."""
        allowed = (str(self.ws) + "/", "/dev/null", "/dev/pts/")
        while not self._stop_sampling.wait(0.2):
            pid = self.daemon.pid
            if pid is None:
                continue
            for path in writable_files(pid):
                if not path.startswith(allowed) and path != str(self.ws):
                    self.outside_writes[path] += 1

    # -- the run --

    def run(self) -> None:
        config = self.config
        rng = random.Random(config.seed)
        self.prepare()
        self.daemon.start()
        self.workload = workload = Workload(self.ws, rng, config.workload, prefix=f"c{config.seed}")
        self.notes.append(workload.names_note)
        sampler = threading.Thread(target=self.sample_writes, name="fd-sampler", daemon=True)
        sampler.start()
        workload.start()
        started = time.monotonic()
        until = started + config.seconds
        injector = threading.Thread(target=self.faults.run, args=(until,), name="faults", daemon=True)
        injector.start()
        next_progress = started + config.progress_seconds
        while injector.is_alive():
            injector.join(0.5)
            self.watch_daemon()
            if time.monotonic() >= next_progress:
                next_progress += config.progress_seconds
                self.say(
                    f"   [{time.monotonic() - started:5.0f} s] runs ended {workload.counts['runs ended']}, "
                    f"faults {sum(self.faults.counts.values())}, daemon lifetimes {len(self.daemon.lifetimes)}, "
                    f"artifacts {workload.bytes_used / MIB:.0f} MiB"
                )
        self.faults.join(60.0)
        self.watch_daemon()
        if self.daemon.pid is None:
            self.restart_daemon("for the end")
        self.say(f"   injection over after {time.monotonic() - started:.0f} s; the executor ends its runs ...")
        workload.stop_creating()
        self.drained = workload.wait_drained(config.drain_seconds)
        if not self.drained:
            workload.abandon_retries("the drain ran out of time waiting for the monitor's mark")
            self.drained = workload.wait_drained(30.0)
        self.say(f"   executor done ({workload.counts['runs ended']} runs ended); waiting for the daemon ...")
        waited = time.monotonic()
        self.quiet_reached = self.tail.wait_for(self.quiet, config.quiet_timeout_seconds, poll_seconds=0.25)
        self.say(
            f"   daemon {'quiet' if self.quiet_reached else 'NOT quiet'} after {time.monotonic() - waited:.0f} s; "
            "stopping it (SIGTERM)"
        )
        self.watch_daemon()
        lifetime = self.daemon.stop()
        if lifetime is not None:
            self.stop_lifetime = (lifetime.code, lifetime.stop_seconds)
        workload.stop()
        self._stop_sampling.set()
        sampler.join(5)
        self.errors.extend(workload.errors)

    def watch_daemon(self) -> None:
        """A daemon that ended without us ending it is recorded and started again."""
        with self.faults.signals:
            lifetime = self.daemon.died()
            if lifetime is None:
                return
            self.unexpected_exits.append(
                f"pid {lifetime.pid} (lifetime {lifetime.number}) exited {lifetime.code}: {tail_of(lifetime.stderr)}"
            )
            self.restart_daemon("after it died")

    def quiet(self) -> bool:
        """Every ended run archived and reported, every run reopened after its mark announced as such."""
        assert self.workload is not None
        tail = self.tail
        for log in list(self.workload.records.values()):
            if not log.ended:
                continue
            if not tail.count("RUN_ARCHIVED", log.run_id) or not tail.count("REPORT_GENERATED", log.run_id):
                return False
            if log.retry_wall is not None and not tail.count("RUN_REOPENED", log.run_id):
                return False
        return True

    def save_record(self) -> None:
        """control/faults.tsv (each fault's kind, start, end) and control/runs.jsonl (what the executor did)."""
        lines = [
            f"{kind}\t{stamp(start)}\t{stamp(end)}"
            for kind, start, end in sorted(self.faults.intervals, key=lambda i: i[1])
        ]
        (self.control / "faults.tsv").write_text("kind\tstart\tend\n" + "\n".join(lines) + "\n")
        if self.workload is None:
            return
        with (self.control / "runs.jsonl").open("wb") as handle:
            for log in self.workload.records.values():
                record = {k: v for k, v in vars(log).items() if k != "files"}
                record["files"] = {name.decode("utf-8", "backslashreplace"): vars(f) for name, f in log.files.items()}
                for key in ("created_wall", "first_end_wall", "marked_wall", "retry_wall", "final_end_wall"):
                    record[key + "_utc"] = stamp(record[key]) if record[key] else None
                handle.write(orjson.dumps(record, default=lambda v: v.decode("utf-8", "backslashreplace")) + b"\n")

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.faults.stop_event.set()
        with contextlib.suppress(Exception):
            if self.daemon.pid is not None:
                self.daemon.send(signal.SIGCONT)
                self.daemon.kill()
        with contextlib.suppress(OSError):
            self.db.chmod(0o644)
        with contextlib.suppress(OSError):
            (self.archive_root / FILLER).unlink(missing_ok=True)
        if self.config.keep:
            mounted = f"; the archive is a tmpfs: umount {self.archive_root} when done" if self.tmpfs else ""
            self.say(f"   kept {self.root}{mounted}")
            return
        if self.tmpfs:
            done = subprocess.run(["umount", str(self.archive_root)], capture_output=True, check=False)
            if done.returncode:
                subprocess.run(["umount", "-l", str(self.archive_root)], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


# --- the evidence and the invariants --------------------------------------------------------------


@dataclass
class Bag:
    run_id: str
    info: dict[str, str]
    run_rows: list[tuple[str, str]]  # (run_id, status)
    tasks: dict[str, str]
    rows: dict[str, tuple[str, int]]  # task -> (status, attempts)
    workstreams: dict[str, str]
    manifest: set[str]
    links: set[str]
    specials: list[str]
    event_problems: list[str]
    problem: str | None = None  # could not be read at all


@dataclass
class Positioned:
    index: int  # position in the whole log, oldest file first
    lifetime: int
    line: dict[str, Any]


def read_bag(path: Path) -> Bag:
    run_id = path.name
    info: dict[str, str] = {}
    try:
        for raw in (path / "bag-info.txt").read_text(encoding="utf-8").splitlines():
            key, _, value = raw.partition(":")
            info[key.strip()] = value.strip()
        uri = f"file:{quote(str(path / 'data/state/run.sqlite3'))}?mode=ro&immutable=1"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as snapshot:
            runs = [(str(r), str(s)) for r, s in snapshot.execute("SELECT run_id, status FROM runs")]
            rows = {t: (s, a) for t, s, a in snapshot.execute("SELECT task_id, status, attempts FROM tasks")}
            tasks = {t: s for t, (s, _) in rows.items()}
            workstreams = dict(snapshot.execute("SELECT workstream_id, status FROM workstreams").fetchall())
        manifest = {
            line.split("  ", 1)[1]
            for line in (path / "manifest-sha256.txt").read_text(encoding="utf-8").splitlines()
            if "  " in line
        }
        links = {line.split("\t")[0] for line in (path / "links.txt").read_text(encoding="utf-8").splitlines()}
        specials = (path / "special-files.txt").read_text(encoding="utf-8").splitlines()
    except (OSError, sqlite3.Error, UnicodeDecodeError) as err:
        return Bag(run_id, info, [], {}, {}, {}, set(), set(), [], [], f"unreadable: {err}")
    problems = []
    for number, raw_line in enumerate((path / "data/logs/events.jsonl").read_bytes().splitlines(), 1):
        try:
            event = orjson.loads(raw_line)
        except ValueError:
            problems.append(f"events.jsonl line {number} is not JSON")
            continue
        if event.get("run_id") != run_id:
            problems.append(f"events.jsonl line {number} is of run {event.get('run_id')!r}")
    return Bag(run_id, info, runs, tasks, rows, workstreams, manifest, links, specials, problems)


def manifest_name(raw: bytes) -> str:
    """How a run directory's file appears in the manifest (RFC 8493: `%`, CR and LF percent-encoded)."""
    return manifest_path("data/run/" + raw.decode("utf-8"))


def listing_name(raw: bytes) -> str:
    """How a raw name appears in links.txt and special-files.txt (`%`, tab, CR, LF, undecodable bytes as %XX)."""
    return "data/run/" + tag_listing_name(raw)


def bagit_problem(path: Path) -> tuple[str | None, bool]:
    """The `bagit` validator's verdict: (problem or None, whether the problem is only its known mishandling
    of names: with `%`, CR or LF (RFC 8493 percent-encodes them, it does not decode `%25`) or ending in
    whitespace (it strips manifest lines))."""
    import bagit

    logging.getLogger("bagit").setLevel(logging.ERROR)
    try:
        bagit.Bag(str(path)).validate(processes=1)
    except bagit.BagValidationError as err:
        paths = [str(getattr(detail, "path", "")) for detail in err.details]
        trimmed = {p.rstrip() for p in paths if p != p.rstrip()}
        limited = bool(paths) and all(any(c in p for c in "%\r\n") or p != p.rstrip() or p in trimmed for p in paths)
        return f"{err.message}: " + "; ".join(str(d) for d in err.details[:3]), limited
    except bagit.BagError as err:
        return f"{type(err).__name__}: {err}", False
    return None, False


def verify_all(workspace: Path, run_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
    """`orchestrator verify --run ID` for each run, in one process (the command's `main`, called per run)."""
    if not run_ids:
        return {}
    done = subprocess.run(
        [PYTHON, "-c", _VERIFY_BATCH, str(workspace)],
        input="\n".join(run_ids),
        capture_output=True,
        text=True,
        timeout=1800,
        env=clean_environment(),
        check=False,
    )
    results = {}
    for line in done.stdout.splitlines():
        run_id, code, detail = [*line.split("\t", 2), "", ""][:3]
        results[run_id] = (int(code), detail)
    for run_id in run_ids:
        results.setdefault(run_id, (-1, f"no answer from the verify batch: {done.stderr.strip()[-300:]}"))
    return results


def lifetimes_of(lines: Sequence[LogLine], pids: dict[int, int]) -> list[Positioned]:
    """Every parsed line with its position and the daemon lifetime it belongs to (from MONITOR_STARTED's pid)."""
    positioned = []
    lifetime = 0
    for index, line in enumerate(lines):
        data = line.data
        if data is None:
            continue
        if data.get("type") == "MONITOR_STARTED":
            lifetime = pids.get(int(data.get("data", {}).get("pid", -1)), lifetime)
        positioned.append(Positioned(index, lifetime, data))
    return positioned


def repeats_allowed(lifetimes: list[int], killed: set[int]) -> bool:
    """Lines of one once-per-run event: repeats are allowed only after a kill -9 (same id, a later lifetime)."""
    return all(b > a and any(k in killed for k in range(a, b)) for a, b in itertools.pairwise(lifetimes))


def check_invariants(chaos: Chaos) -> list[Invariant]:
    assert chaos.workload is not None
    ws, records = chaos.ws, chaos.workload.records
    ended = {run_id: log for run_id, log in records.items() if log.ended}
    lines = read_log_files(ws / "logs", "monitor.jsonl")
    pids = {lifetime.pid: lifetime.number for lifetime in chaos.daemon.lifetimes}
    killed = {lifetime.number for lifetime in chaos.daemon.lifetimes if lifetime.ended in ("killed", "died")}
    positioned = lifetimes_of(lines, pids)
    by_run: dict[tuple[str, str], list[Positioned]] = defaultdict(list)
    for item in positioned:
        run_id = item.line.get("run_id")
        if run_id:
            by_run[(item.line.get("type", ""), run_id)].append(item)
    bags = {entry.name: read_bag(entry) for entry in chaos.archive_root.iterdir() if entry.name in records}
    final = read_final_state(chaos.db)

    invariants: list[Invariant] = []

    def invariant(name: str, hint: str) -> Invariant:
        invariants.append(Invariant(name, hint))
        return invariants[-1]

    seed = chaos.config.seed
    again = f"bench/chaos.py --seed {seed} --keep, then look at the run in logs/monitor.jsonl and .archive/"

    # 1-3: marked, archived, reported exactly once
    marked = invariant("every ended run marked once (RUN_COMPLETED, right status/marked_by)", again)
    archived = invariant("every ended run archived once (RUN_ARCHIVED, one bag)", again)
    reported = invariant("every ended run reported once (REPORT_GENERATED, 3 files)", again)
    for run_id, log in sorted(ended.items()):
        events = by_run.get(("RUN_COMPLETED", run_id), [])
        expected_by = "monitor" if log.ends == "monitor" else "executor"
        expected_status = (
            log.executor_status if expected_by == "executor" else final_status(Counter(log.first_end_tasks.values()))
        )
        problem = ""
        if not events:
            problem = "no RUN_COMPLETED"
        elif not repeats_allowed([e.lifetime for e in events], killed):
            problem = f"{len(events)} RUN_COMPLETED in lifetimes {[e.lifetime for e in events]}"
        else:
            data = events[0].line.get("data", {})
            if data.get("marked_by") != expected_by or data.get("status") != expected_status:
                problem = (
                    f"RUN_COMPLETED says {data.get('status')} by {data.get('marked_by')}, the executor expects "
                    f"{expected_status} by {expected_by}"
                )
        if not problem and final["runs"].get(run_id) not in RUN_TERMINAL:
            problem = f"the database still says {final['runs'].get(run_id)}"
        marked.check(not problem, f"{run_id}: {problem}")
        events = by_run.get(("RUN_ARCHIVED", run_id), [])
        problem = ""
        if not events:
            problem = "no RUN_ARCHIVED"
        elif not repeats_allowed([e.lifetime for e in events], killed):
            problem = f"{len(events)} RUN_ARCHIVED in lifetimes {[e.lifetime for e in events]}"
        elif run_id not in bags:
            problem = "RUN_ARCHIVED but no bag"
        archived.check(not problem, f"{run_id}: {problem}")
        events = by_run.get(("REPORT_GENERATED", run_id), [])
        files = [ws / "reports" / f"{run_id}{suffix}" for suffix in ("_summary.json", "_metrics.json", ".html")]
        problem = ""
        if not events:
            problem = "no REPORT_GENERATED"
        elif not repeats_allowed([e.lifetime for e in events], killed):
            problem = f"{len(events)} REPORT_GENERATED in lifetimes {[e.lifetime for e in events]}"
        elif not all(path.exists() for path in files):
            problem = "a report file is missing"
        reported.check(not problem, f"{run_id}: {problem}")
    for type_, run_id in by_run:
        if type_ == "RUN_COMPLETED" and run_id not in ended:
            marked.check(False, f"{run_id}: RUN_COMPLETED for a run the executor has not ended")

    # 4: reopenings
    reopened = invariant(
        "runs reopened after the mark: one RUN_REOPENED each, none for others",
        "a task set back to RUNNING after the mark: see the run's RUN_REOPENED (detect/completions.py)",
    )
    for run_id, log in sorted(ended.items()):
        events = by_run.get(("RUN_REOPENED", run_id), [])
        lifetimes = [e.lifetime for e in events]
        if log.retry_wall is None:
            reopened.check(not events, f"{run_id}: RUN_REOPENED but the executor never reopened it")
        elif not events:
            end = log.final_end_wall or log.retry_wall
            kills = [stamp(s) for kind, s, _ in chaos.faults.intervals if kind == "kill9" and 0 < s - end < 90]
            reopened.check(
                False,
                f"{run_id}: task {log.retry_task} RUNNING at {stamp(log.retry_wall)}, terminal again at {stamp(end)}, "
                f"no RUN_REOPENED; faults meanwhile: {chaos.faults.near(log.retry_wall - 0.5, end + 0.5)}; "
                f"kill -9 within 90 s after: {', '.join(kills) or 'none'}",
            )
        else:
            reopened.check(repeats_allowed(lifetimes, killed), f"{run_id}: {len(events)} RUN_REOPENED")

    # 5-8: bags
    valid = invariant("every bag valid for the bagit validator", "python -c 'import bagit; bagit.Bag(P).validate()'")
    verified = invariant("every bag passes orchestrator verify (exit 0)", "orchestrator verify --run ID --workspace WS")
    coherent = invariant(
        "every bag consistent with itself (Run-Status vs its snapshot rows)",
        "bag-info.txt Run-Status against data/state/run.sqlite3 (archive/archiver.py contradiction())",
    )
    agrees = invariant(
        "every bag agrees with the executor's rows (its final ones if reopened before archival)",
        "compare data/state/run.sqlite3 with the state database; a fast retry after the mark (issue #13 item 1)",
    )
    holds = invariant("every bag holds every artifact (names, sizes, links, FIFOs)", again)
    limited = 0
    verdicts = verify_all(ws, sorted(bags))
    for run_id, bag in sorted(bags.items()):
        path = chaos.archive_root / run_id
        bagit_error, only_names = bagit_problem(path)
        if bagit_error and only_names:
            limited += 1
        valid.check(bagit_error is None or only_names, f"{run_id}: {bagit_error}")
        verify_code, detail = verdicts[run_id]
        verified.check(verify_code == 0, f"{run_id}: exit {verify_code}: {detail}")
        log = records[run_id]
        coherent.check(*bag_coherence(bag, log))
        agrees.check(*bag_agreement(bag, log, final, by_run))
        holds.check(*bag_holdings(bag, log, path))
    if limited:
        chaos.notes.append(
            f"{limited} bags have names the bagit validator cannot read (with %, CR or LF, which RFC 8493 "
            "percent-encodes and it does not decode; or ending in whitespace, which it strips): counted valid "
            "when that is its only complaint; orchestrator verify checks them"
        )

    # 9: order
    ordered = invariant("every RUN_COMPLETED followed by RUN_ARCHIVED, then REPORT_GENERATED", again)
    for run_id in sorted(ended):
        completed = by_run.get(("RUN_COMPLETED", run_id))
        arch = by_run.get(("RUN_ARCHIVED", run_id))
        rep = by_run.get(("REPORT_GENERATED", run_id))
        if not completed:
            continue
        archived_at = arch[-1].index if arch else None
        reported_at = rep[-1].index if rep else None
        ok = archived_at is not None and reported_at is not None and completed[0].index < archived_at < reported_at
        ordered.check(
            ok, f"{run_id}: completed at line {completed[0].index}, archived {archived_at}, reported {reported_at}"
        )

    # 10-11: seq
    within = invariant("seq strictly increasing within each daemon lifetime", "logs/monitor.jsonl* in file order")
    across = invariant("seq strictly increasing across lifetimes (README: across restarts)", "MONITOR_STARTED lines")
    previous: dict[int, int] = {}
    last_seq, last_lifetime = 0, -1
    for item in positioned:
        seq = item.line.get("seq")
        if not isinstance(seq, int):
            within.check(False, f"line {item.index}: no integer seq")
            continue
        before = previous.get(item.lifetime)
        within.check(before is None or seq > before, f"lifetime {item.lifetime}: seq {seq} after {before}")
        previous[item.lifetime] = seq
        if item.lifetime != last_lifetime:
            across.check(seq > last_seq, f"lifetime {item.lifetime} starts at seq {seq} after {last_seq}")
            last_lifetime = item.lifetime
        last_seq = max(last_seq, seq)

    # 12: torn lines
    torn = invariant("no torn line in logs/*.jsonl*", "events/sinks/jsonl.py")
    for name in sorted({entry.split(".jsonl")[0] for entry in os.listdir(ws / "logs") if ".jsonl" in entry}):
        for line in read_log_files(ws / "logs", f"{name}.jsonl"):
            torn.check(
                line.data is not None and line.ended,
                f"{line.path.name}:{line.number}: {line.raw[:100]!r}{'' if line.ended else ' (no newline)'}",
            )

    # 13: the archive root
    staging = invariant("no staging leftovers; only bags of ended runs in the archive root", "archive/staging.py")
    for entry in sorted(os.listdir(chaos.archive_root)):
        staging.check(entry in ended and (chaos.archive_root / entry).is_dir(), f"{entry} in the archive root")
    for entry in sorted(set(bags) - set(ended)):
        staging.check(False, f"bag of {entry}, which has not ended")

    # 14: nothing outside
    outside = invariant(
        "nothing written outside the workspace and the archive root",
        "sandbox/ (cwd, TMPDIR, HOME), the scratch root, run directories, /proc/PID/fd opened for writing",
    )
    check_outside(chaos, outside)

    # 15-18: the daemon itself
    alive = invariant("the daemon never died by itself; no traceback; SIGTERM stop within 10 s", "control/*.err")
    for exit_line in chaos.unexpected_exits:
        alive.check(False, exit_line)
    for lifetime in chaos.daemon.lifetimes:
        text = lifetime.stderr.read_text(errors="replace") if lifetime.stderr.exists() else ""
        alive.check("Traceback" not in text, f"lifetime {lifetime.number}: traceback: {tail_of(lifetime.stderr)}")
    stop_code, seconds = chaos.stop_lifetime
    alive.check(
        stop_code == 0 and seconds is not None and seconds < STOP_GOAL_SECONDS,
        f"final SIGTERM: exit {stop_code} after {seconds if seconds is None else round(seconds, 1)} s",
    )
    answered = invariant("every SIGHUP answered (good reloaded, bad refused and the daemon kept)", "service/daemon.py")
    for kind, ok, detail in chaos.faults.sighups:
        answered.check(ok, f"{kind} configuration ({detail}) got no answer in {ANSWER_SECONDS:.0f} s")
    secrets = invariant("no rejected secret in the logs or on stderr", "config.py hide_secrets")
    texts = [line.raw.decode(errors="replace") for line in lines]
    texts += [lt.stderr.read_text(errors="replace") for lt in chaos.daemon.lifetimes if lt.stderr.exists()]
    for secret in chaos.faults.secrets:
        found = [t for t in texts if secret in t]
        secrets.check(not found, f"token {secret!r} appears: {found[0][:160] if found else ''}")
    bookkeeping = invariant("archival_log: one SUCCEEDED row per bag", "state/archival_log.py (the outbox)")
    for run_id in sorted(bags):
        rows = final["archival_succeeded"].get(run_id, 0)
        bookkeeping.check(rows == 1, f"{run_id}: {rows} SUCCEEDED rows")
    return invariants


def stamp(wall: float | None) -> str:
    if wall is None:
        return "-"
    return time.strftime("%H:%M:%S", time.gmtime(wall)) + f".{int(wall * 1000) % 1000:03d}Z"


def read_final_state(db: Path) -> dict[str, dict[str, Any]]:
    uri = f"file:{quote(str(db))}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=60)) as connection:
        runs = dict(connection.execute("SELECT run_id, status FROM runs").fetchall())
        tasks: dict[str, dict[str, str]] = defaultdict(dict)
        for run_id, task_id, status in connection.execute("SELECT run_id, task_id, status FROM tasks"):
            tasks[run_id][task_id] = status
        succeeded = Counter(
            run_id for (run_id,) in connection.execute("SELECT run_id FROM archival_log WHERE status = 'SUCCEEDED'")
        )
    return {"runs": runs, "tasks": tasks, "archival_succeeded": succeeded}


def bag_coherence(bag: Bag, log: RunLog) -> tuple[bool, str]:
    """The bag against itself: its Run-Status, its run row, every task and workstream row terminal and agreeing."""
    run_id = bag.run_id
    if bag.problem:
        return False, f"{run_id}: {bag.problem}"
    status = bag.info.get("Run-Status")
    counts = Counter(bag.tasks.values())
    problems = []
    if bag.info.get("Run-Id") != run_id:
        problems.append(f"Run-Id {bag.info.get('Run-Id')}")
    if [row[1] for row in bag.run_rows] != [status]:
        problems.append(f"snapshot runs rows {bag.run_rows}")
    open_tasks = {t: s for t, s in bag.tasks.items() if s not in TASK_TERMINAL}
    open_ws = {w: s for w, s in bag.workstreams.items() if s not in RUN_TERMINAL}
    if open_tasks:
        problems.append(f"open tasks in the snapshot: {sorted(open_tasks.items())[:3]}")
    if open_ws:
        problems.append(f"open workstreams in the snapshot: {sorted(open_ws.items())[:3]}")
    if not bag.tasks:
        problems.append("no tasks in the snapshot")
    elif log.ends == "monitor" and status != final_status(counts):
        problems.append(f"Run-Status {status} but the snapshot's tasks say {final_status(counts)} ({dict(counts)})")
    problems += bag.event_problems[:2]
    return not problems, f"{run_id}: " + "; ".join(problems)


def bag_agreement(
    bag: Bag, log: RunLog, final: dict[str, dict[str, Any]], by_run: dict[tuple[str, str], list[Positioned]]
) -> tuple[bool, str]:
    """The bag's task rows (status, attempts) are the executor's at an end of the run; the final ones when the
    retry that reopened it was committed before its archival started (ARCHIVE_STARTED): archival must then see
    the change and wait for the new end. Then its Run-Status is also the database's final status."""
    run_id = bag.run_id
    if bag.problem:
        return False, f"{run_id}: {bag.problem}"
    if bag.rows not in (log.first_end_rows, log.final_rows):
        changed = {t: (r, log.final_rows.get(t)) for t, r in bag.rows.items() if log.final_rows.get(t) != r}
        return False, f"{run_id}: snapshot rows match no end of the run (bag, executor): {sorted(changed.items())[:3]}"
    started = by_run.get(("ARCHIVE_STARTED", run_id), [])
    archived = by_run.get(("RUN_ARCHIVED", run_id), [])
    if not archived or log.retry_wall is None:
        return True, ""
    last_start = [s for s in started if s.index < archived[0].index]
    start_wall = epoch_of(last_start[-1].line["time"]) if last_start else None
    if start_wall is not None and log.retry_wall < start_wall:
        if bag.rows != log.final_rows:
            return False, (
                f"{run_id}: reopened at {stamp(log.retry_wall)} (task {log.retry_task}), archival started "
                f"{stamp(start_wall)}, yet the bag has the rows of its first end (it ended again at "
                f"{stamp(log.final_end_wall)})"
            )
        db_status = final["runs"].get(run_id)
        if bag.info.get("Run-Status") != db_status:
            return False, f"{run_id}: bag says {bag.info.get('Run-Status')}, the database {db_status}"
    return True, ""


def bag_holdings(bag: Bag, log: RunLog, path: Path) -> tuple[bool, str]:
    """Every artifact the executor wrote before the run's first end is in the bag, under its name, at its size."""
    run_id = bag.run_id
    if bag.problem:
        return False, f"{run_id}: {bag.problem}"
    missing = []
    specials = {line.split("\t")[0] for line in bag.specials}
    for name, record in log.files.items():
        if name.startswith(b"retry-"):
            continue  # written by a retry, maybe after the bag was published
        shown = listing_name(name)
        if record.kind == "link":
            if shown not in bag.links:
                missing.append(f"link {shown!r}")
        elif record.kind == "fifo":
            if shown not in specials:
                missing.append(f"FIFO {shown!r}")
        else:
            try:
                text = name.decode("utf-8")
            except UnicodeDecodeError:
                if shown not in specials:
                    missing.append(f"undecodable {shown!r}")
                continue
            if manifest_name(name) not in bag.manifest:
                missing.append(f"{text!r} not in the manifest")
            elif (path / "data" / "run" / text).stat().st_size != record.size:
                missing.append(f"{text!r} has another size")
    return not missing, f"{run_id}: " + "; ".join(missing[:3])


def check_outside(chaos: Chaos, outside: Invariant) -> None:
    assert chaos.workload is not None
    for name in ("cwd", "tmp", "home"):
        entries = os.listdir(chaos.sandbox / name)
        outside.check(not entries, f"sandbox/{name} (the daemon's {name}) holds {entries[:3]}")
    root_entries = set(os.listdir(chaos.root))
    outside.check(root_entries == {"ws", "sandbox", "control"}, f"scratch root holds {sorted(root_entries)}")
    extra = sorted(set(os.listdir(chaos.ws)) - WORKSPACE_ENTRIES)
    outside.check(not extra, f"workspace top level holds {extra}")
    extra = sorted(set(os.listdir(chaos.ws / ".state")) - STATE_ENTRIES)
    outside.check(not extra, f".state holds {extra}")
    runs_dir = chaos.ws / "runs"
    extra = sorted(set(os.listdir(runs_dir)) - set(chaos.workload.records))
    outside.check(not extra, f"runs/ holds {extra[:3]}")
    for run_id, log in sorted(chaos.workload.records.items()):
        found = walk_run_dir(runs_dir / run_id)
        expected = {name: expected_entry(record) for name, record in log.files.items()}
        if found != expected:
            added = sorted(set(found) - set(expected))[:2]
            changed = sorted(n for n in set(found) & set(expected) if found[n] != expected[n])[:2]
            gone = sorted(set(expected) - set(found))[:2]
            outside.check(False, f"runs/{run_id} changed: added {added}, changed {changed}, gone {gone}")
        else:
            outside.check(True, "")
    for path, samples in sorted(chaos.outside_writes.items()):
        outside.check(False, f"the daemon held {path} open for writing ({samples} samples)")


# --- the report -------------------------------------------------------------------------------------


def run_chaos(config: ChaosConfig, out: TextIO | None = sys.stdout) -> ChaosResult:
    """One chaos run end to end; the scratch root goes unless `config.keep`."""
    chaos = Chaos(config, out)
    try:
        chaos.run()
        chaos.save_record()
        chaos.say("   checking the invariants ...")
        invariants = check_invariants(chaos)
        runs = summarize_runs(chaos)
    finally:
        chaos.cleanup()
    assert chaos.workload is not None
    return ChaosResult(
        chaos.faults.counts,
        chaos.faults.notes,
        runs,
        invariants,
        chaos.errors,
        chaos.notes,
        chaos.workload.counts["runs ended"],
        chaos.root,
    )


def summarize_runs(chaos: Chaos) -> list[tuple[str, str]]:
    assert chaos.workload is not None
    workload, tail = chaos.workload, chaos.tail
    tail.poll()
    records = list(workload.records.values())
    ended = [log for log in records if log.ended]
    ends = Counter(log.ends for log in ended)
    events: dict[str, Counter[str]] = defaultdict(Counter)
    for line in tail.lines:
        data = line.get("data") or {}
        type_ = line.get("type", "")
        if type_ == "RUN_COMPLETED":
            events[type_][f"{data.get('status')} by {data.get('marked_by')}"] += 1
        elif type_ in ("ARCHIVE_FAILED", "REPORT_FAILED", "SAFE_MODE_ENTERED"):
            events[type_][str(data.get("reason"))] += 1
        elif type_ == "WARNING":
            events[type_][str(data.get("what"))] += 1
        elif type_ == "ESCALATION":
            events[type_][str(data.get("trigger"))] += 1
        elif type_ == "log" and line.get("level") in ("ERROR", "CRITICAL"):
            events["ERROR log records"][str(line.get("message", ""))[:70]] += 1
        elif type_ in ("RUN_ARCHIVED", "REPORT_GENERATED", "RUN_REOPENED", "MONITOR_STARTED"):
            events[type_]["all"] += 1
    latencies = []
    reopened_at = {
        line.get("run_id"): epoch_of(line["time"]) for line in tail.lines if line.get("type") == "RUN_REOPENED"
    }
    for log in ended:
        if log.retry_wall is not None and log.run_id in reopened_at:
            latencies.append(reopened_at[log.run_id] - log.retry_wall)
    files = [record for log in records for record in log.files.values()]
    lifetimes = Counter(lifetime.ended for lifetime in chaos.daemon.lifetimes)
    rows = [
        ("runs created / ended", f"{len(records)} / {len(ended)}"),
        (
            "ended by",
            f"monitor's mark {ends['monitor']}, executor's own status {ends['executor']}, cancel {ends['cancel']}",
        ),
        ("reopened after the mark (retries)", str(sum(log.retry_wall is not None for log in ended))),
        ("tasks in all", str(sum(log.tasks for log in records))),
        (
            "artifacts",
            f"{len(files)} files/links/FIFOs, {sum(r.size for r in files) / MIB:.0f} MiB apparent, largest "
            f"{max((r.size for r in files), default=0) / MIB:.1f} MiB",
        ),
        (
            "executor transactions (retried)",
            f"{workload.counts['transactions']} ({workload.counts['transactions retried']})",
        ),
        ("daemon lifetimes", ", ".join(f"{n} {how}" for how, n in sorted(lifetimes.items()))),
    ]
    if latencies:
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        rows.append(
            (
                "RUN_REOPENED after the retry's commit",
                f"p50 {statistics.median(latencies):.2f} s, p99 {p99:.2f} s, max {latencies[-1]:.2f} s "
                f"(issue goal: p99 < 1 s; {len(latencies)} reopenings)",
            )
        )
    for type_, counts in sorted(events.items()):
        shown = ", ".join(f"{what} {n}" for what, n in counts.most_common(6))
        rows.append((f"events {type_}", f"{sum(counts.values())}: {shown}"))
    return rows


def print_result(result: ChaosResult, config: ChaosConfig, out: TextIO) -> None:
    print(f"\n== faults injected: {sum(result.faults.values())} (goal for 10 minutes: >= {GOAL_FAULTS})", file=out)
    print(f"   {'kind':<12} {'count':>5}  notes", file=out)
    for kind in FAULT_KINDS:
        notes = ", ".join(f"{what} {n}" for what, n in result.fault_notes.get(kind, Counter()).most_common())
        print(f"   {kind:<12} {result.faults[kind]:>5}  {notes}", file=out)
    print(f"\n== runs processed: {result.runs_ended} ended (goal for 10 minutes: >= {GOAL_RUNS})", file=out)
    for what, value in result.runs:
        print(f"   {what:<38} {value}", file=out)
    print("\n== invariants", file=out)
    width = max(len(invariant.name) for invariant in result.invariants)
    print(f"   {'invariant':<{width}} {'checked':>7} {'violations':>10}", file=out)
    for invariant in result.invariants:
        print(f"   {invariant.name:<{width}} {invariant.checked:>7} {len(invariant.violations):>10}", file=out)
        for example in invariant.violations[:EXAMPLES]:
            print(f"      e.g. {example[:400]}", file=out)
        if invariant.violations:
            print(f"      look: {invariant.hint}", file=out)
    if result.notes:
        print("\n== notes", file=out)
        for note in result.notes:
            print(f"   {note}", file=out)
    if result.harness_errors:
        print("\n== harness errors (the runner's own, not the daemon's)", file=out)
        for error in result.harness_errors[:20]:
            print(f"   {error[:400]}", file=out)
    verdict = "all invariants hold" if not result.violations else f"{result.violations} invariant violations"
    print(f"\n== result: {verdict} (seed {config.seed})", file=out)


# --- main ----------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> tuple[ChaosConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--minutes", type=float, help="how long faults are injected (default 10; --quick 2)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="2 minutes, a smaller artifact budget")
    parser.add_argument(
        "--budget-mb", type=int, help="all artifacts together, apparent MiB (default 1536; --quick 384)"
    )
    parser.add_argument("--max-file-mb", type=int, default=100, help="the largest artifact (default 100)")
    parser.add_argument("--tmpfs-mb", type=int, help="the archive tmpfs (default budget + a quarter + 256)")
    parser.add_argument("--fault-gap", type=float, default=5.0, help="mean seconds between faults (default 5)")
    parser.add_argument("--rate", type=float, default=0.8, help="runs started per second (default 0.8)")
    parser.add_argument("--max-tasks", type=int, default=500, help="tasks of the largest run (default 500)")
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()), help="where the scratch root goes (%(default)s)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch root (and the tmpfs mounted)")
    parser.add_argument(
        "--no-tmpfs", action="store_true", help="fill the archive disk by archive.reserve_bytes (SIGHUP), as non-root"
    )
    args = parser.parse_args(argv)
    minutes = args.minutes if args.minutes is not None else 2.0 if args.quick else 10.0
    budget = (args.budget_mb or (384 if args.quick else 1536)) * MIB
    tmpfs = (args.tmpfs_mb * MIB) if args.tmpfs_mb else budget + budget // 4 + 256 * MIB
    workload = WorkloadConfig(
        runs_per_second=args.rate,
        max_tasks=args.max_tasks,
        max_file_bytes=args.max_file_mb * MIB,
        budget_bytes=budget,
        budget_seconds=minutes * 60,
    )
    config = ChaosConfig(
        seconds=minutes * 60,
        seed=args.seed,
        workload=workload,
        fault_gap_seconds=args.fault_gap,
        tmpfs_bytes=tmpfs,
        workdir=args.workdir,
        keep=args.keep,
        use_tmpfs=not args.no_tmpfs,
        progress_seconds=20.0 if args.quick else 60.0,
    )
    return config, args


def main(argv: Sequence[str] | None = None) -> int:
    config, _ = parse_args(argv)
    out = sys.stdout
    print(
        f"bench/chaos.py: seed {config.seed}, {config.seconds / 60:.1f} minutes of faults (mean gap "
        f"{config.fault_gap_seconds:.1f} s), runs {config.workload.runs_per_second}/s of 1-{config.workload.max_tasks} "
        f"tasks, artifacts up to {config.workload.max_file_bytes // MIB} MiB and {config.workload.budget_bytes // MIB} "
        f"MiB in all; python {sys.version.split()[0]}, {os.cpu_count()} CPUs",
        file=out,
        flush=True,
    )
    try:
        result = run_chaos(config, out)
    except Exception as err:  # the harness failed (not an invariant): say so, exit 2
        traceback.print_exc()
        print(f"bench/chaos.py: harness failure: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    print_result(result, config, out)
    if result.violations:
        return 1
    return 2 if result.harness_errors else 0


if __name__ == "__main__":
    sys.exit(main())
