"""The shared outbox (alerts' and OpenLineage's): a row per key kept until its destination took it, retried with
backoff, one key's rows in the order they were added, what was given up tried again at the next start."""

from __future__ import annotations

import threading
from pathlib import Path

from orchestrator_monitor.config import OpenLineageSettings
from orchestrator_monitor.events.outbox import Attempt, Outbox, OutboxDelivery, Pending, retry_delay

POLICY = OpenLineageSettings(retry_seconds=0.05, max_retry_seconds=0.2, max_attempts=4)


class Endpoint(OutboxDelivery):
    """Sends by remembering; refuses every row whose key is in `down`."""

    def __init__(self, outbox: Outbox, *, down: set[str]) -> None:
        super().__init__(outbox, POLICY, name="test")
        self.down = down
        self.got: list[str] = []
        self.changed = threading.Condition()

    def describe(self, row: Pending) -> str:
        """Asked for the log line once a failure is recorded: a moment to look at the outbox again."""
        with self.changed:
            self.changed.notify_all()
        return f"row {row.key}"

    def send(self, row: Pending) -> Attempt:
        if row.key in self.down:
            raise ConnectionError("down")
        with self.changed:
            self.got.append(row.key)
            self.changed.notify_all()
        return Attempt.SENT

    def wait_for(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.got) >= count, 20), self.got


def open_outbox(path: Path) -> Outbox:
    return Outbox(path, table="test_outbox", payload=("run_id",), in_order_of="run_id", busy_timeout_seconds=5)


def put(outbox: Outbox, key: str, run_id: str) -> None:
    outbox.add(key, ("d",), {"run_id": run_id}, due=0.0, keep_seconds=60)


def test_the_backoff_doubles_up_to_its_maximum_then_gives_up() -> None:
    assert [retry_delay(POLICY, attempts) for attempts in range(1, 5)] == [0.05, 0.1, 0.2, None]


def test_a_key_waits_for_its_earlier_rows_while_other_keys_go_and_nothing_goes_twice(tmp_path: Path) -> None:
    outbox = open_outbox(tmp_path / "monitor.db")
    endpoint = Endpoint(outbox, down={"r1:START"})
    for key, run_id in (("r1:START", "r1"), ("r1:END", "r1"), ("r2:START", "r2"), ("r2:END", "r2")):
        put(outbox, key, run_id)
    put(outbox, "r2:END", "r2")  # added again (a replay): ignored
    endpoint.start()
    endpoint.wait_for(2)
    assert endpoint.got == ["r2:START", "r2:END"]  # r1's END waits behind its START
    with endpoint.changed:
        assert endpoint.changed.wait_for(lambda: outbox.counts()["undeliverable"] == 1, 20)
    assert outbox.counts() == {"pending": 2, "undeliverable": 1}  # START given up; END behind it, not tried
    endpoint.close(5)
    outbox.close()

    again = open_outbox(tmp_path / "monitor.db")  # the next start tries the given-up row again
    restarted = Endpoint(again, down=set())
    restarted.start()
    restarted.wait_for(2)
    restarted.close(5)
    assert restarted.got == ["r1:START", "r1:END"]
    assert again.counts() == {"pending": 0, "undeliverable": 0}
    again.close()
