"""Human sizes and durations for tables."""

from __future__ import annotations

from orchestrator_monitor.units import format_bytes, format_duration


def test_sizes_in_binary_units_with_three_digits() -> None:
    cases = {0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 80712028160: "75.2 GiB", 1000 * 1024**2: "1000 MiB"}
    assert {n: format_bytes(n) for n in cases} == cases
    assert format_bytes(None) == "-" and format_bytes(3 * 1024**6).endswith("PiB")


def test_durations_compact_and_exact_below_ten_seconds() -> None:
    cases = {0.42: "0.42s", 6.768833: "6.8s", 42: "42s", 185: "3m05s", 7800: "2h10m", 400000: "4d15h"}
    assert {s: format_duration(s) for s in cases} == cases
    assert format_duration(None) == "-"
