"""The unit file: `systemd-analyze verify` and `security`, and a run under a real systemd in a namespace."""

from __future__ import annotations

import contextlib
import ctypes.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import REPO, EventLog, free_port

UNIT = REPO / "systemd" / "orchestrator-monitor.service"
NAME = UNIT.name
SHIPPED_BINARY = "/opt/orchestrator-monitor/bin/orchestrator"
STUB_TARGETS = ("sysinit", "basic", "multi-user", "network", "network-online", "shutdown", "sockets", "timers",
                "paths", "slices")  # fmt: skip
SYSTEMD = Path("/usr/lib/systemd/systemd")

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")


def local_unit(directory: Path) -> Path:
    """The shipped unit with this checkout's `orchestrator` in place of the installed one."""
    directory.mkdir(parents=True, exist_ok=True)
    binary = Path(sys.executable).parent / "orchestrator"
    target = directory / NAME
    target.write_text(UNIT.read_text().replace(SHIPPED_BINARY, str(binary)))
    return target


@needs_analyze
def test_the_unit_passes_verify(tmp_path: Path) -> None:
    result = subprocess.run(["systemd-analyze", "verify", str(local_unit(tmp_path))], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "", result.stderr


@needs_analyze
def test_the_unit_exposure_is_at_most_2_and_every_option_left_out_is_justified() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)], capture_output=True, text=True
    )
    level = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert level is not None, result.stdout + result.stderr
    assert float(level.group(1)) <= 2.0
    text = UNIT.read_text()
    for line in result.stdout.splitlines():
        if line.startswith("✗"):
            option = line.split()[1].split("=")[0]
            assert re.search(rf"^# {re.escape(option)}=", text, re.M), f"{option} left out without a comment"


def drop_in(workspace: Path, port: int) -> str:
    return f"""[Service]
# The test's paths and user: root (the interpreter lives under /root), no state directories,
# and the real /tmp: a checkout (and its venv) may live there, as CI's clone may.
User=root
Group=root
ProtectHome=no
PrivateTmp=no
StateDirectory=
LogsDirectory=
ReadWritePaths={workspace}
Environment=ORCHESTRATOR_HOME={workspace} ORCHESTRATOR_ARCHIVE_ROOT={workspace}/.archive
Environment=ORCHESTRATOR_DASHBOARD_PORT={port} ORCHESTRATOR_EVENTS_SINKS=
StandardOutput=append:{workspace}/service.out
StandardError=append:{workspace}/service.out
WatchdogSec=3
RestartSec=0.2
"""


class NamespaceSystemd:
    """systemd as PID 1 of a private pid and mount namespace, reading units only from `units`."""

    def __init__(self, units: Path) -> None:
        self.process = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount", "--mount-proc", "--propagation", "private",
             str(SYSTEMD), "--system", "--unit=multi-user.target"],
            env={"SYSTEMD_UNIT_PATH": str(units), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.pid = self._child()

    def _child(self) -> int:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.process.poll() is None:
            found = children.read_text().split() if children.exists() else []
            state = self.systemctl("is-system-running", pid=int(found[0])).stdout.strip() if found else ""
            if state and state != "offline":  # "offline": systemctl could not reach the manager's bus yet
                return int(found[0])
            time.sleep(0.05)  # another process's start-up: nothing to await
        self.close()
        pytest.skip(
            f"systemd does not start in a namespace here: {self.process.stderr.read() if self.process.stderr else ''}"
        )

    def systemctl(self, *args: str, pid: int | None = None) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", "--no-pager", *args, pid=pid)

    def run(self, *command: str, pid: int | None = None) -> subprocess.CompletedProcess[str]:
        """`command` inside the namespace (its /proc shows the namespace's process ids)."""
        return subprocess.run(
            ["nsenter", "-t", str(pid or self.pid), "-m", "-p", *command], capture_output=True, text=True, timeout=30
        )

    def show(self, prop: str) -> str:
        return self.systemctl("show", "-p", prop, "--value", NAME).stdout.strip()

    def wait(self, condition, what: str, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.systemctl('status', NAME).stdout}"
            time.sleep(0.1)  # systemd's state, asked over its bus: nothing to await

    def close(self) -> None:
        pid = getattr(self, "pid", None)  # unset when systemd never came up
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # the namespace's init: every process in it dies with it
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate(timeout=10)


@pytest.fixture
def namespace_systemd() -> Iterator[tuple[NamespaceSystemd, Path]]:
    if not SYSTEMD.exists() or shutil.which("unshare") is None or shutil.which("nsenter") is None:
        pytest.skip("systemd, unshare or nsenter is not installed")
    root = Path(tempfile.mkdtemp(prefix="orchestrator-systemd-test-", dir="/var/lib"))
    try:
        units, workspace = root / "units", root / "ws"
        workspace.mkdir()
        local_unit(units)
        (units / f"{NAME}.d").mkdir()
        (units / f"{NAME}.d" / "test.conf").write_text(drop_in(workspace, free_port()))
        for target in STUB_TARGETS:
            (units / f"{target}.target").write_text(f"[Unit]\nDescription=stub {target}\n")
        systemd = NamespaceSystemd(units)
        try:
            yield systemd, workspace
        finally:
            systemd.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_under_a_real_systemd_it_runs_is_restarted_by_the_watchdog_and_stops_cleanly(namespace_systemd) -> None:
    systemd, workspace = namespace_systemd
    result = systemd.systemctl("start", NAME)
    out = workspace / "service.out"
    status = systemd.systemctl("status", NAME).stdout
    assert result.returncode == 0, status + (out.read_text() if out.exists() else "")
    assert "active (running)" in systemd.systemctl("status", NAME).stdout
    first = systemd.show("MainPID")
    environ = systemd.run("cat", f"/proc/{first}/environ").stdout.split("\0")
    assert "MALLOC_ARENA_MAX=2" in environ  # the unit's cap on glibc's arenas reaches the daemon
    if ctypes.util.find_library("jemalloc"):  # and its allocator: the daemon's objects in jemalloc
        assert "PYTHONMALLOC=malloc" in environ
        assert "libjemalloc.so.2" in systemd.run("cat", f"/proc/{first}/maps").stdout
    systemd.systemctl("kill", "--signal=SIGSTOP", NAME)  # frozen: no progress, no WATCHDOG=1
    systemd.wait(lambda: systemd.show("NRestarts") not in ("", "0") and systemd.show("ActiveState") == "active",
                 "the watchdog restart")  # fmt: skip
    assert systemd.show("MainPID") != first
    log = EventLog(workspace)
    log.wait_for(lambda log: len(log.events("MONITOR_STARTED")) == 2, what="the second start")
    assert systemd.systemctl("stop", NAME).returncode == 0
    assert systemd.show("ActiveState") == "inactive" and systemd.show("Result") == "success"
    assert log.read()[-1]["type"] == "MONITOR_STOPPED"
