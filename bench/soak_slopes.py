"""The RSS slope of a finished soak over any stretch of it, read back from its `soak.csv`.

bench/soak.py prints the slope after its warm-up; this prints it for the minutes asked, with
the same three estimates (least squares, Theil-Sen, the least-squares standard error), so a
long soak can be read by window (README, "Reliability": minutes 10-40 of the two-hour soak).

    .venv/bin/python bench/soak_slopes.py bench/out/soak-<time> 10 40 10 120 5 30
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

from soak import median_slope_per_hour, slope_error_per_hour, slope_per_hour


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("out", type=Path, help="a soak's --out folder (its soak.csv)")
    parser.add_argument("minutes", type=float, nargs="+", help="pairs of minutes: from to [from to ...]")
    args = parser.parse_args(argv)
    if len(args.minutes) % 2:
        parser.error("minutes come in pairs: from to")
    with open(args.out / "soak.csv", newline="") as handle:
        rss = [(float(row["elapsed_s"]), float(row["rss_mb"])) for row in csv.DictReader(handle)]
    for start, end in zip(args.minutes[::2], args.minutes[1::2], strict=True):
        points = [(t, mb) for t, mb in rss if start * 60 <= t <= end * 60]
        slope, median, error = slope_per_hour(points), median_slope_per_hour(points), slope_error_per_hour(points)
        shown = "-" if slope is None else f"{slope:+.2f} MB/hour"
        extra = "" if median is None or error is None else f" (Theil-Sen {median:+.2f}, standard error {error:.2f})"
        print(f"minutes {start:g}-{end:g}: {len(points)} samples, RSS slope {shown}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
