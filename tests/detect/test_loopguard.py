from __future__ import annotations

from orchestrator_monitor.detect.loopguard import GuardChange, LoopGuard


def test_a_sustained_storm_of_spurious_wakeups_enters_and_calm_exits() -> None:
    guard = LoopGuard(max_per_second=10, window_seconds=5, calm_seconds=20)
    changes = [guard.observe(t / 10, spurious=3) for t in range(0, 60)]  # 30 per second for 6 s
    assert changes.count(GuardChange.ENTERED) == 1
    assert guard.storm
    later = [guard.observe(6 + t, spurious=0) for t in range(0, 40)]
    assert later.count(GuardChange.EXITED) == 1
    assert not guard.storm


def test_a_short_burst_is_not_a_loop() -> None:
    guard = LoopGuard(max_per_second=10, window_seconds=5, calm_seconds=20)
    assert {guard.observe(t / 100, spurious=50) for t in range(0, 10)} == {None}  # 0.1 s of noise
    assert {guard.observe(0.1 + t, spurious=0) for t in range(0, 30)} == {None}
    assert not guard.storm


def test_real_changes_never_count() -> None:
    guard = LoopGuard(max_per_second=1, window_seconds=1, calm_seconds=1)
    assert {guard.observe(t / 100, spurious=0) for t in range(0, 1000)} == {None}
