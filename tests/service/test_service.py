"""The daemon as a service, as real processes: systemd notify, HTTP, health command, signals, bad days."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import DaemonProcess, EventLog, Writer, free_port, run_process

# Root ignores file modes; the daemon runs as a service user would, bound by them (same uid, for the files).
WITHOUT_FILE_OVERRIDE = (
    ("setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--") if os.geteuid() == 0 else ()
)


def wait_until(condition, timeout: float = 20.0, what: str = "") -> None:  # type: ignore[no-untyped-def]
    """Poll a condition that lives in another process (no event to wait on), with a deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def logs(log: EventLog, level: str) -> list[str]:
    return [e["message"] for e in log.read() if e["type"] == "log" and e["level"] == level]


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    name = f"@orchestrator-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name[1:])
    sock.settimeout(10)
    yield sock, name
    sock.close()


def receive_until(sock: socket.socket, wanted: str) -> list[str]:
    lines: list[str] = []
    while wanted not in lines:
        lines += sock.recv(4096).decode().splitlines()
    return lines


def test_a_stand_in_notify_socket_gets_ready_watchdog_and_stopping(
    workspace: Path, start_daemon, notify_socket
) -> None:
    sock, name = notify_socket
    daemon = start_daemon(workspace, env={"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "400000"})
    first = receive_until(sock, "READY=1")
    assert any(line.startswith("STATUS=watching ") for line in first)
    assert f"MAINPID={daemon.process.pid}" in first
    receive_until(sock, "WATCHDOG=1")
    receive_until(sock, "WATCHDOG=1")  # again: every 0.2 s while the loops make progress
    assert daemon.stop()[0] == 0
    assert "STOPPING=1" in receive_until(sock, "STOPPING=1")  # a datagram waits in the socket


# Each costs a daemon megabytes it would carry for nothing (bench/history.py --daemon): imported only when configured.
OPTIONAL = ("apprise", "boto3", "botocore", "nats", "openlineage", "psycopg", "textual", "matplotlib")
WEB = ("starlette", "uvicorn")  # the dashboard's


@pytest.mark.parametrize(
    ("settings", "absent"), [((), OPTIONAL), (("dashboard.enabled=false",), OPTIONAL + WEB)], ids=["default", "no-web"]
)
def test_a_daemon_imports_no_integration_it_is_not_configured_for(
    workspace: Path, tmp_path: Path, notify_socket, settings: tuple[str, ...], absent: tuple[str, ...]
) -> None:
    sock, name = notify_socket
    command = [sys.executable, "-X", "importtime", "-m", "orchestrator_monitor.cli", "daemon"]
    command += ["--workspace", str(workspace), "--set", f"dashboard.port={free_port()}"]
    command += [arg for item in settings for arg in ("--set", item)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    with (tmp_path / "imports.err").open("wb") as err:  # a file, not a pipe: nobody reads while it starts
        env |= {"NOTIFY_SOCKET": name, "PYTHONFAULTHANDLER": "1"}
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env)
    try:
        receive_until(sock, "READY=1")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(10)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)  # the fault handler writes every thread's stack, then it ends
            process.wait()
            stacks = [
                line for line in (tmp_path / "imports.err").read_text().splitlines() if "import time:" not in line
            ]
            raise AssertionError("still running 10 s after SIGTERM:\n" + "\n".join(stacks)) from None
    assert code == 0
    lines = (tmp_path / "imports.err").read_text().splitlines()
    # every module the process imported in its life, start to stop, is one `import time:` line
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in lines if line.startswith("import time:")}
    assert {"sqlalchemy", "orchestrator_monitor"} <= imported
    assert imported.isdisjoint(absent), sorted(imported.intersection(absent))


def test_metrics_and_healthz_of_a_running_daemon(workspace: Path, start_daemon) -> None:
    daemon: DaemonProcess = start_daemon(workspace)
    Writer(workspace).add_run("m1", ["SUCCEEDED", "FAILED"])
    Writer(workspace).add_run("m2", ["FAILED"])

    def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = daemon.get("/metrics")[1].decode()
        return {
            (s.name.removeprefix("orchestrator_monitor_"), tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    wait_until(lambda: samples().get(("runs_failed_total", ())) == 1, what="runs_failed_total 1")
    wait_until(lambda: samples().get(("archive_duration_seconds_count", ())) == 2, what="both runs archived")
    values = samples()
    assert values[("runs_completed_total", (("status", "PARTIAL"),))] == 1
    assert values[("runs_completed_total", (("status", "FAILED"),))] == 1
    assert values[("events_total", (("type", "RUN_COMPLETED"),))] == 2
    assert values[("health_check_ok", (("check", "db_connection_check"),))] == 1
    assert values[("safe_mode", (("reason", "database_read_only"),))] == 0
    assert 0 <= values[("heartbeat_age_seconds", ())] < 30
    assert values[("dashboard_requests_total", (("code", "200"), ("path", "/metrics")))] >= 1
    assert values[("detection_latency_seconds_count", ())] == 2
    assert values[("archive_duration_seconds_count", ())] == 2
    assert values[("archived_bytes_total", ())] > 0 and ("archive_size_bytes", ()) in values  # read every 30 s
    assert values[("open_runs", (("status", "RUNNING"),))] == 0
    status, body = daemon.get("/healthz")
    assert (status, body) == (200, b"ok\n")
    assert daemon.stop()[0] == 0


def test_the_health_command_tells_live_from_stale(workspace: Path, start_daemon) -> None:
    daemon: DaemonProcess = start_daemon(workspace, "health.heartbeat_seconds=0.2")
    ws = ["--workspace", str(workspace), "--set", "health.stale_after_seconds=1"]
    wait_until(lambda: run_process("health", *ws).code == 0, what="healthy")
    result = run_process("health", "--json", *ws)
    assert '"live": true' in result.out
    os.kill(daemon.process.pid, signal.SIGSTOP)  # frozen: alive, but no loop makes progress
    try:
        wait_until(lambda: run_process("health", *ws).code == 1, what="stale heartbeat seen")
        result = run_process("health", *ws)
        assert "stale heartbeat" in result.out and result.out.rstrip().endswith("unhealthy")
    finally:
        os.kill(daemon.process.pid, signal.SIGCONT)
    daemon.kill()
    result = run_process("health", *ws)
    assert result.code == 1 and "is not running" in result.out


def test_sighup_takes_a_good_configuration_and_keeps_the_old_one_for_a_bad_one(workspace: Path, start_daemon) -> None:
    config = workspace / "config" / "monitor.toml"
    config.parent.mkdir(exist_ok=True)
    config.write_text("[completion]\nsettle_seconds = 0.0\n")
    daemon: DaemonProcess = start_daemon(workspace)
    config.write_text("[completion]\nsettle_seconds = 1.5\n[events]\nkeep_files = 7\n")
    daemon.process.send_signal(signal.SIGHUP)
    daemon.log.wait_for(lambda log: any("take effect on restart: events.keep_files" in m for m in logs(log, "WARNING")))
    config.write_text("[completion]\nsettle_seconds = -1\n")
    daemon.process.send_signal(signal.SIGHUP)
    daemon.log.wait_for(lambda log: any("configuration not reloaded" in m for m in logs(log, "ERROR")))
    assert any("completion.settle_seconds = '-1'" in m or "settle_seconds" in m for m in logs(daemon.log, "ERROR"))
    added = time.monotonic()
    Writer(workspace).add_run("settled", ["SUCCEEDED"])
    daemon.log.wait_for(lambda log: log.events("RUN_COMPLETED", "settled"), what="the settled run")
    assert time.monotonic() - added >= 1.5  # the good configuration's settle time is still in force
    assert daemon.process.poll() is None
    assert daemon.stop()[0] == 0


def corrupt_copy(db: Path) -> Path:
    """A copy of the database whose header is fine and whose table pages are garbage."""
    with closing(sqlite3.connect(db)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = connection.execute("PRAGMA page_size").fetchone()[0]
    copy = db.with_name("corrupt.db")
    shutil.copy(db, copy)
    with copy.open("r+b") as handle:
        handle.seek(page)
        handle.write(os.urandom(copy.stat().st_size - page))
    return copy


@pytest.mark.slow
def test_a_corrupt_database_escalates_within_one_check_interval_without_a_crash(workspace: Path, start_daemon) -> None:
    interval = 1.0
    daemon: DaemonProcess = start_daemon(workspace, f"health.db_check_seconds={interval}")
    writer = Writer(workspace)
    for n in range(20):
        writer.add_run(f"c{n}", ["SUCCEEDED"])
    daemon.log.wait_for(lambda log: len(log.events("RUN_COMPLETED")) == 20)
    copy = corrupt_copy(writer.db)
    for suffix in ("-wal", "-shm"):
        writer.db.with_name(writer.db.name + suffix).unlink(missing_ok=True)
    os.replace(copy, writer.db)
    replaced = time.monotonic()
    daemon.log.wait_for(lambda log: log.events("ESCALATION"), what="ESCALATION")
    assert time.monotonic() - replaced <= interval + 1.0
    escalation = daemon.log.events("ESCALATION")[0]["data"]
    assert escalation["trigger"] == "database_corrupt" and escalation["severity"] == "critical"
    assert daemon.get("/healthz")[0] == 503
    assert daemon.process.poll() is None
    code, err = daemon.stop()
    assert code == 0 and "Traceback" not in err
    assert len(daemon.log.events("ESCALATION")) == 1  # once per incident


@pytest.mark.slow
def test_a_read_only_database_defers_marks_until_it_is_writable(workspace: Path, start_daemon) -> None:
    daemon: DaemonProcess = start_daemon(workspace, "health.db_check_seconds=0.3", prefix=WITHOUT_FILE_OVERRIDE)
    writer = Writer(workspace)
    writer.add_run("early", ["SUCCEEDED"])
    daemon.log.wait_for(lambda log: log.events("RUN_COMPLETED", "early"))
    writer.db.chmod(0o444)
    daemon.log.wait_for(lambda log: log.events("SAFE_MODE_ENTERED"), what="safe mode")
    assert daemon.log.events("SAFE_MODE_ENTERED")[0]["data"]["reason"] == "database_read_only"
    writer.add_run("waiting", ["SUCCEEDED", "SKIPPED"])
    daemon.log.wait_for(lambda log: log.events("RUN_STATUS_CHANGED", "waiting"), what="the run seen")
    assert writer.status("waiting") == "RUNNING"
    assert daemon.get("/healthz")[0] == 503
    writer.db.chmod(0o664)
    daemon.log.wait_for(lambda log: log.events("SAFE_MODE_EXITED"), what="safe mode left")
    daemon.log.wait_for(lambda log: log.events("RUN_COMPLETED", "waiting"), what="the deferred mark")
    assert writer.status("waiting") == "COMPLETED"
    assert daemon.stop()[0] == 0


@pytest.mark.slow
def test_a_write_ahead_log_left_read_only_keeps_marks_waiting_and_says_so(workspace: Path, start_daemon) -> None:
    """SQLite creates the -wal with the database's mode: made during a read-only spell (here by a root
    executor), it stays read-only after it, and every connection opens the database read-only. Before,
    the health check saw only the database file: safe mode ended and every mark failed, unexplained
    (found by tests/test_chaos.py)."""
    writer = Writer(workspace)
    writer.add_run("before", ["RUNNING"])
    executor = sqlite3.connect(writer.db)  # an executor's connection: its -wal is kept between writes
    writer.db.chmod(0o444)
    daemon: DaemonProcess = start_daemon(workspace, "health.db_check_seconds=0.3", prefix=WITHOUT_FILE_OVERRIDE)
    daemon.log.wait_for(lambda log: log.events("SAFE_MODE_ENTERED"), what="safe mode")
    writer.add_run("waiting", ["SUCCEEDED", "SKIPPED"])
    daemon.log.wait_for(lambda log: log.events("RUN_STATUS_CHANGED", "waiting"), what="the run seen")
    wal = writer.db.with_name(writer.db.name + "-wal")
    assert wal.stat().st_mode & 0o777 == 0o444
    writer.db.chmod(0o664)
    daemon.log.wait_for(lambda _: b"-wal is not writable" in daemon.get("/api/health")[1], what="the -wal named")
    assert not daemon.log.events("SAFE_MODE_EXITED") and writer.status("waiting") == "RUNNING"
    for companion in writer.db.parent.glob(writer.db.name + "-*"):  # as an operator would: chmod 664 the db*
        companion.chmod(0o664)
    daemon.log.wait_for(lambda log: log.events("SAFE_MODE_EXITED"), what="safe mode left")
    daemon.log.wait_for(lambda log: log.events("RUN_COMPLETED", "waiting"), what="the deferred mark")
    assert writer.status("waiting") == "COMPLETED"
    assert daemon.stop()[0] == 0
    executor.close()


def test_a_dashboard_open_to_the_network_without_a_token_is_refused(workspace: Path) -> None:
    result = run_process("daemon", "--workspace", str(workspace), "--set", "dashboard.host=0.0.0.0")
    assert result.code == 2
    assert "is not a loopback address and dashboard.token is not set" in result.err
    assert "Traceback" not in result.err
    assert not (workspace / "logs" / "monitor.jsonl").exists()  # refused before anything started: no MONITOR_STARTED


SIMULATE_MANY = """
import random, sys
from pathlib import Path
from orchestrator_monitor.demo.simulator import SimulatedExecutor
ws = Path(sys.argv[1])
ex = SimulatedExecutor(ws / ".state" / "orchestration.db", ws, random.Random(3))
for n in range(150):
    ex.create_run(f"busy{n}", workstreams=2, tasks_per_workstream=3)
while ex.active_runs:
    ex.step()
"""


@pytest.mark.slow
def test_sigterm_during_work_stops_within_10_s_and_a_restart_finishes_the_work(workspace: Path, start_daemon) -> None:
    daemon: DaemonProcess = start_daemon(workspace)
    executor = subprocess.Popen([sys.executable, "-c", SIMULATE_MANY, str(workspace)])
    daemon.log.wait_for(lambda log: len(log.events("RUN_COMPLETED")) >= 5, what="work under way")
    sent = time.monotonic()
    code, err = daemon.stop(signal.SIGTERM, timeout=10)
    assert code == 0 and "Traceback" not in err
    assert time.monotonic() - sent < 10
    assert daemon.log.read()[-1]["type"] == "MONITOR_STOPPED"
    assert executor.wait(60) == 0
    again: DaemonProcess = start_daemon(workspace)
    again.log.wait_for(lambda log: len({e["run_id"] for e in log.events("RUN_COMPLETED")}) == 150, timeout=60)
    statuses = Writer(workspace).sql("SELECT count(*) FROM runs WHERE status IN ('RUNNING', 'PENDING')")
    assert statuses == [(0,)]
    assert again.stop()[0] == 0


def test_sigterm_does_not_wait_for_a_running_escalation_hook(workspace: Path, tmp_path: Path, start_daemon) -> None:
    marker = tmp_path / "hook.pid"
    hook = f"sh -c 'echo $$ > {marker}; exec sleep 30'"  # a hook that hangs, as a dead webhook would
    daemon: DaemonProcess = start_daemon(
        workspace,
        f"archive.root={tmp_path / 'no' / 'such' / 'root'}",  # archival storage unavailable: ESCALATION
        f"escalation.command={hook}",
        "escalation.timeout_seconds=30",
    )
    try:
        wait_until(lambda: marker.exists() and marker.read_text().strip(), what="the hook running")
        started = time.monotonic()
        code, err = daemon.stop(signal.SIGTERM, timeout=15)
        assert code == 0, err
        assert time.monotonic() - started < 10
        assert daemon.log.read()[-1]["type"] == "MONITOR_STOPPED"
    finally:
        os.kill(int(marker.read_text()), signal.SIGKILL)
