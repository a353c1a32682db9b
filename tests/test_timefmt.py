from __future__ import annotations

from datetime import UTC, datetime

import pytest
from orchestrator_monitor.timefmt import format_timestamp, parse_timestamp

EXPECTED = datetime(2026, 11, 24, 6, 48, 28, 745000, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-24 06:48:28.745",
        "2026-11-24T06:48:28.745",
        "2026-11-24T06:48:28.745Z",
        "2026-11-24T06:48:28.745000+00:00",
        "2026-11-24 06:48:28.745000",
        "2026-11-24T06:48:28.745000+00:00Z",  # the uet engine: isoformat() of an aware time, then "Z"
        "2026-11-24T06:48:28.745000+0000",
        "2026-11-24T06:48:28.745000123Z",  # nanoseconds: cut to microseconds
    ],
)
def test_every_accepted_shape_reads_as_utc(text: str) -> None:
    assert parse_timestamp(text) == EXPECTED


@pytest.mark.parametrize(
    "value", [None, "", "yesterday", "2026-13-45 00:00:00", "2026-11-24T06:48:28+02:00", 17, "2026-11-24T06:48:28ZZ"]
)
def test_unreadable_values_give_none_not_an_exception(value: object) -> None:
    assert parse_timestamp(value) is None


@pytest.mark.parametrize(
    "text",
    [
        "2026-W48-1T06:48:28",  # a week date
        "2026-11-24x06:48:28",  # another separator
        "2026-11-24T06:48:28,745000",  # a decimal comma
        "2026-11-24T06:48:28.745000+01:00",
        "2026-11-24T06:48:28-00:00",
        "2026-11-24T06:48+01:00",  # no seconds
        "2026-11-24T06:48:28.7450001234Z",  # more than nine digits
        "\uff12\uff10\uff12\uff16-11-24T06:48:28",  # digits that are not ASCII
    ],
)
def test_what_fromisoformat_reads_but_the_spec_does_not_accept_stays_unreadable(text: str) -> None:
    assert parse_timestamp(text) is None


def test_what_the_monitor_writes_it_reads_back() -> None:
    assert parse_timestamp(format_timestamp(EXPECTED)) == EXPECTED
