"""Which of jemalloc's size classes hold the pages a soak's RSS grew by: two of the daemon's reports compared.

`bench/soak.py --memory-detail` leaves `jemalloc-<seconds>.json` in its `trace/` folder every 5 minutes
(`malloc_stats_print`, the merged arena). For each small size class: regions in use, slabs, and the bytes of
those slabs no region fills (fragmentation); then the large extents, the thread caches and the dirty pages.
A size class whose slabs grow while its regions do not is where long-lived blocks are scattered.

    python bench/jemalloc_bins.py DIR            # the first and the last report in DIR
    python bench/jemalloc_bins.py FIRST LAST     # two reports
"""

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def load(path: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(path.read_bytes())["jemalloc"]
    return report


def bins(report: dict[str, Any]) -> list[tuple[int, int, int]]:
    """(region size, bytes in regions in use, bytes of slabs) for each small size class."""
    classes, merged = report["arenas"]["bin"], report["stats.arenas"]["merged"]["bins"]
    pairs = zip(classes, merged, strict=True)
    return [(c["size"], b["curregs"] * c["size"], b["curslabs"] * c["slab_size"]) for c, b in pairs]


def totals(report: dict[str, Any]) -> dict[str, float]:
    """The merged arena's totals in MB: small and large bytes held, active and dirty pages, thread caches."""
    merged, page = report["stats.arenas"]["merged"], report["arenas"]["page"]
    sizes = [c["size"] for c in report["arenas"]["lextent"]]
    large_held = sum(size * e["curlextents"] for size, e in zip(sizes, merged["lextents"], strict=True))
    small = bins(report)
    slabs = sum(slab for _, _, slab in small)
    used = sum(held for _, held, _ in small)
    return {
        "small: regions in use": used / 1e6,
        "small: slabs": slabs / 1e6,
        "small: slab bytes unused": (slabs - used) / 1e6,
        "large: extents in use": large_held / 1e6,
        "active pages": merged["pactive"] * page / 1e6,
        "dirty pages": merged["pdirty"] * page / 1e6,
        "thread caches": merged["tcache_bytes"] / 1e6,
        "threads": merged["nthreads"],
    }


def compare(first: Path, last: Path, top: int) -> None:
    old, new = load(first), load(last)
    print(f"== jemalloc: {first.name} -> {last.name}")
    for (name, before), after in zip(totals(old).items(), totals(new).values(), strict=True):
        print(f"   {name:<26} {before:>9.2f} -> {after:>9.2f}  ({after - before:+.2f})")
    changes = [
        (size, held_b, slabs_b, held_a, slabs_a)
        for (size, held_b, slabs_b), (_, held_a, slabs_a) in zip(bins(old), bins(new), strict=True)
    ]
    changes.sort(key=lambda c: (c[4] - c[3]) - (c[2] - c[1]), reverse=True)
    print(f"\n   the {top} size classes whose unused slab bytes grew most (kB)")
    print(f"   {'size':>6} {'in use':>16} {'slabs':>16} {'unused':>16}")
    for size, held_b, slabs_b, held_a, slabs_a in changes[:top]:
        print(
            f"   {size:>6} {held_b / 1e3:>7.0f} -> {held_a / 1e3:<6.0f} {slabs_b / 1e3:>7.0f} -> {slabs_a / 1e3:<6.0f}"
            f" {(slabs_b - held_b) / 1e3:>7.0f} -> {(slabs_a - held_a) / 1e3:<6.0f}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="a folder of reports, or two reports")
    parser.add_argument("--top", type=int, default=12, help="size classes shown")
    args = parser.parse_args(argv)
    if len(args.paths) == 1:
        reports = sorted(args.paths[0].glob("jemalloc-*.json"))
        if len(reports) < 2:
            parser.error(f"{len(reports)} jemalloc-*.json reports in {args.paths[0]}: two are needed")
        first, last = reports[0], reports[-1]
    elif len(args.paths) == 2:
        first, last = args.paths
    else:
        parser.error("one folder or two reports")
    compare(first, last, args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
