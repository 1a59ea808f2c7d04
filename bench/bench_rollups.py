"""Rollups: what they cost ingest, how fast a chart reads them, what they take on disk, and how
close their percentiles come to the exact ones.

1. HTTP ingest (``bench/ingest_http.py``: ``lomsong serve`` on SQLite, 16 uploaders in another
   process) with ``rollups.enabled`` off and on, in alternating rounds; then the same rows at
   ``ReportStore.write`` in process, off and on, where the HTTP stack does not hide the cost.
2. One centre's 30-day chart (``collector/history.series``: one check, 720 hourly points) on
   a file with a province's 56 centres of hourly rollups and the centre's 30 days at every
   level; median of 30 queries. Beside it, every check of the centre in one ``probe_series``.
3. Storage per centre-year of rollups: one synthetic day of a centre (20 checks every 30 s)
   folded, written for 30 days, measured with SQLite's ``dbstat`` and scaled to a year.
4. Percentiles from the histogram beside numpy's exact ones (nearest rank) on the same samples:
   every 5-minute bucket of that day, the day merged, and a million samples.
"""

from __future__ import annotations

import os
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.ingest_http import LoadResult, LoadSpec, run_load, serve
from bench.ingest_sqlite import fresh_database, migrated, sqlite_url
from bench.report import Outcome, check, heading, line, percentile
from bench.workload import BATCH, interleaved
from lomsong.collector.history import probe_series, series
from lomsong.collector.store import ReportStore
from lomsong.storage import latency_bins
from lomsong.storage.database import open_engine
from lomsong.storage.rollups import (
    KEY_COLUMNS,
    LEVELS,
    VALUE_COLUMNS,
    Folded,
    Rollup,
    derive_marked,
    fold,
)

NAME = "rollups"
N_PROBES = 16
WARMUP_SECONDS = 2.0
SECONDS = 8.0
SERVER_ENV = {
    "LOMSONG_INGEST__RATE_PER_PROBE": "10000",
    "LOMSONG_INGEST__RATE_BURST": "100000",
    "LOMSONG_ROLLUPS__DERIVE_EVERY_SECONDS": "2",
}
STORE_GROUPS = 40
#: Rounds of the same setting on this 2-core machine differ by up to a third (the load
#: generator shares the cores): eight rounds, in pairs, so that a slow minute weighs on both.
ROUNDS = ("off", "on", "on", "off", "off", "on", "on", "off")
CHART_DAYS = 30
PROVINCE_CENTRES = 56
CHART_QUERIES = 30

TARGET_SHARE = 0.90
TARGET_P99 = 0.250
TARGET_CHART = 0.050

#: A centre as the README's example: four uplinks, icmp/tcp/http/dns on each, the modem of
#: each 4G uplink, a heartbeat; every 30 s.
UPLINKS = ("viettel-4g", "vinaphone-4g", "mobifone-4g", "fibre")
CHECKS = ("icmp", "tcp", "http", "dns")
#: median latency (s) of each kind on 4G; fibre is a third of it
MEDIAN = {"icmp": 0.045, "tcp": 0.06, "http": 0.35, "dns": 0.05}


def main() -> list[Outcome]:
    heading(f"{NAME}: cost on ingest, chart query, storage, percentile error")
    line(
        f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
        f"on {os.cpu_count()} cores"
    )
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="lomsong-bench-rollups-") as tmp_name:
        tmp = Path(tmp_name)
        outcomes += _http(tmp)
        _store(tmp)
        samples, day = _centre_day()
        outcomes += _chart(tmp, day)
        _storage(tmp, day)
        outcomes += _percentiles(samples, day)
    return outcomes


# -- 1. ingest -----------------------------------------------------------------------------------


def _one_run(tmp: Path, tag: str, enabled: bool) -> LoadResult:
    db = tmp / f"http-{tag}.db"
    tokens = fresh_database(db, N_PROBES)
    env = {**SERVER_ENV, "LOMSONG_ROLLUPS__ENABLED": "true" if enabled else "false"}
    # the leader derives hourly and daily rows every 2 s, not 10: four or five derivations
    # fall in the measured window, so their cost is in the figure
    with serve(db, tmp / f"serve-{tag}.log", **env) as server:
        r = run_load(
            LoadSpec(server.url, server.pid, tuple(tokens.items()), WARMUP_SECONDS, SECONDS)
        )
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT count(*) FROM results").fetchone()[0]
        counted = [
            con.execute(f"SELECT coalesce(sum(runs), 0) FROM {lv.table.name}").fetchone()[0]
            for lv in LEVELS
        ]
        left = [
            con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("rollup_pending", "rollup_marks")
        ]
    finally:
        con.close()
    want = [rows] * 3 if enabled else [0, 0, 0]
    line(
        f"rollups {'on ' if enabled else 'off'}: {r.results / r.window_seconds:,.0f} results/s, "
        f"p50 {percentile(r.latencies, 0.5) * 1e3:.0f} ms, "
        f"p99 {percentile(r.latencies, 0.99) * 1e3:.0f} ms, {r.errors} errors; {rows:,} rows, "
        f"runs in 5m/1h/1d rollups {'/'.join(f'{c:,}' for c in counted)} "
        f"{'ok' if counted == want else 'MISMATCH'}"
        + ("" if left == [0, 0] else f" ({left[0]} ranges, {left[1]} marks left)")
    )
    if counted != want:
        keep = Path(tempfile.gettempdir()) / f"lomsong-bench-rollups-serve-{tag}.log"
        keep.write_bytes((tmp / f"serve-{tag}.log").read_bytes())
        line(f"the collector's log: {keep}")
    return r


def _http(tmp: Path) -> list[Outcome]:
    heading(f"1. HTTP ingest, rollups off and on (alternating rounds: {', '.join(ROUNDS)})")
    runs: dict[bool, list[LoadResult]] = {False: [], True: []}
    for i, enabled in enumerate(r == "on" for r in ROUNDS):
        runs[enabled].append(_one_run(tmp, f"{i}", enabled))

    def rate(rs: list[LoadResult]) -> float:
        return sum(r.results for r in rs) / sum(r.window_seconds for r in rs)

    off, on = rate(runs[False]), rate(runs[True])
    p99 = percentile(sorted(x for r in runs[True] for x in r.latencies), 0.99)
    line(f"on / off: {on:,.0f} / {off:,.0f} results/s = {on / off:.1%}")
    return [
        check(
            NAME,
            "HTTP ingest, rollups on / off",
            f"{on / off:.0%} ({on:,.0f} / {off:,.0f})",
            f">= {TARGET_SHARE:.0%}",
            on / off >= TARGET_SHARE,
        ),
        check(
            NAME,
            "HTTP p99 with rollups on",
            f"{p99 * 1e3:.0f} ms",
            f"< {TARGET_P99 * 1e3:.0f} ms",
            p99 < TARGET_P99,
        ),
    ]


def _store(tmp: Path) -> None:
    heading(
        "1b. ReportStore.write in process, groups of 16 batches of 100, and with rollups on "
        "the derivation of the hours marked (diagnostic)"
    )
    rates: dict[bool, list[float]] = {False: [], True: []}
    for rnd in range(2):
        for enabled in (False, True):
            path = tmp / f"store-{rnd}-{enabled}.db"
            probe_ids = list(fresh_database(path, N_PROBES))
            engine = open_engine(sqlite_url(path))
            try:
                store = ReportStore(engine, rollups=enabled)
                batches = interleaved(probe_ids, STORE_GROUPS)
                groups = [batches[i : i + N_PROBES] for i in range(0, len(batches), N_PROBES)]
                start = time.perf_counter()
                for g in groups:
                    store.write(g)
                if enabled:  # and the leader's derivation of the hours marked
                    derive_marked(engine)
                rates[enabled].append(len(batches) * BATCH / (time.perf_counter() - start))
            finally:
                engine.dispose()
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    line(
        f"off {off:,.0f} results/s, on {on:,.0f} results/s: {on / off:.1%} "
        f"(the writer's own cost; over HTTP the event loop is the bound)"
    )


# -- synthetic centre ----------------------------------------------------------------------------


def _centre_day() -> tuple[dict[tuple[str, str, int], list[float]], Folded]:
    """One day of a centre's results, folded; and each check's latencies per 5-minute bucket."""
    rng = random.Random(14)
    day0 = LEVELS[2].bucket(time.time()) - CHART_DAYS * 86_400
    rows: list[dict[str, Any]] = []
    samples: dict[tuple[str, str, int], list[float]] = {}
    for step in range(2880):
        t = day0 + step * 30 + rng.random()
        for up in UPLINKS:
            scale = 1 / 3 if up == "fibre" else 1.0
            for kind in CHECKS:
                ok = rng.random() > 0.01
                d = MEDIAN[kind] * scale * rng.lognormvariate(0, 0.45)
                row: dict[str, Any] = {"probe_id": "centre", "uplink": up, "kind": kind,
                       "target": "dichvucong.gov.vn", "measured_at": t, "ok": ok,
                       "duration_seconds": d}  # fmt: skip
                if kind == "icmp":
                    row |= {"packets_sent": 5, "packets_received": 5 if ok else 0}
                rows.append(row)
                if ok:
                    samples.setdefault((up, kind, int(t // 300 * 300)), []).append(d)
            if up != "fibre":
                rows.append({"probe_id": "centre", "uplink": up, "kind": "modem",
                             "target": "modem0", "measured_at": t, "ok": True,
                             "rsrp_dbm": -95 + rng.gauss(0, 4), "rsrq_db": -11.0, "snr_db": 6.0,
                             "mcc": "452", "mnc": "04", "tac": 13021,
                             "cid": 2_795_021 + (rng.random() < 0.1)})  # fmt: skip
        rows.append({"probe_id": "centre", "uplink": None, "kind": "heartbeat",
                     "target": "self", "measured_at": t, "ok": True})  # fmt: skip
    return samples, fold(rows)


def _days(day: Folded, probe_id: str, days: int, levels: tuple[str, ...]) -> dict[str, list[Any]]:
    """The day's rollups copied onto ``days`` consecutive days, as table rows per level."""
    out: dict[str, list[Any]] = {}
    for name in levels:
        rows = []
        for d in range(days):
            shift = d * 86_400
            for (_, u, k, tg, b), r in day[name].items():
                rows.append((probe_id, u, k, tg, b + shift, *r.params()))
        out[name] = rows
    return out


def _insert(con: sqlite3.Connection, table: str, rows: list[Any]) -> None:
    cols = (*KEY_COLUMNS, *VALUE_COLUMNS)
    con.executemany(
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows
    )


# -- 2. chart ------------------------------------------------------------------------------------


def _chart(tmp: Path, day: Folded) -> list[Outcome]:
    heading(
        f"2. one centre's {CHART_DAYS}-day chart: probe_series, hourly points, every check; "
        f"{PROVINCE_CENTRES} centres' hourly rollups in the file"
    )
    path = tmp / "chart.db"
    engine = migrated(path)
    con = sqlite3.connect(path)
    try:
        with con:
            for name, rows in _days(day, "centre", CHART_DAYS, ("5m", "1h", "1d")).items():
                _insert(con, f"rollup_{name}", rows)
            for c in range(1, PROVINCE_CENTRES):
                _insert(con, "rollup_1h", _days(day, f"centre-{c:02d}", CHART_DAYS, ("1h",))["1h"])
        n = con.execute("SELECT count(*) FROM rollup_1h").fetchone()[0]
    finally:
        con.close()
    since = LEVELS[2].bucket(time.time()) - CHART_DAYS * 86_400
    until = since + CHART_DAYS * 86_400
    one: list[float] = []
    page: list[float] = []
    try:
        for i in range(CHART_QUERIES):
            t0 = time.perf_counter()
            points = series(engine, "centre", "viettel-4g", "icmp", since, until)
            one.append(time.perf_counter() - t0)
            if i % 5 == 0:
                t0 = time.perf_counter()
                charts = probe_series(engine, "centre", since, until)
                page.append(time.perf_counter() - t0)
    finally:
        engine.dispose()
    med = statistics.median(one)
    line(
        f"{n:,} hourly rows in the file; one chart (viettel-4g icmp): {len(points)} points, "
        f"median {med * 1e3:.1f} ms, slowest {max(one) * 1e3:.1f} ms of {CHART_QUERIES}"
    )
    line(
        f"every check of the centre at once ({len(charts)} charts, "
        f"{sum(len(p) for p in charts.values()):,} points): median "
        f"{statistics.median(page) * 1e3:.0f} ms (diagnostic)"
    )
    return [
        check(
            NAME,
            f"one centre's {CHART_DAYS}-day chart query",
            f"{med * 1e3:.1f} ms ({len(points)} hourly points)",
            f"<= {TARGET_CHART * 1e3:.0f} ms",
            med <= TARGET_CHART,
        )
    ]


# -- 3. storage ----------------------------------------------------------------------------------


def _storage(tmp: Path, day: Folded) -> None:
    heading("3. storage of a centre's rollups (20 checks every 30 s), SQLite")
    path = tmp / "storage.db"
    migrated(path).dispose()
    con = sqlite3.connect(path)
    try:
        with con:
            for name, rows in _days(day, "centre", CHART_DAYS, ("5m", "1h", "1d")).items():
                _insert(con, f"rollup_{name}", rows)
        con.execute("VACUUM")
        per_year = 0.0
        for lv in LEVELS:
            t = lv.table.name
            rows = con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            size = _table_bytes(con, t)
            year = size * 365 / CHART_DAYS
            per_year += year
            line(
                f"{t}: {rows:,} rows in {CHART_DAYS} days, {size / rows:.0f} bytes a row, "
                f"{year / 1e6:.1f} MB a centre-year"
            )
        raw = 20 * 2_880 * 365 * 255  # results a year × 255 bytes (issue #14's figure)
        line(
            f"rollups per centre-year: {per_year / 1e6:.1f} MB "
            f"(raw results at 255 bytes each: {raw / 1e9:.1f} GB, {raw / per_year:.0f}x more)"
        )
        line(
            f"kept for good (1h + 1d): "
            f"{sum(_table_bytes(con, t) for t in ('rollup_1h', 'rollup_1d')) * 365 / CHART_DAYS / 1e6:.1f} "  # noqa: E501
            "MB a centre-year"
        )
    finally:
        con.close()


def _table_bytes(con: sqlite3.Connection, table: str) -> int:
    """Pages the table takes (WITHOUT ROWID: its key is the table), from ``dbstat`` when the
    library has it, else the whole file's pages."""
    try:
        got = con.execute("SELECT sum(pgsize) FROM dbstat WHERE name = ?", (table,)).fetchone()
        return int(got[0] or 0)
    except sqlite3.OperationalError:
        return int(con.execute("PRAGMA page_count").fetchone()[0]) * 4096


# -- 4. percentiles ------------------------------------------------------------------------------


def _percentiles(samples: dict[tuple[str, str, int], list[float]], day: Folded) -> list[Outcome]:
    heading("4. percentiles from the histogram beside numpy (nearest rank), same samples")
    qs = (0.05, 0.5, 0.95, 0.99)
    worst = 0.0
    n_buckets = 0
    for (up, kind, start), values in samples.items():
        r = day["5m"][("centre", up, kind, "dichvucong.gov.vn", start)]
        worst = max(worst, _error(r, values, qs))
        n_buckets += 1
    line(f"{n_buckets:,} five-minute buckets: largest relative error {worst:.2%}")
    merged = Rollup()
    every: list[float] = []
    for (up, kind, _), values in samples.items():
        if (up, kind) == ("viettel-4g", "icmp"):
            every += values
    for (_, up, kind, _, _), r in day["5m"].items():
        if (up, kind) == ("viettel-4g", "icmp"):
            merged.merge(r)
    day_err = _error(merged, every, qs)
    line(
        f"viettel-4g icmp, the day's {len(every):,} samples merged from 288 buckets: {day_err:.2%}"
    )
    rng = np.random.default_rng(14)
    big = rng.lognormal(np.log(0.045), 0.8, 1_000_000)
    r = Rollup()
    for v in big.tolist():
        r.rtt.add(v)
        latency_bins.add(r.hist, v)
    big_err = _error(r, big.tolist(), qs)
    line(f"1,000,000 lognormal samples: {big_err:.2%} ({len(r.hist)} bins)")
    worst = max(worst, day_err, big_err)
    return [
        check(
            NAME,
            "percentile error (p5, p50, p95, p99)",
            f"{worst:.2%}",
            f"<= {latency_bins.RELATIVE_ERROR:.0%} (stated)",
            worst <= latency_bins.RELATIVE_ERROR,
        )
    ]


def _error(r: Rollup, values: list[float], qs: tuple[float, ...]) -> float:
    got = latency_bins.quantiles(r.hist, qs, low=r.rtt.low, high=r.rtt.high)
    exact = np.percentile(np.array(values), [q * 100 for q in qs], method="inverted_cdf")
    return max(abs(g - e) / e for g, e in zip(got, exact, strict=True) if g is not None)
