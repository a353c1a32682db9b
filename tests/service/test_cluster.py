"""Several daemons on one PostgreSQL: each run marked, archived and reported by exactly one of them, a
daemon killed in the middle of an archival is taken over by another, and a server restarted under them (on
a private server: `private_postgres`) costs nothing. Real processes, a real server.

Each daemon has a workspace of its own (its host: its logs, its spool) and all share the state database and
one archive root, as hosts sharing a filesystem would; a run's directory is on every host (hard links).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from archive_support import assert_bagit_valid
from orchestrator_monitor.detect.shares import owner_of
from postgres_support import PrivatePostgres
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError
from support import CliResult, DaemonProcess, EventLog, run_process

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

LEASE_SECONDS = 3.0
CLUSTER_SETTINGS = (
    f"cluster.lease_seconds={LEASE_SECONDS}",
    "health.heartbeat_seconds=0.5",
    "completion.poll_seconds=0.1",
    "archive.quiet_seconds=0",
    "archive.reserve_bytes=0",
    "dashboard.enabled=false",
)


class Cluster:
    """Daemons with ids of their own on one database and one archive root."""

    def __init__(self, root: Path, url: str, start_daemon) -> None:
        self.root = root
        self.url = url
        self.archive = root / "archive"
        self._start = start_daemon
        self.daemons: dict[str, DaemonProcess] = {}
        self.engine: Engine = create_engine(url)

    def workspace(self, name: str) -> Path:
        return self.root / f"host-{name}"

    def start(self, name: str, *settings: str) -> DaemonProcess:
        workspace = self.workspace(name)
        common = (f"database.url={self.url}", f"archive.root={self.archive}")
        if not workspace.exists():  # the triggers: every daemon hears each commit (NOTIFY)
            args = ["init", "--triggers", "--workspace", str(workspace)]
            assert run_process(*args, *(item for s in common for item in ("--set", s))).code == 0
        daemon = self._start(workspace, *common, f"cluster.daemon_id={name}", *CLUSTER_SETTINGS, *settings)
        self.daemons[name] = daemon
        return daemon

    def start_twin(self, name: str) -> CliResult:
        """A second process with the daemon id `name`, on a workspace of its own: refused while the id is held."""
        twin = self.workspace(f"{name}-twin")
        common = ("--set", f"database.url={self.url}", "--set", f"archive.root={self.archive}")
        if not twin.exists():
            assert run_process("init", "--workspace", str(twin), *common).code == 0
        settings = ("--set", f"cluster.daemon_id={name}", "--set", "dashboard.enabled=false")
        return run_process("daemon", "--workspace", str(twin), *common, *settings, timeout=30)

    def logs(self) -> list[EventLog]:
        return [EventLog(self.workspace(name)) for name in self.daemons]

    def events(self, type: str) -> list[dict]:
        return [event for log in self.logs() for event in log.events(type)]

    def add_runs(self, run_ids: list[str], *, finished: bool) -> None:
        status = "SUCCEEDED" if finished else "RUNNING"
        with self.engine.begin() as connection:
            connection.execute(
                text("INSERT INTO runs (run_id, status) VALUES (:r, 'RUNNING') ON CONFLICT DO NOTHING"),
                [{"r": r} for r in run_ids],
            )
            connection.execute(  # a retried commit may have landed the first time: inserting again does nothing
                text(
                    "INSERT INTO tasks (task_id, run_id, status, attempts) VALUES (:t, :r, :s, 1)"
                    " ON CONFLICT DO NOTHING"
                ),
                [{"t": f"{r}.t{n}", "r": r, "s": status} for r in run_ids for n in range(2)],
            )

    def finish(self, run_ids: list[str]) -> None:
        with self.engine.begin() as connection:
            connection.execute(text("UPDATE tasks SET status = 'SUCCEEDED' WHERE run_id = ANY(:ids)"), {"ids": run_ids})

    def phases(self) -> dict[str, tuple[str, str]]:
        with self.engine.connect() as connection:
            rows = connection.execute(text("SELECT run_id, phase, owner FROM monitor_runs"))
            return {run_id: (phase, owner) for run_id, phase, owner in rows}

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture
def cluster(tmp_path: Path, postgres_url: str, start_daemon):
    made = Cluster(tmp_path, postgres_url, start_daemon)
    yield made
    made.close()


@pytest.fixture
def private_cluster(tmp_path: Path, private_postgres: PrivatePostgres, start_daemon):
    """A cluster on a server of this test's own, which the test may stop and start."""
    made = Cluster(tmp_path, private_postgres.url, start_daemon)
    yield made
    made.close()


class RetryingExecutor(threading.Thread):
    """The executor: adds a batch of runs, then finishes it, batch after batch until told to stop; a write
    that fails while the server is away is tried again until it is back (the inserts may land twice)."""

    PAUSE_SECONDS = 0.2  # an executor's pace between batches, so some are written while the server is down

    def __init__(self, cluster: Cluster, batch_size: int) -> None:
        super().__init__(name="executor", daemon=True)
        self.cluster = cluster
        self.batch_size = batch_size
        self.runs: list[str] = []
        self.enough = threading.Event()

    def _retried(self, write: Callable[[], None]) -> None:
        while True:
            try:
                return write()
            except OperationalError:
                time.sleep(0.1)  # waiting for a server this thread does not see come back: nothing to await

    def run(self) -> None:
        while not self.enough.is_set():
            batch = [f"run-{len(self.runs) + n:03d}" for n in range(self.batch_size)]
            self._retried(partial(self.cluster.add_runs, batch, finished=False))
            self.runs += batch
            self._retried(partial(self.cluster.finish, batch))
            self.enough.wait(self.PAUSE_SECONDS)

    def written_after(self, count: int) -> Callable[[object], bool]:
        return lambda _: len(self.runs) >= count + 3 * self.batch_size


def beats(cluster: Cluster) -> dict[str, str]:
    with cluster.engine.connect() as connection:
        return dict(connection.execute(text("SELECT daemon_id, beat_at FROM monitor_daemons")).all())


def test_postgresql_restarted_under_running_daemons_longer_than_the_lease(
    private_cluster: Cluster, private_postgres: PrivatePostgres
) -> None:
    cluster = private_cluster
    a, b = cluster.start("a"), cluster.start("b")
    executor = RetryingExecutor(cluster, batch_size=5)
    executor.start()
    a.log.wait_for(executor.written_after(0), what="the executor's first batches")
    a.log.wait_for(lambda log: log.events("REPORT_GENERATED"), what="a run done before the outage")
    private_postgres.stop("immediate")  # a crash: every connection of both daemons and the executor is cut
    down_at = [len(log.read()) for log in cluster.logs()]
    for daemon in (a, b):
        daemon.log.wait_for(
            lambda log: any("notifications lost" in e.get("message", "") for e in log.events("log")),
            what="the outage noticed",
        )
    time.sleep(LEASE_SECONDS + 2)  # the outage itself: longer than the lease, so each finds the other's expired
    private_postgres.start()
    a.log.wait_for(executor.written_after(len(executor.runs)), timeout=60, what="the executor writing again")
    executor.enough.set()
    executor.join(30)
    runs = list(executor.runs)
    a.log.wait_for(
        lambda _: {e["run_id"] for e in cluster.events("REPORT_GENERATED")} >= set(runs),
        timeout=120,
        what="every run reported by some daemon",
    )
    for type in ("RUN_COMPLETED", "RUN_ARCHIVED", "REPORT_GENERATED"):
        counts = Counter(e["run_id"] for e in cluster.events(type))
        assert set(counts) == set(runs) and set(counts.values()) == {1}, f"{type} repeated or missing: {counts}"
    for run_id in runs:
        assert_bagit_valid(cluster.archive / run_id)
    assert {phase for phase, _ in cluster.phases().values()} == {"reported"}
    restarted_at = beats(cluster)
    a.log.wait_for(
        lambda _: all(beats(cluster)[name] > restarted_at[name] for name in ("a", "b")),
        what="both daemons beating again (their leases run)",
    )
    for daemon, seen in zip((a, b), down_at, strict=True):
        assert daemon.process.poll() is None
        complaints = [e for e in daemon.log.read()[seen:] if e["type"] == "log" and e["level"] != "INFO"]
        assert 1 <= len(complaints) <= 20, [e["message"] for e in complaints]  # per loop and error, not per retry
    assert cluster.start_twin("a").code == 3  # the id's lock went with the old server: taken again
    for daemon in (a, b):
        assert daemon.stop()[0] == 0


def test_a_daemon_whose_id_was_taken_while_it_was_cut_off_steps_down(
    private_cluster: Cluster, private_postgres: PrivatePostgres
) -> None:
    cluster = private_cluster
    a = cluster.start("a")
    with cluster.engine.connect() as usurper, cluster.engine.connect() as admin:
        (lock_holder,) = admin.execute(  # the session holding a's id: its advisory lock
            text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted")
        ).one()
        taking = threading.Thread(  # queued behind a's lock: granted the moment a's session ends
            target=usurper.execute,
            args=(text("SELECT pg_advisory_lock(:space, hashtext(current_schema() || '/a'))"), {"space": 0x6F6D}),
        )
        taking.start()
        admin.execute(text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": lock_holder})
        taking.join(10)
        assert not taking.is_alive()
        _, err = a.process.communicate(timeout=20)
        code = a.process.returncode
    assert code == 3, err
    assert "daemon id 'a' was taken by another process" in err
    assert a.log.events("MONITOR_STOPPED")


def test_three_daemons_share_the_work_and_do_each_run_exactly_once(cluster: Cluster) -> None:
    for name in ("a", "b", "c"):
        cluster.start(name)
    for daemon in (cluster.daemons["a"], cluster.daemons["b"]):  # c's share is c's once they know it (a loaded
        daemon.log.wait_for(  # machine may start c after a's and b's first look at who is alive)
            lambda log: any("daemons alive: a, b, c" in str(e.get("message")) for e in log.events("log")),
            timeout=60,
            what="a and b seeing c alive",
        )
    runs = [f"run-{n:03d}" for n in range(500)]
    cluster.add_runs(runs, finished=False)
    for start in range(0, len(runs), 50):  # the executor finishes them in batches
        cluster.finish(runs[start : start + 50])
    logs = cluster.logs()
    logs[0].wait_for(  # generous: archival is the slow step, and a shared 2-core machine may be loaded
        lambda _: len({e["run_id"] for e in cluster.events("REPORT_GENERATED")}) == len(runs),
        timeout=300,
        what="every run reported by some daemon",
    )
    for type in ("RUN_COMPLETED", "RUN_ARCHIVED", "REPORT_GENERATED"):
        counts = Counter(e["run_id"] for e in cluster.events(type))
        assert set(counts) == set(runs) and set(counts.values()) == {1}, f"{type} repeated or missing"
    by_daemon = Counter(e["daemon"] for e in cluster.events("RUN_COMPLETED"))
    assert set(by_daemon) == {"a", "b", "c"}  # the work was shared, not done by one
    for log, name in zip(logs, ("a", "b", "c"), strict=True):
        assert {e["daemon"] for e in log.read() if "daemon" in e} == {name}  # every event says who published it
        seqs = [e["seq"] for e in log.read()]
        assert seqs == sorted(set(seqs))  # unique and increasing per daemon
    assert sorted(p.name for p in cluster.archive.iterdir() if not p.name.startswith(".")) == runs
    assert {phase for phase, _ in cluster.phases().values()} == {"reported"}
    for name in ("a", "b", "c"):
        assert cluster.daemons[name].stop()[0] == 0


def test_a_daemon_killed_in_the_middle_of_archival_is_taken_over(cluster: Cluster, tmp_path: Path) -> None:
    victim = next(f"big-{n}" for n in range(100) if owner_of(f"big-{n}", ["a", "b"]) == "a")
    shared = tmp_path / "shared-run"
    shared.mkdir()
    for n in range(200):  # 200 MB: long enough to be stopped in the middle of the copy
        (shared / f"part-{n:03d}.bin").write_bytes(os.urandom(1 << 20))
    for name in ("a", "b"):
        run_dir = cluster.workspace(name) / "runs" / victim
        cluster.start(name)
        run_dir.mkdir(parents=True)
        for part in shared.iterdir():
            os.link(part, run_dir / part.name)
    a, b = cluster.daemons["a"], cluster.daemons["b"]
    a.log.wait_for(lambda log: log.events("HEARTBEAT"), what="a running")
    cluster.add_runs([victim], finished=True)
    a.log.wait_for(lambda log: log.events("ARCHIVE_STARTED", victim), what="a archiving the run")
    a.log.wait_for(  # the event comes before the staging: under load, seen before it is made
        lambda _: any(cluster.archive.glob(f".*/{victim}/bag")), what="a's staging of the run"
    )
    a.process.send_signal(signal.SIGSTOP)  # frozen mid-copy, then killed: no clean-up of any kind
    staging = list(cluster.archive.glob(f".*/{victim}"))
    a.kill()
    b.log.wait_for(
        lambda log: log.events("REPORT_GENERATED", victim), timeout=LEASE_SECONDS + 5, what="b finishing the run"
    )
    assert staging, "the kill was not in the middle of the archival"
    assert [e["daemon"] for e in cluster.events("RUN_COMPLETED")] == ["a"]  # announced once, by its owner
    assert [e["daemon"] for e in cluster.events("RUN_ARCHIVED")] == ["b"]
    assert_bagit_valid(cluster.archive / victim)
    assert cluster.phases()[victim] == ("reported", "b")
    assert [p.name for p in cluster.archive.iterdir() if not p.name.startswith(".")] == [victim]
    assert b.stop()[0] == 0


def test_a_second_daemon_with_the_same_id_is_refused(cluster: Cluster) -> None:
    cluster.start("a")
    refused = cluster.start_twin("a")
    assert refused.code == 3
    assert "daemon id 'a' is in use" in refused.err


def test_health_status_and_the_dashboard_say_which_daemons_are_alive(cluster: Cluster) -> None:
    a = cluster.start("a", "dashboard.enabled=true")  # the later --set wins
    b = cluster.start("b")
    b.kill()  # its lease runs out; nothing else says so
    common = ("--workspace", str(cluster.workspace("a")), "--set", f"database.url={cluster.url}")
    lost = {"a": True, "b": False}

    def daemons() -> dict[str, bool]:
        report = json.loads(run_process("health", "--json", *common).out)
        return {d["daemon_id"]: d["live"] for d in report["daemons"]}

    a.log.wait_for(lambda _: daemons() == lost, timeout=LEASE_SECONDS + 10, what="b's lease lost, a live")
    status = run_process("status", *common)
    assert status.code == 0 and "daemons: a live" in status.out and "b lease lost" in status.out
    health = run_process("health", *common)
    assert "daemon b\tlease lost" in health.out and "daemon a\tlive" in health.out
    a.log.wait_for(
        lambda _: {d["daemon_id"]: d["live"] for d in json.loads(a.get("/api/health")[1])["daemons"]} == lost,
        timeout=10,
        what="the daemon's own view (the dashboard's banner reads it)",
    )
