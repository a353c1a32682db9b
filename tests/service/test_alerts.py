"""Alerts from a real daemon: an e-mail through a real SMTP server, delivery after kill -9, rules reloaded on SIGHUP,
`health` and `alerts test`."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from alerts_support import HttpReceiver, MailReceiver, write_alert_config
from orchestrator_monitor.alerts.outbox import read_alert_counts
from support import DaemonProcess, Writer, free_port

FAILED_RULE = '[[alerts.rules]]\nname = "failures"\nstatuses = ["FAILED"]\n'


def pending(workspace: Path) -> int:
    return read_alert_counts(workspace / ".monitor" / "monitor.db", busy_timeout_seconds=5)["pending"]


def test_a_failed_run_is_mailed_with_its_failed_task_and_message(workspace: Path, start_daemon) -> None:
    mail = MailReceiver().start()
    try:
        url = f"mailto://127.0.0.1:{mail.port}?from=monitor@example.org&to=ops@example.org&mode=insecure"
        write_alert_config(workspace, FAILED_RULE, urls=(url,))
        start_daemon(workspace)
        Writer(workspace).add_run("nightly-3", ["FAILED", "SKIPPED"], failure=("pytest", "Timeout", "suite took 3 h"))
        Writer(workspace).add_run("fine-1", ["SUCCEEDED"])
        mail.wait_for(lambda items: len(items) == 1, "the alert e-mail")
    finally:
        mail.stop()
    message = mail.items[0]
    assert message["Subject"] == "[error] run nightly-3 ended FAILED"
    text = MailReceiver.text(message)
    assert "run: nightly-3" in text
    assert "failed task: nightly-3.t0 (pytest): Timeout suite took 3 h" in text


@pytest.mark.slow
def test_alerts_pending_at_kill_9_are_delivered_after_the_restart_none_twice(
    workspace: Path, start_daemon, cli
) -> None:
    receiver = HttpReceiver(free_port())
    write_alert_config(workspace, FAILED_RULE, urls=(f"json://127.0.0.1:{receiver.port}/hook",))
    daemon: DaemonProcess = start_daemon(workspace)
    for n in range(3):
        Writer(workspace).add_run(f"killed-{n}", ["FAILED"])
    daemon.log.wait_for(lambda log: pending(workspace) == 3, what="three alerts waiting")
    daemon.kill()
    health = json.loads(cli("health", "--workspace", str(workspace), "--json").out)
    assert health["alerts"] == {"pending": 3, "undeliverable": 0}
    assert "alerts waiting: 3 (0 undeliverable)" in cli("health", "--workspace", str(workspace)).out
    receiver.start()
    try:
        again: DaemonProcess = start_daemon(workspace)
        receiver.wait_for(lambda items: len(items) == 3, "the three alerts after the restart")
        again.log.wait_for(lambda log: pending(workspace) == 0, what="the outbox emptied")
        assert again.stop()[0] == 0
    finally:
        receiver.stop()
    titles = sorted(json.loads(body)["title"] for _, _, body in receiver.items)
    assert titles == [f"[error] run killed-{n} ended FAILED" for n in range(3)]


def test_sighup_reloads_the_rules(workspace: Path, start_daemon) -> None:
    receiver = HttpReceiver().start()
    url = f"json://127.0.0.1:{receiver.port}/hook"
    try:
        write_alert_config(workspace, FAILED_RULE + 'title = "before {{ run_id }}"\n', urls=(url,))
        daemon: DaemonProcess = start_daemon(workspace)
        Writer(workspace).add_run("r1", ["FAILED"])
        receiver.wait_for(lambda items: len(items) == 1, "the first alert")
        write_alert_config(workspace, FAILED_RULE + 'title = "after {{ run_id }}"\n', urls=(url,))
        daemon.process.send_signal(signal.SIGHUP)
        daemon.log.wait_for(
            lambda log: any("configuration reloaded" in str(e.get("message", "")) for e in log.read()),
            what="the reload",
        )
        Writer(workspace).add_run("r2", ["FAILED"])
        receiver.wait_for(lambda items: len(items) == 2, "the second alert")
        daemon.log.wait_for(
            lambda log: json.loads(daemon.get("/api/health")[1])["alerts"]["sent"] == 2, what="two alerts sent"
        )
        assert daemon.stop()[0] == 0
    finally:
        receiver.stop()
    assert [json.loads(body)["title"] for _, _, body in receiver.items] == ["before r1", "after r2"]


def reload(daemon: DaemonProcess) -> None:
    """SIGHUP, and wait for the daemon to say it reloaded."""
    said = sum("configuration reloaded" in str(e.get("message", "")) for e in daemon.log.read())
    daemon.process.send_signal(signal.SIGHUP)
    daemon.log.wait_for(
        lambda log: sum("configuration reloaded" in str(e.get("message", "")) for e in log.read()) > said,
        what="the reload",
    )


def test_sighup_adds_the_first_rule_to_a_daemon_started_without_any(workspace: Path, start_daemon) -> None:
    receiver = HttpReceiver().start()
    try:
        daemon: DaemonProcess = start_daemon(workspace)
        Writer(workspace).add_run("before-1", ["FAILED"])
        daemon.log.wait_for(lambda log: log.events("RUN_COMPLETED", "before-1"), what="before-1 completed")
        write_alert_config(workspace, FAILED_RULE, urls=(f"json://127.0.0.1:{receiver.port}/hook",))
        reload(daemon)
        Writer(workspace).add_run("after-1", ["FAILED"], failure=("make", "ExitCode", "exit 2"))
        receiver.wait_for(lambda items: len(items) == 1, "the first rule's alert")
        assert daemon.stop()[0] == 0
    finally:
        receiver.stop()
    sent = json.loads(receiver.items[0][2])
    assert sent["title"] == "[error] run after-1 ended FAILED"
    assert "failed task: after-1.t0 (make): ExitCode exit 2" in sent["message"]
    assert not any("restart" in str(e.get("message", "")) for e in daemon.log.read() if e.get("level") == "WARNING")


def test_sighup_adds_a_rule_on_an_event_type_no_rule_had(workspace: Path, start_daemon) -> None:
    receiver = HttpReceiver().start()
    url = f"json://127.0.0.1:{receiver.port}/hook"
    running = '[[alerts.rules]]\nname = "started"\nevents = ["RUN_STATUS_CHANGED"]\nstatuses = ["RUNNING"]\n'
    try:
        write_alert_config(workspace, FAILED_RULE, urls=(url,))
        daemon: DaemonProcess = start_daemon(workspace)
        Writer(workspace).add_run("quiet-1", ["RUNNING"])
        daemon.log.wait_for(lambda log: log.events("RUN_STATUS_CHANGED", "quiet-1"), what="quiet-1 seen running")
        write_alert_config(workspace, FAILED_RULE + running, urls=(url,))
        reload(daemon)
        Writer(workspace).add_run("loud-1", ["RUNNING"])
        receiver.wait_for(lambda items: len(items) == 1, "the new rule's alert")
        assert daemon.stop()[0] == 0
    finally:
        receiver.stop()
    assert [json.loads(body)["title"] for _, _, body in receiver.items] == ["[info] run loud-1 is RUNNING"]


def test_alerts_test_sends_a_sample_and_says_where(workspace: Path, cli) -> None:
    receiver = HttpReceiver().start()
    try:
        write_alert_config(workspace, FAILED_RULE, urls=(f"json://127.0.0.1:{receiver.port}/secret-path",))
        result = cli("alerts", "test", "failures", "--workspace", str(workspace))
        assert (result.code, result.out) == (0, f"sent\tjson://127.0.0.1:{receiver.port}/***\n")
        receiver.wait_for(lambda items: len(items) == 1, "the sample")
    finally:
        receiver.stop()
    assert "test-run" in json.loads(receiver.items[0][2])["title"]
    down = cli("alerts", "test", "failures", "--workspace", str(workspace))
    assert down.code == 1 and "secret-path" not in down.out + down.err
    unknown = cli("alerts", "test", "nope", "--workspace", str(workspace))
    assert unknown.code == 2 and "no alert rule 'nope' (alerts.rules: failures)" in unknown.err
