"""The pure choices of offload: which bags, in which order, locked until when; and the pace."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from orchestrator_monitor.offload.choose import BagFile, bags_to_send, retain_until, upload_stages
from orchestrator_monitor.offload.pacing import OffloadStopped, TokenBucket


@dataclass(frozen=True)
class Bag:
    run_id: str
    archived_at: str
    verify_result: str | None = None


def test_the_oldest_sound_bags_go_first_up_to_the_limit() -> None:
    bags = [Bag("c", "2026-03"), Bag("a", "2026-01", "corrupt"), Bag("b", "2026-02", "ok"), Bag("d", "2026-02")]
    assert [b.run_id for b in bags_to_send(bags, 10)] == ["b", "d", "c"]  # never the corrupt one
    assert [b.run_id for b in bags_to_send(bags, 2)] == ["b", "d"]


def test_the_tag_manifest_goes_alone_after_everything_else() -> None:
    files = [
        BagFile(p, "0" * 64, 1)
        for p in ("tagmanifest-sha256.txt", "bag-info.txt", "data/b", "manifest-sha256.txt", "data/a")
    ]
    stages = [[f.path for f in stage] for stage in upload_stages(files)]
    assert stages == [["data/a", "data/b"], ["bag-info.txt", "manifest-sha256.txt"], ["tagmanifest-sha256.txt"]]


def test_retain_until_is_the_lock_days_after_the_upload() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    assert retain_until(now, 90) == now + timedelta(days=90)
    assert retain_until(now, None) is None


def test_the_bucket_holds_the_rate_and_a_stop_ends_a_wait() -> None:
    clock, waits = [0.0], []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        clock[0] += seconds
        return False

    bucket = TokenBucket(1000, threading.Event(), clock=lambda: clock[0], wait=wait)
    for _ in range(5):
        bucket.take(1000)
    assert sum(waits) == pytest.approx(4.0)  # one second's burst, then 1000 bytes a second
    assert clock[0] == pytest.approx(4.0)
    stop = threading.Event()
    stopped = TokenBucket(1, stop, wait=stop.wait)
    stop.set()
    with pytest.raises(OffloadStopped):
        stopped.take(10)
