"""Shared fixtures: real workspaces on disk, the CLI in-process and as a real process, PostgreSQL."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from orchestrator_monitor.cli.main import main
from orchestrator_monitor.demo.simulator import SimulatedExecutor
from support import CliResult, DaemonProcess, drive_to_end, free_port

NATS_PORT = 4222
NATS_SERVER_COMMAND = [
    "start-stop-daemon", "--start", "--oknodo", "--background", "--exec", "/usr/sbin/nats-server", "--",
    "-a", "127.0.0.1", "-p", str(NATS_PORT), "-js", "-sd", "/var/lib/nats-server", "-l", "/var/log/nats-server.log",
]  # fmt: skip

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> object:
    """Run `orchestrator ARGS` in-process; the environment holds no ORCHESTRATOR_* leftovers."""
    for name in list(os.environ):
        if name.startswith("ORCHESTRATOR_"):
            monkeypatch.delenv(name)

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def workspace(tmp_path: Path, cli: object) -> Path:
    """An initialised, empty workspace."""
    root = tmp_path / "ws"
    assert cli("init", "--workspace", str(root)).code == 0  # type: ignore[operator]
    return root


@pytest.fixture
def simulated(workspace: Path) -> tuple[Path, list[str]]:
    """A workspace with four runs driven to their end by the simulated executor (one cancelled)."""
    executor = SimulatedExecutor(workspace / ".state" / "orchestration.db", workspace, random.Random(7))
    run_ids = [f"sim-{n}" for n in range(4)]
    for run_id in run_ids:
        executor.create_run(run_id, workstreams=3, tasks_per_workstream=5)
    executor.step()
    executor.cancel_run("sim-3")
    drive_to_end(executor)
    return workspace, run_ids


def _postgres_reachable() -> bool:
    import psycopg

    try:
        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=2).close()
    except psycopg.OperationalError:
        return False
    return True


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The loopback PostgreSQL server, started when it is down; skip where there is none."""
    if not _postgres_reachable():
        versions = os.listdir("/etc/postgresql") if os.path.isdir("/etc/postgresql") else []
        if not versions or shutil.which("pg_ctlcluster") is None:
            pytest.skip("PostgreSQL is not installed on this machine (no /etc/postgresql, no pg_ctlcluster)")
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[0], "main", "start"], check=False)
        deadline = time.monotonic() + 30
        while not _postgres_reachable():
            if time.monotonic() > deadline:
                pytest.skip("PostgreSQL did not come up on 127.0.0.1:5432 within 30 s")
            time.sleep(0.5)  # waiting for a server process we do not control: nothing to await
    return POSTGRES_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A SQLAlchemy URL on a schema of its own, dropped afterwards."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    with psycopg.connect(postgres_server, autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def start_daemon() -> Iterator[object]:
    """Start `orchestrator daemon` processes; any still running at the end is stopped."""
    started: list[DaemonProcess] = []

    def start(workspace: Path, *settings: str, **options: object) -> DaemonProcess:
        started.append(DaemonProcess(workspace, *settings, **options))  # type: ignore[arg-type]
        return started[-1]

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.kill()


@pytest.fixture(scope="session")
def nats_url() -> str:
    """The loopback NATS server with JetStream, started when it is down; skip where there is none."""
    from nats_support import NATS_SERVER, SHARED_NATS_URL, nats_listening

    if not nats_listening(NATS_PORT):
        if not os.path.exists(NATS_SERVER):
            pytest.skip("nats-server is not installed on this machine (Debian package nats-server)")
        subprocess.run(NATS_SERVER_COMMAND, check=False)
        deadline = time.monotonic() + 30
        while not nats_listening(NATS_PORT):
            if time.monotonic() > deadline:
                pytest.skip(f"nats-server did not come up on 127.0.0.1:{NATS_PORT} within 30 s")
            time.sleep(0.2)  # waiting for a server process we do not control: nothing to await
    return SHARED_NATS_URL


@pytest.fixture
def nats_stream(nats_url: str) -> Iterator[object]:
    """A stream and subject prefix of this test's own on the shared server, deleted afterwards."""
    from nats_support import NatsStream

    stream = NatsStream.fresh(nats_url)
    yield stream
    stream.delete()


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[object]:
    """A nats-server process of this test's own (its own port and store), to kill and start again."""
    from nats_support import NATS_SERVER, NatsServer

    if not os.path.exists(NATS_SERVER):
        pytest.skip("nats-server is not installed on this machine (Debian package nats-server)")
    server = NatsServer(tmp_path / "nats-store", free_port())
    server.start()
    yield server
    if server.process is not None:
        server.kill()


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[tuple[Path, Path]]:
    """The server binaries and a data directory `initdb` made once per session; skip where there are none."""
    from postgres_support import cannot_run_here, init_template, postgres_bin

    reason = cannot_run_here()
    if reason is not None:
        pytest.skip(reason)
    bin_dir = postgres_bin()
    assert bin_dir is not None
    template = init_template(bin_dir)
    yield bin_dir, template
    shutil.rmtree(template.parent, ignore_errors=True)


@pytest.fixture
def private_postgres(postgres_template: tuple[Path, Path]) -> Iterator[object]:
    """A PostgreSQL server of this test's own (its port, its data), started, to stop and start again."""
    from postgres_support import PrivatePostgres

    server = PrivatePostgres(*postgres_template, free_port())
    server.start()
    yield server
    server.remove()
