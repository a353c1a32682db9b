"""The simulated executor behaves like an executor: every branch the monitor must handle shows up."""

from __future__ import annotations

import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import orjson
from orchestrator_monitor.demo.simulator import SimulatedExecutor
from support import free_port


def test_simulated_runs_end_with_retries_failures_artifacts_and_logs(simulated: tuple[Path, list[str]]) -> None:
    workspace, _ = simulated
    with sqlite3.connect(workspace / ".state" / "orchestration.db") as connection:
        open_tasks = connection.execute("SELECT count(*) FROM tasks WHERE status NOT IN "
                                        "('SUCCEEDED', 'FAILED', 'SKIPPED', 'CANCELLED')").fetchone()[0]  # fmt: skip
        open_workstreams = connection.execute("SELECT count(*) FROM workstreams WHERE status IN "
                                              "('PENDING', 'RUNNING')").fetchone()[0]  # fmt: skip
        retried = connection.execute("SELECT count(*) FROM tasks WHERE attempts > 1").fetchone()[0]
        failed = connection.execute("SELECT count(*) FROM tasks WHERE status = 'FAILED'").fetchone()[0]
        tools = connection.execute("SELECT count(DISTINCT tool) FROM tasks").fetchone()[0]
        cancelled = connection.execute(
            "SELECT status, finished_at IS NOT NULL FROM runs WHERE run_id = 'sim-3'"
        ).fetchone()
    assert (open_tasks, open_workstreams) == (0, 0)
    assert retried > 0 and failed > 0 and tools >= 4
    assert cancelled == ("CANCELLED", 1)
    run_dir = workspace / "runs" / "sim-0"
    assert list((run_dir / "logs").glob("*.log"))
    assert list(run_dir.glob("*.out"))


def test_demo_command_runs_to_the_end_in_a_fresh_workspace(tmp_path: Path, cli) -> None:
    demo = tmp_path / "demo"
    args = (
        "--workspace",
        str(demo),
        "--runs",
        "3",
        "--tick",
        "0",
        "--seed",
        "3",
        "--set",
        f"dashboard.port={free_port()}",
    )
    result = cli("demo", *args)
    assert result.code == 0, result.err
    lines = [line.split("\t") for line in cli("status", "--workspace", str(demo)).out.splitlines()]
    assert len(lines) == 3
    assert all(fields[2].endswith("100%") and fields[1] in ("COMPLETED", "FAILED", "PARTIAL") for fields in lines)
    for fields in lines:  # the monitor beside the demo marked, archived and reported every run
        assert (demo / ".archive" / fields[0] / "bagit.txt").is_file()
        assert (demo / "reports" / f"{fields[0]}.html").is_file()
    assert "dashboard: http://127.0.0.1:" in result.out


def test_the_demo_serves_the_dashboard_while_it_runs(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "orchestrator_monitor.cli", "demo", "--workspace", str(tmp_path / "demo")]
    command += ["--runs", "2", "--tick", "0.2", "--seed", "3", "--set", f"dashboard.port={port}"]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as demo:
        try:
            assert demo.stdout is not None
            lines = iter(demo.stdout.readline, "")
            url = next((line.split(": ", 1)[1].strip() for line in lines if line.startswith("dashboard: ")), None)
            assert url == f"http://127.0.0.1:{port}/"
            with urllib.request.urlopen(f"{url}api/runs", timeout=10) as response:  # served by the monitor beside it
                assert response.status == 200
                assert "runs" in orjson.loads(response.read())
            out, err = demo.communicate(timeout=120)
        finally:
            demo.kill()  # a failed assertion must not leave the demo running (a no-op once it has ended)
    assert demo.returncode == 0, err
    assert "reports: " in out


def test_the_demo_takes_a_free_port_when_its_own_is_taken_and_stays_until_ctrl_c(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    command = [sys.executable, "-m", "orchestrator_monitor.cli", "demo", "--workspace", str(tmp_path / "demo")]
    command += ["--runs", "1", "--tick", "0.05", "--seed", "3", "--stay", "--set", f"dashboard.port={port}"]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}, "PYTHONUNBUFFERED": "1"}
    try:
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as demo:
            try:
                assert demo.stdout is not None
                lines = iter(demo.stdout.readline, "")
                said = next(line for line in lines if "is taken" in line or line.startswith("dashboard: "))
                assert said.startswith(f"port {port} is taken: the dashboard uses port ")
                other = int(said.rsplit("port ", 1)[1].split()[0])
                assert next(lines).strip() == f"dashboard: http://127.0.0.1:{other}/"
                assert any("stay up until Ctrl-C" in line for line in lines)
                with urllib.request.urlopen(f"http://127.0.0.1:{other}/api/runs", timeout=10) as response:
                    runs = orjson.loads(response.read())["runs"]
                assert len(runs) == 1 and runs[0]["terminal"] and runs[0]["name"] != runs[0]["run_id"]
                demo.send_signal(signal.SIGINT)
                out, err = demo.communicate(timeout=30)
            finally:
                demo.kill()
    finally:
        taken.close()
    assert demo.returncode == 0, err
    assert "reports: " in out


def test_workstreams_run_as_soon_as_a_task_of_theirs_does(workspace: Path) -> None:
    executor = SimulatedExecutor(workspace / ".state" / "orchestration.db", workspace, random.Random(1))
    executor.create_run("ws-1", workstreams=2, tasks_per_workstream=2)
    for _ in range(3):
        executor.step()
    with sqlite3.connect(workspace / ".state" / "orchestration.db") as db:
        rows = db.execute(
            "SELECT w.status, group_concat(t.status) FROM workstreams w JOIN tasks t USING (workstream_id) "
            "GROUP BY w.workstream_id"
        ).fetchall()
        names = db.execute("SELECT name FROM workstreams UNION ALL SELECT name FROM runs").fetchall()
    assert any("RUNNING" in tasks for _, tasks in rows)
    for status, tasks in rows:
        if "RUNNING" in tasks:
            assert status == "RUNNING"
    assert all(not name.startswith(("demo ", "workstream ")) for (name,) in names)
