"""A streak of like failures is news once, and again when the error changes or after a success."""

from __future__ import annotations

from orchestrator_monitor.streaks import Streak


def test_a_streak_of_like_failures_is_news_once() -> None:
    streak = Streak()
    assert [streak.news(error) for error in ("refused", "refused", "refused")] == [True, False, False]


def test_a_different_error_is_news_and_a_success_ends_the_streak() -> None:
    streak = Streak()
    assert streak.ended() == 0
    assert [streak.news(error) for error in ("refused", "starting up", "starting up")] == [True, True, False]
    assert streak.ended() == 3
    assert streak.news("starting up")
