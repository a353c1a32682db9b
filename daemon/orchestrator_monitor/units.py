"""Sizes and durations as people read them in tables ("1.2 GiB", "3m05s"); `--json` keeps exact numbers."""

from __future__ import annotations

_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def format_bytes(count: float | None) -> str:
    """Binary units with three significant digits: 512 B, 1.50 KiB, 75.2 GiB."""
    if count is None:
        return "-"
    if abs(count) < 1024:
        return f"{int(count)} B"
    value = float(count)
    for unit in _BYTE_UNITS[1:-1]:
        value /= 1024
        if abs(value) < 1024:
            return f"{_three_digits(value)} {unit}"
    return f"{_three_digits(value / 1024)} {_BYTE_UNITS[-1]}"


def _three_digits(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def format_duration(seconds: float | None) -> str:
    """Compact durations for a table column: 0.42s, 42s, 3m05s, 2h10m, 4d03h."""
    if seconds is None:
        return "-"
    if seconds < 10 and seconds != int(seconds):
        return f"{seconds:.2g}s" if seconds < 1 else f"{seconds:.1f}s"
    total = int(seconds)
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    if total < 86400:
        return f"{total // 3600}h{total % 3600 // 60:02d}m"
    return f"{total // 86400}d{total % 86400 // 3600:02d}h"
