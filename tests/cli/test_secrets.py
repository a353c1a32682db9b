"""No secret is ever printed or logged, in errors included: a recognisable one fed through every path."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from support import DaemonProcess, free_port

SECRET = "Xs3cr3tX"  # short enough to be refused as a token, recognisable wherever it leaks
NOT_A_URL = f"{SECRET}-is-no-url"


def assert_nowhere(workspace: Path, *outputs: str) -> None:
    """Neither the terminal nor any log of the workspace holds the secret."""
    for text in outputs:
        assert SECRET not in text, text
    for log in (workspace / "logs").glob("*.jsonl*"):
        assert SECRET.encode() not in log.read_bytes(), log


@pytest.mark.parametrize(
    ("args", "environ", "code", "shown"),
    [
        (["--set", f"dashboard.token={SECRET}"], {}, 2, "dashboard.token = '***' (from --set): String should have"),
        (
            [],
            {"ORCHESTRATOR_ESCALATION_WEBHOOK": f"ftp://hooks.example.com/T0/{SECRET}"},
            2,
            "escalation.webhook = 'ftp://hooks.example.com/***' (from environment variable",
        ),
        (["--set", f"database.url={NOT_A_URL}"], {}, 2, "database.url is not a valid SQLAlchemy URL: '***'"),
        (  # an unquoted @ in the password: a driver would take the rest for the host name and quote it
            ["--set", f"database.url=postgresql+psycopg://monitor:pa@{SECRET}@127.0.0.1:1/none?connect_timeout=2"],
            {},
            2,
            "database.url: write an '@' in the password as %40",
        ),
        (["--debug", "--set", f"database.url={NOT_A_URL}"], {}, 2, "not a valid SQLAlchemy URL"),
    ],
)
def test_a_refused_secret_is_not_printed(
    workspace: Path,
    cli,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    environ: dict[str, str],
    code: int,
    shown: str,
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    command = "init" if "--debug" in args else "status"  # init parses the URL first
    result = cli(command, "--workspace", str(workspace), *args)
    assert result.code == code
    assert shown in result.err
    assert_nowhere(workspace, result.out, result.err)


def test_a_database_url_file_is_not_printed_either(workspace: Path, cli) -> None:
    url_file = workspace / "config" / "database.url"
    url_file.parent.mkdir(exist_ok=True)
    url_file.write_text(NOT_A_URL + "\n")
    result = cli("status", "--workspace", str(workspace), "--set", f"database.url_file={url_file}")
    assert result.code == 2 and result.err == "orchestrator: error: database.url is not a valid SQLAlchemy URL: '***'\n"
    assert_nowhere(workspace, result.out, result.err)


def test_the_daemon_logs_a_failing_webhook_and_a_refused_reload_without_their_secrets(
    workspace: Path, tmp_path: Path, start_daemon
) -> None:
    daemon: DaemonProcess = start_daemon(
        workspace,
        "events.sinks=console",  # what the journal gets, too
        f"archive.root={tmp_path / 'no' / 'such' / 'root'}",  # archival storage unavailable: ESCALATION
        f"escalation.webhook=http://127.0.0.1:{free_port()}/hooks/{SECRET}?key={SECRET}",
    )
    daemon.log.wait_for(
        lambda log: any("escalation webhook" in str(line.get("message")) for line in log.read()), what="the POST"
    )
    config = workspace / "config" / "monitor.toml"
    config.parent.mkdir(exist_ok=True)
    config.write_text(f"[dashboard]\ntoken = '{SECRET}'\n")
    daemon.process.send_signal(signal.SIGHUP)
    daemon.log.wait_for(
        lambda log: any("configuration not reloaded" in str(line.get("message")) for line in log.read()),
        what="the refused reload",
    )
    daemon.process.send_signal(signal.SIGTERM)
    out, err = daemon.process.communicate(timeout=10)  # the console sink's lines: stdout, the journal's
    assert daemon.process.returncode == 0, err
    messages = [str(line.get("message")) for line in daemon.log.read()]
    assert any("escalation webhook http://127.0.0.1:" in m and "/*** failed: Connection refused" in m for m in messages)
    assert any("dashboard.token = '***'" in m for m in messages)
    assert_nowhere(workspace, out, err)
