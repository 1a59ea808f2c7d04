"""Bounded storage (issue 14 §4): a SQLite file that stops growing, a day dropped on PostgreSQL,
and ingest into the partitioned PostgreSQL table.

1. 60 simulated days of one province (56 centres) on a SQLite file with ``raw_days = 7``: each
   day's results go in (raw ``executemany``, WAL, synchronous=FULL, as a day of ingest leaves
   them), then ``retention.prune`` runs as the leader would at the day's end. The file's size
   (with its WAL) from day 8 to day 60 against its size on day 8; the longest chunk of the
   chunked delete. Scaled down: a centre sends ``PER_CENTRE_DAY`` results a day here, where the
   national rate gives it about 57,000; the file's shape over the days, not its size, is the
   figure. Run for both a new file (incremental auto-vacuum: freed pages given back) and a file
   without auto-vacuum (freed pages only reused), the measured alternative.
2. PostgreSQL: one day of ``PG_DAY_ROWS`` results pruned by ``retention.prune`` as the leader
   runs it (its partition detached, the table left for the next run), beside a ``DELETE`` of
   another day holding the same rows; then the next run's share (the detached table counted,
   recorded and dropped) timed on its own, and the two together.
3. HTTP ingest into the partitioned PostgreSQL table: one collector, then two replicas on the
   same database, each with the 16-uploader load of ``bench_ingest``; the floor is a raw
   psycopg ``COPY`` and ``executemany`` of the same rows into the same table.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text

from bench.ingest_http import LoadResult, LoadSpec, run_load, serve
from bench.ingest_sqlite import INSERT_SQL, migrated
from bench.report import Outcome, check, heading, line, percentile
from bench.workload import BASE, COLUMNS, ROUND, UPLINKS, prepared, row_tuples
from lomsong.collector.auth import create_token
from lomsong.collector.registry import register_probe
from lomsong.storage.database import migrate, open_engine
from lomsong.storage.partitions import (
    create_ahead,
    create_partition,
    day_bounds,
    day_of,
    detach_partition,
)
from lomsong.storage.places import load_places
from lomsong.storage.retention import finish_detached, prune

NAME = "retention"
DAYS = 60
RAW_DAYS = 7
CENTRES = 56
#: results per centre per day here (the national rate is about 57,000): 1/228 of a day's load,
#: so that both runs of sixty days fit in about two minutes on two shared cores
PER_CENTRE_DAY = 250
PG_DAY_ROWS = 1_000_000
N_PROBES = 16
WARMUP_SECONDS = 2.0
SECONDS = 10.0
FLOOR_ROWS = 50_000
PG_ADMIN_URL = os.environ.get(
    "LOMSONG_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SERVER_ENV = {
    "LOMSONG_INGEST__RATE_PER_PROBE": "10000",
    "LOMSONG_INGEST__RATE_BURST": "100000",
    "LOMSONG_DEV": "true",
    # rollups on (the default); the leader derives hourly and daily rows every 2 s, so that
    # several derivations fall in the measured window
    "LOMSONG_ROLLUPS__DERIVE_EVERY_SECONDS": "2",
}

TARGET_GROWTH = 0.15
TARGET_CHUNK = 0.100
TARGET_DROP = 20.0
TARGET_RATE = 10_000.0


def main(argv: list[str] | None = None) -> list[Outcome]:
    """``python -m bench retention [--part N]``: every part, or only part N (1, 2 or 3)."""
    parts = {1, 2, 3}
    if argv:
        if len(argv) != 2 or argv[0] != "--part" or argv[1] not in ("1", "2", "3"):
            raise SystemExit("bench retention: expected no option or --part 1|2|3")
        parts = {int(argv[1])}
    heading(f"{NAME}: bounded storage on SQLite and PostgreSQL")
    line(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="lomsong-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if 1 in parts:
            outcomes += _sixty_days(tmp / "incremental.db", vacuum=True)
            outcomes += _sixty_days(tmp / "reuse.db", vacuum=False)
        if 2 in parts:
            with _pg_database() as url:
                outcomes += _drop_beside_delete(url)
        if 3 in parts:
            with _pg_database() as url:
                outcomes += _pg_ingest(tmp, url)
    line(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return outcomes


# -- 1. sixty days on SQLite -----------------------------------------------------------------


def _rows_of_day(day_index: int, first_day: Any, seq0: int) -> Iterator[tuple[Any, ...]]:
    templates = row_tuples(prepared("p-template", 1, ROUND))
    lo, hi = day_bounds(first_day + timedelta(days=day_index))
    step = (hi - lo - 60) / PER_CENTRE_DAY
    for i in range(PER_CENTRE_DAY):  # in time order, the centres interleaved, as they arrive
        t = templates[i % ROUND]
        at = lo + 30 + i * step
        for c in range(CENTRES):
            yield (f"p-{c:03d}", seq0 + i, at + c * 0.01, at + 20.0, *t[4:])


def _size(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def _sixty_days(path: Path, *, vacuum: bool) -> list[Outcome]:
    mode = "incremental auto-vacuum" if vacuum else "no auto-vacuum (free pages reused)"
    heading(
        f"1. {DAYS} days of {CENTRES} centres, {PER_CENTRE_DAY:,} results a centre a day, "
        f"raw_days={RAW_DAYS}: {mode}"
    )
    if not vacuum:  # as a file made before this version: no auto-vacuum
        con = sqlite3.connect(path)
        con.executescript("PRAGMA auto_vacuum=NONE; CREATE TABLE x (a); DROP TABLE x;")
        con.close()
    engine = migrated(path)
    first_day = day_of(time.time()) - timedelta(days=DAYS + 5)
    sizes: dict[int, int] = {}
    chunk_max = 0.0
    chunks: list[float] = []
    prune_seconds: list[float] = []
    started = time.perf_counter()
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    try:
        for d in range(DAYS):
            rows = list(_rows_of_day(d, first_day, 1 + d * PER_CENTRE_DAY))
            for k in range(0, len(rows), 2_000):  # groups as the writer commits them
                con.execute("BEGIN")
                con.executemany(INSERT_SQL, rows[k : k + 2_000])
                con.execute("COMMIT")
            _lo, end = day_bounds(first_day + timedelta(days=d))
            t0 = time.perf_counter()
            report = prune(engine, now=end - 1, raw_days=RAW_DAYS, rollup_5m_days=400)
            prune_seconds.append(time.perf_counter() - t0)
            chunk_max = max(chunk_max, report.max_chunk_seconds)
            chunks += report.chunk_seconds
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            sizes[d + 1] = _size(path)
    finally:
        con.close()
        engine.dispose()
    took = time.perf_counter() - started
    base = sizes[RAW_DAYS + 1]
    later = [sizes[d] for d in range(RAW_DAYS + 1, DAYS + 1)]
    worst = max(abs(s - base) / base for s in later)
    line(f"run took {took:.1f} s; one prune: median {sorted(prune_seconds)[DAYS // 2]:.2f} s")
    line(
        "size (MB) on days 1, 7, 8, 15, 30, 45, 60: "
        + ", ".join(f"{sizes[d] / 1e6:.1f}" for d in (1, 7, 8, 15, 30, 45, 60))
    )
    line(f"largest deviation from day {RAW_DAYS + 1} over days {RAW_DAYS + 1}..{DAYS}: {worst:.1%}")
    chunks.sort()
    line(
        f"write transactions of the prunes (delete chunks, vacuum steps): {len(chunks):,}; "
        f"p50 {percentile(chunks, 0.5) * 1000:.1f} ms, p99 {percentile(chunks, 0.99) * 1000:.1f} "
        f"ms, longest {chunk_max * 1000:.1f} ms"
    )
    tag = "incremental" if vacuum else "reuse"
    return [
        check(
            NAME,
            f"SQLite size days 8..60 vs day 8 ({tag})",
            f"{worst:.1%}",
            f"<= {TARGET_GROWTH:.0%}",
            worst <= TARGET_GROWTH,
        ),
        check(
            NAME,
            f"longest prune chunk ({tag})",
            f"{chunk_max * 1000:.0f} ms",
            f"<= {TARGET_CHUNK * 1000:.0f} ms",
            chunk_max <= TARGET_CHUNK,
        ),
    ]


# -- 2. a day dropped on PostgreSQL ----------------------------------------------------------


@contextmanager
def _pg_database() -> Iterator[str]:
    name = f"lomsong_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _copy_rows(engine: Engine, rows: list[tuple[Any, ...]]) -> float:
    """COPY ``rows`` into ``results``; return the seconds it took."""
    raw = engine.raw_connection()
    try:
        t0 = time.perf_counter()
        with raw.cursor() as cur:  # type: ignore[attr-defined]
            with cur.copy(f"COPY results ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(r)
        raw.commit()
        return time.perf_counter() - t0
    finally:
        raw.close()


def _pg_day_rows(day: Any, n: int, seq0: int) -> list[tuple[Any, ...]]:
    templates = row_tuples(prepared("p-template", 1, ROUND))
    lo, hi = day_bounds(day)
    per = n // CENTRES
    out = []
    for c in range(CENTRES):
        for i in range(per):
            t = templates[i % ROUND]
            at = lo + 30 + i * (hi - lo - 60) / per
            out.append((f"p-{c:03d}", seq0 + i, at, at + 20.0, *t[4:]))
    return out


def _drop_beside_delete(url: str) -> list[Outcome]:
    heading(f"2. PostgreSQL: a day of {PG_DAY_ROWS:,} results pruned, beside DELETE of as many")
    engine = open_engine(url)
    try:
        migrate(engine)
        load_places(engine)
        now = time.time()
        today = day_of(now)
        deleted, dropped = today - timedelta(days=61), today - timedelta(days=60)
        with engine.begin() as conn:
            create_partition(conn, deleted)
            create_partition(conn, dropped)
            create_ahead(conn, now)  # as the leader's earlier runs left them
        _copy_rows(engine, _pg_day_rows(deleted, PG_DAY_ROWS, 10_000_000))
        _copy_rows(engine, _pg_day_rows(dropped, PG_DAY_ROWS, 1))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE results")
        lo, hi = day_bounds(deleted)
        t0 = time.perf_counter()
        with engine.begin() as conn:
            n = conn.exec_driver_sql(
                "DELETE FROM results WHERE measured_at >= %s AND measured_at < %s", (lo, hi)
            ).rowcount
        delete_s = time.perf_counter() - t0
        # the dead rows a DELETE leaves take their space until VACUUM; a drop frees it at once
        t0 = time.perf_counter()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM results")
        vacuum_s = time.perf_counter() - t0
        # the emptied day's partition goes too (untimed), so the prune below has one day to do
        with engine.begin() as conn:
            detach_partition(conn, deleted)
        finish_detached(engine)
        # the prune, whole, as the leader runs it: plan, partitions ahead, the day detached
        # (with its DEFAULT strays deleted and counted, and its record written) ...
        t0 = time.perf_counter()
        report = prune(engine, now=now, raw_days=59, rollup_5m_days=400, defer_drop=True)
        prune_s = time.perf_counter() - t0
        assert [d.day for d in report.days] == [dropped], report.days
        # ... and the next run's share: the detached table counted, recorded and dropped
        t0 = time.perf_counter()
        finished = finish_detached(engine)
        finish_s = time.perf_counter() - t0
        with engine.connect() as conn:
            left = conn.exec_driver_sql("SELECT count(*) FROM results").scalar()
            recorded = conn.exec_driver_sql(
                "SELECT sum(rows) FROM pruned_days WHERE day = %s", (dropped.isoformat(),)
            ).scalar()
    finally:
        engine.dispose()
    day_rows = PG_DAY_ROWS // CENTRES * CENTRES
    assert [(d.day, d.rows) for d in finished] == [(dropped, day_rows)], finished
    line(f"DELETE of {n:,} rows: {delete_s * 1000:.0f} ms, then VACUUM: {vacuum_s * 1000:.0f} ms")
    line(
        f"prune of the day ({day_rows:,} rows), as the leader runs it: "
        f"{prune_s * 1000:.1f} ms (the whole call: plan, partitions ahead, DETACH)"
    )
    line(
        f"its detached table counted, recorded ({recorded:,} rows) and dropped at the next "
        f"run: {finish_s * 1000:.1f} ms; both together {(prune_s + finish_s) * 1000:.1f} ms"
    )
    ratio = delete_s / prune_s
    both = delete_s / (prune_s + finish_s)
    line(f"DELETE / prune: {ratio:.0f}x; DELETE / (prune + drop): {both:.0f}x")
    line(f"DELETE and VACUUM / (prune + drop): {(delete_s + vacuum_s) / (prune_s + finish_s):.0f}x")
    line(f"rows left: {left} (both days gone)")
    ok = left == 0 and recorded == day_rows
    return [
        check(
            NAME,
            "PG prune of a day (partition detached) vs DELETE",
            f"{ratio:.0f}x",
            f">= {TARGET_DROP:.0f}x",
            ratio >= TARGET_DROP and ok,
        ),
        check(
            NAME,
            "PG prune + count and drop at next run vs DELETE",
            f"{both:.0f}x",
            "shown",
            ok,
        ),
    ]


# -- 3. ingest into the partitioned table ----------------------------------------------------


def _fresh_pg(url: str, n: int) -> dict[str, str]:
    engine = open_engine(url)
    try:
        migrate(engine)
        load_places(engine)
        # the days of the workload's results, as the leader's first prune would make them
        day = day_of(BASE)
        while day <= day_of(time.time()):
            with engine.begin() as conn:
                create_partition(conn, day)
            day += timedelta(days=1)
        with engine.connect() as conn:
            codes = list(
                conn.exec_driver_sql(
                    "SELECT code FROM communes ORDER BY code LIMIT %s", (n,)
                ).scalars()
            )
        out = {}
        for code in codes:
            pid = f"p-{code}"
            register_probe(engine, pid, code, UPLINKS)
            out[pid] = create_token(engine, role="probe", probe_id=pid).token
        return out
    finally:
        engine.dispose()


def _floor(url: str) -> tuple[float, float, float]:
    """Rows a second into the partitioned table: COPY, and executemany of 100-row batches with
    a commit each, and with a commit every 16 (as the writer groups them)."""
    engine = open_engine(url)
    try:
        migrate(engine)
        with engine.begin() as conn:
            day = day_of(BASE)
            while day <= day_of(time.time()):
                create_partition(conn, day)
                day += timedelta(days=1)
        rows = [
            (f"f-{k % N_PROBES}", k, BASE + k * 0.5, BASE + k * 0.5 + 20, *t[4:])
            for k, t in enumerate(
                row_tuples(prepared("p-template", 1, ROUND))[i % ROUND] for i in range(FLOOR_ROWS)
            )
        ]
        copy_rate = FLOOR_ROWS / _copy_rows(engine, rows)
        with engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE results")
        sql = INSERT_SQL.replace("?", "%s")
        rates = []
        for commit_every in (1, 16):
            with engine.begin() as conn:
                conn.exec_driver_sql("TRUNCATE results")
            raw = engine.raw_connection()
            try:
                t0 = time.perf_counter()
                with raw.cursor() as cur:
                    for i, k in enumerate(range(0, len(rows), 100)):
                        cur.executemany(sql, rows[k : k + 100])
                        if (i + 1) % commit_every == 0:
                            raw.commit()
                    raw.commit()
                rates.append(FLOOR_ROWS / (time.perf_counter() - t0))
            finally:
                raw.close()
        return copy_rate, rates[0], rates[1]
    finally:
        engine.dispose()


def _pg_ingest(tmp: Path, url: str) -> list[Outcome]:
    heading(f"3. HTTP ingest into the partitioned PostgreSQL table, {N_PROBES} uploaders")
    tokens = _fresh_pg(url, N_PROBES)
    probes = tuple(tokens.items())
    env = {**SERVER_ENV, "LOMSONG_DATABASE_URL": url}
    outcomes: list[Outcome] = []
    with serve(tmp / "unused.db", tmp / "pg1.log", **env) as one:
        alone = run_load(LoadSpec(one.url, one.pid, probes, WARMUP_SECONDS, SECONDS))
    rate_one = _report_load("one collector", alone)
    half = len(probes) // 2
    with ExitStack() as stack:
        a = stack.enter_context(serve(tmp / "unused.db", tmp / "pg2a.log", **env))
        b = stack.enter_context(serve(tmp / "unused.db", tmp / "pg2b.log", **env))
        results: list[LoadResult] = []
        seqs = alone.next_seq

        def drive(server: Any, part: tuple[tuple[str, str], ...], nxt: tuple[int, ...]) -> None:
            spec = LoadSpec(server.url, server.pid, part, WARMUP_SECONDS, SECONDS, next_seq=nxt)
            results.append(run_load(spec))

        threads = [
            threading.Thread(target=drive, args=(a, probes[:half], seqs[:half])),
            threading.Thread(target=drive, args=(b, probes[half:], seqs[half:])),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    rate_two = sum(r.results / r.window_seconds for r in results)
    errors = sum(r.errors for r in results)
    line(f"two replicas: {rate_two:,.0f} results/s together, {errors} errors")
    with _pg_database() as floor_url:
        copy_rate, many_rate, grouped_rate = _floor(floor_url)
    line(f"floor, COPY into the partitioned table: {copy_rate:,.0f} results/s")
    line(f"floor, executemany of 100-row batches, a commit each: {many_rate:,.0f} results/s")
    line(f"floor, the same with a commit every 16 batches: {grouped_rate:,.0f} results/s")
    line(
        f"one collector / executemany floor: {rate_one / many_rate:.0%}; / COPY: "
        f"{rate_one / copy_rate:.0%}"
    )
    outcomes.append(
        check(
            NAME,
            "PG ingest, one collector",
            f"{rate_one:,.0f}/s",
            f">= {TARGET_RATE:,.0f}/s",
            rate_one >= TARGET_RATE,
        )
    )
    outcomes.append(
        check(
            NAME,
            "PG ingest, two replicas",
            f"{rate_two:,.0f}/s",
            f">= {TARGET_RATE:,.0f}/s",
            rate_two >= TARGET_RATE and errors == 0,
        )
    )
    return outcomes


def _report_load(label: str, r: LoadResult) -> float:
    rate = r.results / r.window_seconds
    lat = sorted(r.latencies)
    line(
        f"{label}: {rate:,.0f} results/s, {r.requests:,} requests, p50 "
        f"{percentile(lat, 0.5) * 1000:.0f} ms, p99 {percentile(lat, 0.99) * 1000:.0f} ms, "
        f"{r.errors} errors {r.error_sample[:80]}"
    )
    return rate
