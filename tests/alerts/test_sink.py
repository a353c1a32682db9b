"""The alert sink, its outbox and its delivery thread against real receivers on loopback."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from alerts_support import HttpReceiver, HttpsInterceptor
from orchestrator_monitor.alerts.outbox import alert_outbox
from orchestrator_monitor.alerts.sink import AlertSink
from orchestrator_monitor.config import AlertRule, AlertsSettings
from orchestrator_monitor.errors import BadInput
from orchestrator_monitor.events.types import Event, EventType
from support import free_port

SECRET = "s3cret-hook-token"
FAILED_TASK = {"task_id": "t7", "tool": "pytest", "error_type": "Timeout", "error_message": "suite took 3 h"}


def failed_run(seq: int, run_id: str) -> Event:
    data = {"status": "FAILED", "marked_by": "monitor", "tasks": {"FAILED": 1, "SUCCEEDED": 2}}
    return Event(seq, "2026-12-01T00:00:00.000000Z", EventType.RUN_COMPLETED, f"{run_id}:RUN_COMPLETED", data, run_id)


def details(run_id: str) -> tuple[str | None, list[dict[str, Any]]]:
    return f"name of {run_id}", [FAILED_TASK]


def open_sink(tmp_path: Path, urls: list[str], **options: Any) -> AlertSink:
    rule = AlertRule(name="failures", statuses=["FAILED"], **options.pop("rule", {}))
    settings = AlertsSettings(urls=urls, rules=[rule], **{"retry_seconds": 0.1, "max_retry_seconds": 0.5, **options})
    sink = AlertSink(settings, alert_outbox(tmp_path / "monitor.db", busy_timeout_seconds=5), details=details)
    sink.delivery.start()
    return sink


@pytest.fixture
def receiver() -> Any:
    started = HttpReceiver().start()
    yield started
    started.stop()


def test_a_failed_run_reaches_json_form_and_slack_format_webhooks(tmp_path: Path, receiver: HttpReceiver) -> None:
    base = f"127.0.0.1:{receiver.port}"
    sink = open_sink(tmp_path, [f"json://{base}/json/{SECRET}", f"form://{base}/form", f"mmost://{base}/{SECRET}"])
    try:
        sink.handle(failed_run(1, "nightly-7"))
        receiver.wait_for(lambda items: len(items) == 3, "three deliveries")
    finally:
        sink.close()
    by_path = {path.split("/")[1]: (kind, body) for path, kind, body in receiver.items}
    sent = json.loads(by_path["json"][1])
    assert "nightly-7" in sent["title"] and "FAILED" in sent["title"]
    assert "failed task: t7 (pytest): Timeout suite took 3 h" in sent["message"]
    assert "nightly-7 (name of nightly-7)" in sent["message"]
    form = parse_qs(by_path["form"][1].decode())
    assert "t7" in form["message"][0]
    slack = json.loads(by_path["hooks"][1])  # Mattermost's incoming webhook speaks Slack's format: {"text": ...}
    assert "suite took 3 h" in slack["text"]


def test_one_alert_per_run_per_rule_even_after_a_restart(tmp_path: Path, receiver: HttpReceiver) -> None:
    url = f"json://127.0.0.1:{receiver.port}/hook"
    sink = open_sink(tmp_path, [url])
    sink.handle(failed_run(1, "r1"))
    sink.handle(failed_run(1, "r1"))  # the same event again (a subscriber refetch)
    receiver.wait_for(lambda items: len(items) == 1, "one delivery")
    sink.close()
    again = open_sink(tmp_path, [url])
    again.handle(failed_run(1, "r1"))  # replayed after a crash
    again.handle(failed_run(2, "r2"))
    receiver.wait_for(lambda items: len(items) == 2, "the second run's alert")
    again.close()
    runs = [json.loads(body)["title"] for _, _, body in receiver.items]
    assert sum("r1" in title for title in runs) == 1


def test_a_storm_gives_the_throttles_worth_and_one_summary(tmp_path: Path, receiver: HttpReceiver) -> None:
    sink = open_sink(
        tmp_path, [f"json://127.0.0.1:{receiver.port}/hook"], rule={"throttle_count": 5, "throttle_seconds": 3.0}
    )
    try:
        for n in range(200):
            sink.handle(failed_run(n, f"storm-{n}"))
        receiver.wait_for(lambda items: any("held back" in json.loads(b)["title"] for _, _, b in items), "the summary")
    finally:
        sink.close()
    assert alert_outbox(tmp_path / "monitor.db", busy_timeout_seconds=5).counts() == {"pending": 0, "undeliverable": 0}
    titles = [json.loads(body)["title"] for _, _, body in receiver.items]
    assert len(titles) == 6
    assert titles[-1] == "[failures] 195 more alerts held back by the throttle"
    summary = json.loads(receiver.items[-1][2])["message"]
    assert "storm-5, storm-6" in summary and summary.endswith(", ...")


@pytest.mark.slow
def test_a_receiver_down_for_10_s_loses_nothing_and_no_log_shows_the_url(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = HttpReceiver(free_port())
    caplog.set_level(logging.DEBUG)
    # 0.5 s doubling to 4 s, 8 attempts: about 20 s of retries (the defaults give two minutes)
    sink = open_sink(tmp_path, [f"json://127.0.0.1:{receiver.port}/{SECRET}"], retry_seconds=0.5, max_retry_seconds=4)
    try:
        for n in range(5):
            sink.handle(failed_run(n, f"down-{n}"))
        threading.Event().wait(10)  # the receiver's outage: what the test is about, not a wait for a condition
        assert sink.stats()["pending"] == 5
        assert "retrying in" in caplog.text
        receiver.start()
        receiver.wait_for(lambda items: len(items) == 5, "five deliveries after the outage")
    finally:
        sink.close()
        receiver.stop()
    assert sorted(json.loads(body)["title"] for _, _, body in receiver.items) == sorted(
        f"[error] run down-{n} ended FAILED" for n in range(5)
    )
    assert SECRET not in caplog.text


def test_undeliverable_alerts_are_counted_and_tried_again_at_the_next_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    sink = open_sink(tmp_path, [f"json://127.0.0.1:{port}/hook"], max_attempts=2)
    sink.handle(failed_run(1, "lost-1"))
    outbox = alert_outbox(tmp_path / "monitor.db", busy_timeout_seconds=5)
    done = threading.Event()
    while not done.wait(0.05) and outbox.counts()["undeliverable"] == 0:
        pass
    assert sink.stats()["undeliverable"] == 1
    sink.close()
    assert (
        "lost-1 of rule failures to json://127.0.0.1:" in caplog.text
        and "undeliverable after 2 attempts" in caplog.text
    )
    receiver = HttpReceiver(port).start()
    try:
        again = open_sink(tmp_path, [f"json://127.0.0.1:{port}/hook"], max_attempts=2)
        receiver.wait_for(lambda items: len(items) == 1, "the alert, at the next start")
        again.close()
    finally:
        receiver.stop()
    assert outbox.counts() == {"pending": 0, "undeliverable": 0}


def test_past_the_queue_size_alerts_are_dropped_and_counted(tmp_path: Path) -> None:
    sink = open_sink(tmp_path, [f"json://127.0.0.1:{free_port()}/hook"], queue_size=2)
    try:
        for n in range(3):
            sink.handle(failed_run(n, f"q-{n}"))
        assert sink.stats()["dropped"] == 1 and sink.stats()["pending"] == 2
    finally:
        sink.close()


def test_a_template_cannot_run_code_and_a_broken_one_gives_the_default(tmp_path: Path, receiver: HttpReceiver) -> None:
    sink = open_sink(
        tmp_path,
        [f"json://127.0.0.1:{receiver.port}/hook"],
        rule={"title": "{{ run_id.__class__.__mro__[1].__subclasses__() }}", "body": "{{ failed_task.error_message }}"},
    )
    try:
        sink.handle(failed_run(1, "t-1"))
        receiver.wait_for(lambda items: len(items) == 1, "the alert")
    finally:
        sink.close()
    sent = json.loads(receiver.items[0][2])
    assert sent["title"] == "[error] run t-1 ended FAILED"  # the default: the sandbox refused
    assert sent["message"] == "suite took 3 h"


def test_a_reload_refuses_a_rule_on_an_unknown_event_type_and_keeps_the_running_rules(
    tmp_path: Path, receiver: HttpReceiver
) -> None:
    sink = open_sink(tmp_path, [f"json://127.0.0.1:{receiver.port}/hook"])
    try:
        urls = [f"json://127.0.0.1:{free_port()}/hook"]
        with pytest.raises(BadInput, match="unknown event type RUN_FAILED"):
            sink.configure(AlertsSettings(urls=urls, rules=[AlertRule(name="typo", events=["RUN_FAILED"])]))
        sink.handle(failed_run(1, "kept-1"))
        receiver.wait_for(lambda items: len(items) == 1, "the alert of the rule kept")
    finally:
        sink.close()


SLACK_TOKENS = "T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7"
TEAMS_HOST = "prod-161.westeurope.logic.azure.com"
TEAMS_WORKFLOW, TEAMS_SIGNATURE = "643e69f83c8944438d68119179a10a64", "KODuebWbDGYFr0z0eu-6Rj8aUKz7108W3wrNJZxFE5A"


@pytest.fixture
def interceptor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Slack's and Teams' HTTPS endpoints answered on loopback: apprise's plug-ins, unchanged, post to their real
    URLs through the proxy (HTTPS_PROXY), verifying its certificates against the test's CA (REQUESTS_CA_BUNDLE)."""
    started = HttpsInterceptor(tmp_path / "ca.pem").start()
    for name in ("NO_PROXY", "no_proxy", "https_proxy", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{started.port}")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(started.ca_file))
    yield started
    started.stop()


def test_apprises_slack_and_teams_plugins_post_the_alert_to_their_webhooks(
    tmp_path: Path, interceptor: HttpsInterceptor
) -> None:
    slack = f"slack://{SLACK_TOKENS}"
    teams = f"workflows://{TEAMS_HOST}:443/{TEAMS_WORKFLOW}/{TEAMS_SIGNATURE}"
    sink = open_sink(tmp_path, [slack, teams])
    try:
        sink.handle(failed_run(1, "nightly-7"))
        interceptor.wait_for(lambda items: len(items) == 2, "the Slack and Teams posts")
    finally:
        sink.close()
    by_host = {host: (path, json.loads(body)) for host, path, body in interceptor.items}
    path, posted = by_host["hooks.slack.com"]  # an incoming webhook: https://hooks.slack.com/services/<tokens>
    assert path == f"/services/{SLACK_TOKENS}"
    [attachment] = posted["attachments"]
    assert attachment["title"] == "[error] run nightly-7 ended FAILED"
    assert "run: nightly-7 (name of nightly-7)" in attachment["text"]
    assert "failed task: t7 (pytest): Timeout suite took 3 h" in attachment["text"]
    path, posted = by_host[TEAMS_HOST]  # a Power Automate workflow's trigger, posted an Adaptive Card
    assert path.startswith(f"/workflows/{TEAMS_WORKFLOW}/triggers/manual/paths/invoke?")
    assert parse_qs(path.partition("?")[2])["sig"] == [TEAMS_SIGNATURE]
    [card] = posted["attachments"]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    texts = {block["id"]: block["text"] for block in card["content"]["body"] if block["type"] == "TextBlock"}
    assert texts["title"] == "[error] run nightly-7 ended FAILED"
    assert "failed task: t7 (pytest): Timeout suite took 3 h" in texts["body"]
