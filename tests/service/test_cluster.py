"""Several daemons on one PostgreSQL: each run marked, archived and reported by exactly one of them, and a
daemon killed in the middle of an archival is taken over by another. Real processes, a real server.

Each daemon has a workspace of its own (its host: its logs, its spool) and all share the state database and
one archive root, as hosts sharing a filesystem would; a run's directory is on every host (hard links).
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path

import pytest
from archive_support import assert_bagit_valid
from orchestrator_monitor.detect.shares import owner_of
from sqlalchemy import Engine, create_engine, text
from support import DaemonProcess, EventLog, run_process

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

    def logs(self) -> list[EventLog]:
        return [EventLog(self.workspace(name)) for name in self.daemons]

    def events(self, type: str) -> list[dict]:
        return [event for log in self.logs() for event in log.events(type)]

    def add_runs(self, run_ids: list[str], *, finished: bool) -> None:
        status = "SUCCEEDED" if finished else "RUNNING"
        with self.engine.begin() as connection:
            connection.execute(
                text("INSERT INTO runs (run_id, status) VALUES (:r, 'RUNNING')"), [{"r": r} for r in run_ids]
            )
            connection.execute(
                text("INSERT INTO tasks (task_id, run_id, status, attempts) VALUES (:t, :r, :s, 1)"),
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


def test_three_daemons_share_the_work_and_do_each_run_exactly_once(cluster: Cluster) -> None:
    for name in ("a", "b", "c"):
        cluster.start(name)
    runs = [f"run-{n:03d}" for n in range(500)]
    cluster.add_runs(runs, finished=False)
    for start in range(0, len(runs), 50):  # the executor finishes them in batches
        cluster.finish(runs[start : start + 50])
    logs = cluster.logs()
    logs[0].wait_for(
        lambda _: len({e["run_id"] for e in cluster.events("REPORT_GENERATED")}) == len(runs),
        timeout=120,
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
    twin = cluster.workspace("a-twin")
    common = ("--set", f"database.url={cluster.url}", "--set", f"archive.root={cluster.archive}")
    assert run_process("init", "--workspace", str(twin), *common).code == 0
    refused = run_process(
        "daemon", "--workspace", str(twin), *common, "--set", "cluster.daemon_id=a", "--set", "dashboard.enabled=false"
    )
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
