"""What grew in the collector between two tracemalloc snapshots of ``bench.memory_serve``.

::

    python -m bench.memory_diff DIR [--top N] [--frames N]

Compares the snapshot taken at the middle of the run with the last one (the first minutes fill
what is meant to fill) and prints the tracebacks whose memory grew most, with sizes and counts.
"""

from __future__ import annotations

import argparse
import sys
import tracemalloc
from pathlib import Path

MB = 2**20


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory_diff")
    parser.add_argument("dir", type=Path)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--first", type=int, help="index of the earlier snapshot (the middle)")
    args = parser.parse_args(argv)
    paths = sorted(args.dir.glob("snap-*.pickle"))
    first = paths[args.first if args.first is not None else len(paths) // 2]
    last = paths[-1]
    ignore = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    ]
    old = tracemalloc.Snapshot.load(str(first)).filter_traces(ignore)
    new = tracemalloc.Snapshot.load(str(last)).filter_traces(ignore)
    old_total = sum(s.size for s in old.statistics("filename"))
    new_total = sum(s.size for s in new.statistics("filename"))
    print(f"{first.name}: {old_total / MB:.1f} MB traced; {last.name}: {new_total / MB:.1f} MB")
    for stat in new.compare_to(old, "traceback")[: args.top]:
        print(
            f"\n{stat.size_diff / MB:+8.2f} MB ({stat.count_diff:+,} blocks), "
            f"now {stat.size / MB:.2f} MB in {stat.count:,} blocks"
        )
        for frame in stat.traceback.format(limit=args.frames, most_recent_first=True):
            print(f"    {frame}")
    print("\nnow, by line:")
    for stat in new.statistics("lineno")[: args.top]:
        print(f"{stat.size / MB:8.2f} MB {stat.count:>9,}  {stat.traceback[0]}")


if __name__ == "__main__":
    main(sys.argv[1:])
