"""The collector's memory under a national load: it must level off, not climb.

``lomsong serve`` runs in its own process on a fresh SQLite file (synchronous=FULL) with a
probe registered at every one of the 3,321 bundled communes, four uplinks each; a load process
plays all of them (``memory_load``) at 4× the national rate (a round of 21 results every 7.5 s,
a batch every 10 s: 332 requests and 9,300 results a second) for 10 minutes, while a
thread inside the collector (``memory_serve``) writes its RSS down every 5 seconds.

Target: from minute 5 on, RSS stays within 10 % of its value at minute 5. The first minutes
fill what is meant to fill (every probe's live state, the detector's 5-minute quality windows,
SQLite's page caches); after that a collector that keeps what it has consumed climbs for as
long as it runs.

Figures: RSS at minute 1, at the middle and at the end, the largest deviation in the second
half; beside RSS, what Python's allocator hands out (blocks) and glibc's ``mallinfo2`` (bytes
in use and bytes free but held), which tell a structure that grows from an allocator that keeps
memory; the load's requests, results, failures and latency.

::

    python -m bench memory                    # the full 10 minutes
    python -m bench memory --minutes 2        # a short look: the same target on half of it
    python -m bench memory --minutes 3 --tracemalloc 10 --snapshots /tmp/snaps
                                              # then: python -m bench.memory_diff /tmp/snaps
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.ingest_http import serve
from bench.ingest_sqlite import migrated
from bench.memory_load import FleetSpec, register_fleet, run_fleet
from bench.report import Outcome, check, heading, line, percentile

NAME = "memory"
MINUTES = 10.0
RATE = 4.0
SAMPLE_SECONDS = 5.0
TARGET_DEVIATION = 0.10
MB = 2**20


def _options(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench memory")
    parser.add_argument("--minutes", type=float, default=MINUTES, help="length of the run")
    parser.add_argument("--rate", type=float, default=RATE, help="times the national rate")
    parser.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="FRAMES",
        help="trace the collector's allocations (slows it down by half or more)",
    )
    parser.add_argument("--snapshots", type=Path, help="dump tracemalloc snapshots here")
    parser.add_argument(
        "--census",
        action="store_true",
        help="count the collector's objects by type every minute and print the growth",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[Outcome]:
    opts = _options(argv or [])
    seconds = opts.minutes * 60
    heading(
        f"{NAME}: lomsong serve (SQLite) <- 3,321 probes at {opts.rate:g}x the national rate, "
        f"{opts.minutes:g} min"
    )
    line(
        f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
        f"on {os.cpu_count()} cores"
    )
    with tempfile.TemporaryDirectory(prefix="lomsong-bench-") as tmp_name:
        tmp = Path(tmp_name)
        db = tmp / "memory.db"
        engine = migrated(db)
        try:
            fleet = register_fleet(engine, time.time())
        finally:
            engine.dispose()
        samples = tmp / "samples.jsonl"
        command = [
            sys.executable,
            "-m",
            "bench.memory_serve",
            str(samples),
            "--every",
            str(SAMPLE_SECONDS),
        ]
        if opts.tracemalloc:
            command += ["--tracemalloc", str(opts.tracemalloc)]
            if opts.snapshots:
                command += ["--snapshots", str(opts.snapshots)]
        if opts.census:
            command += ["--census", str(round(60 / SAMPLE_SECONDS))]
        with serve(db, tmp / "serve.log", command) as server:
            began = time.monotonic()
            began_wall = time.time()
            result = run_fleet(
                FleetSpec(
                    server.url,
                    tuple(fleet.items()),
                    opts.rate,
                    seconds,
                )
            )
            elapsed = time.monotonic() - began
        rows = [orjson.loads(x) for x in samples.read_bytes().splitlines()]
        if not rows:
            raise RuntimeError(f"the collector wrote no samples; see {tmp / 'serve.log'}")
        # from the start of the load, which begins once the collector answers
        for r in rows:
            r["t"] = r["wall"] - began_wall
        rows = [r for r in rows if 0 <= r["t"] <= seconds + SAMPLE_SECONDS]

    line(
        f"load: {result.requests:,} requests ({result.requests / elapsed:,.0f}/s), "
        f"{result.accepted:,} results stored ({result.accepted / elapsed:,.0f}/s), "
        f"{result.duplicates:,} duplicates, {result.failures:,} failures"
        + (f" (first: {result.failure_sample})" if result.failures else "")
    )
    line(
        f"latency p50 {percentile(result.latencies, 0.5) * 1000:.0f} ms, "
        f"p99 {percentile(result.latencies, 0.99) * 1000:.0f} ms; "
        f"{result.late:,} batches a whole interval late; "
        f"load process CPU {result.load_cpu_seconds / elapsed:.0%} of a core"
    )
    if opts.census:
        _print_census(rows)
    return _report(rows, seconds)


def _print_census(rows: list[dict[str, Any]]) -> None:
    counted = [r for r in rows if "census" in r]
    heading("objects by type, each minute (gc.get_objects)")
    names = sorted(
        {n for r in counted for n in r["census"]}, key=lambda n: -counted[-1]["census"].get(n, 0)
    )
    for name in names:
        line(f"{name:>28}: " + " ".join(f"{r['census'].get(name, 0):>9,}" for r in counted))


def _at(rows: list[dict[str, float]], t: float) -> dict[str, float]:
    return min(rows, key=lambda r: abs(r["t"] - t))


def _describe(label: str, r: dict[str, float]) -> str:
    text = (
        f"{label:>9} (t={r['t']:5.0f} s): RSS {r['rss'] / MB:6.1f} MB, "
        f"Python blocks {r['py_blocks'] / 1e6:5.2f} M"
    )
    if "malloc_used" in r:
        text += (
            f", malloc in use {r['malloc_used'] / MB:5.1f} MB, "
            f"free but held {r['malloc_free'] / MB:5.1f} MB"
        )
    if "traced" in r:
        text += f", tracemalloc {r['traced'] / MB:5.1f} MB"
    return text


def _report(rows: list[dict[str, float]], seconds: float) -> list[Outcome]:
    middle = seconds / 2
    first = _at(rows, min(60.0, middle))
    mid = _at(rows, middle)
    end = rows[-1]
    heading("RSS of the collector")
    line(_describe("start", rows[0]))
    line(_describe(f"minute {first['t'] / 60:.0f}", first))
    line(_describe(f"minute {middle / 60:g}", mid))
    line(_describe("end", end))
    per_minute = [_at(rows, 60.0 * m) for m in range(int(seconds // 60) + 1)]
    line("RSS each minute (MB): " + " ".join(f"{r['rss'] / MB:.0f}" for r in per_minute))
    second_half = [r for r in rows if r["t"] >= mid["t"]]
    low = min(r["rss"] for r in second_half)
    high = max(r["rss"] for r in second_half)
    deviation = max(high - mid["rss"], mid["rss"] - low) / mid["rss"]
    line(
        f"second half: RSS {low / MB:.1f} to {high / MB:.1f} MB; "
        f"end - middle {(end['rss'] - mid['rss']) / MB:+.1f} MB"
    )
    return [
        check(
            NAME,
            f"RSS deviation after minute {middle / 60:g}",
            f"{deviation:.1%}",
            f"<= {TARGET_DEVIATION:.0%} of minute {middle / 60:g}",
            deviation <= TARGET_DEVIATION,
        )
    ]


if __name__ == "__main__":
    main(sys.argv[1:])
