"""``lomsong serve`` with a thread that writes down the process's memory every few seconds.

::

    python -m bench.memory_serve SAMPLES [--every S] [--tracemalloc FRAMES] [--snapshots DIR]

The collector is the real one (``lomsong.cli.main(["serve"])``, settings from the environment);
beside it a daemon thread appends one JSON line to SAMPLES every ``--every`` seconds:

- ``t``, ``wall``: seconds since the thread started, and the wall clock;
- ``rss``: resident set size, from ``/proc/self/statm``;
- ``py_blocks``: memory blocks Python's allocator hands out (``sys.getallocatedblocks``);
- ``malloc_used``, ``malloc_free``, ``malloc_mmap``: glibc's ``mallinfo2`` (bytes in use in its
  arenas, bytes free in them but still held, bytes in its own mmaps): RSS above what is in use
  is the allocator's, not a structure's;
- ``traced``: bytes tracemalloc sees allocated, with ``--tracemalloc`` (it slows the process
  down by half or more, so the benchmark leaves it off).

With ``--snapshots`` every sample also dumps a tracemalloc snapshot there, for
``python -m bench.memory_diff``.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import ctypes.util
import os
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import orjson

_PAGE = os.sysconf("SC_PAGE_SIZE")


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mallinfo() -> dict[str, int]:
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    fn = getattr(libc, "mallinfo2", None)
    if fn is None:
        return {}
    fn.restype = _Mallinfo2
    m = fn()
    return {"malloc_used": m.uordblks, "malloc_free": m.fordblks, "malloc_mmap": m.hblkhd}


def rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as fh:
        return int(fh.read().split()[1]) * _PAGE


def census(top: int = 12) -> dict[str, int]:
    """Objects the garbage collector tracks, by type, the most numerous first."""
    import gc

    counts = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    return dict(counts.most_common(top))


def _sampler(path: Path, every: float, snapshots: Path | None, census_every: int) -> None:
    t0 = time.monotonic()
    n = 0
    with path.open("ab") as fh:
        while True:
            sample: dict[str, float] = {
                "t": time.monotonic() - t0,
                "wall": time.time(),
                "rss": rss_bytes(),
                "py_blocks": sys.getallocatedblocks(),
                **_mallinfo(),
            }
            if tracemalloc.is_tracing():
                sample["traced"] = tracemalloc.get_traced_memory()[0]
                if snapshots is not None and n % 6 == 0:  # every 30 s: a snapshot takes seconds
                    tracemalloc.take_snapshot().dump(str(snapshots / f"snap-{n:04d}.pickle"))
            line: dict[str, object] = dict(sample)
            if census_every and n % census_every == 0:
                line["census"] = census()
            fh.write(orjson.dumps(line) + b"\n")
            fh.flush()
            n += 1
            time.sleep(every)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory_serve")
    parser.add_argument("samples", type=Path)
    parser.add_argument("--every", type=float, default=5.0)
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES")
    parser.add_argument("--snapshots", type=Path)
    parser.add_argument(
        "--census", type=int, default=0, metavar="N", help="count objects by type every N samples"
    )
    args = parser.parse_args(argv)
    if args.tracemalloc:
        tracemalloc.start(args.tracemalloc)
    snapshots = args.snapshots if args.tracemalloc else None
    if snapshots is not None:
        snapshots.mkdir(parents=True, exist_ok=True)
    threading.Thread(
        target=_sampler, args=(args.samples, args.every, snapshots, args.census), daemon=True
    ).start()
    from lomsong.cli import main as lomsong_main

    lomsong_main(["serve"])


if __name__ == "__main__":
    main(sys.argv[1:])
