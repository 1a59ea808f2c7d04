"""The open archive: bytes per result in the database beside Parquet, and time to archive a day.

One province's collector (56 centres of Cao Bằng, each a probe with a 4G modem and a fibre
line) on a SQLite file migrated by the collector's own migrations. Each centre measures the
ten-check round of ``bench/workload.py`` (icmp, tcp and http to the portal over both uplinks,
icmp to a resolver, the modem's serving cell twice, a heartbeat) every 30 s, turned into rows
by the collector's own ingest code; the measured values get the noise real ones have (round
trips and durations as full-precision floats, RSRP moving a dB at a time, one failure in 40),
so that neither side compresses artificially well. ``--hours`` of one UTC day are stored
(6 by default: 403,200 results; 24 for the whole day).

1. Storage per result in the database: the ``results`` table and its two indexes, from
   SQLite's ``dbstat`` (pages in use, after a checkpoint), and the same rows copied into
   PostgreSQL (table with TOAST and indexes, after VACUUM); beside them the Parquet file that
   ``archive_day`` writes for the same rows (zstd). Target: Parquet ≥ 10× smaller. A centre-year
   of each is printed for the README's example centre (21 results a round).
2. Time to archive the province's day (``archive_day``: read, encode, fsync, rename, record),
   and the rate; for fewer than 24 hours the whole day is projected from the rate.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sqlite3
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select

from bench.ingest_sqlite import INSERT_SQL, migrated
from bench.report import Outcome, check, heading, line
from bench.workload import COLUMNS, ROUND, UPLINKS, prepared
from lomsong.collector.registry import register_probe
from lomsong.storage.archive import archive_day
from lomsong.storage.database import migrate, open_engine
from lomsong.storage.partitions import day_bounds
from lomsong.storage.schema import communes

PROVINCE = "04"
CENTRES = 56
ROUND_SECONDS = 30.0
DAY = date(2026, 11, 3)
#: the README's example centre: four uplinks, five checks each and a heartbeat
RESULTS_PER_CENTRE_DAY = 21 * 2_880


def main(argv: list[str] | None = None) -> list[Outcome]:
    parser = argparse.ArgumentParser(prog="python -m bench archive")
    parser.add_argument("--hours", type=float, default=6.0, help="hours of the day stored")
    args = parser.parse_args(argv or [])
    with tempfile.TemporaryDirectory(prefix="bench-archive-") as tmp:
        return _run(Path(tmp), args.hours)


def _run(tmp: Path, hours: float) -> list[Outcome]:
    heading(f"archive: one province ({CENTRES} centres), {hours:g} h of {DAY} stored")
    db = tmp / "lomsong.db"
    engine = migrated(db)
    with engine.connect() as conn:
        codes = list(
            conn.execute(
                select(communes.c.code).where(communes.c.province_code == PROVINCE)
            ).scalars()
        )
    probe_ids = [f"cb-{code}" for code in codes[:CENTRES]]
    for pid, code in zip(probe_ids, codes, strict=False):
        register_probe(engine, pid, code, UPLINKS)
    rounds = int(hours * 3_600 / ROUND_SECONDS)
    started = time.perf_counter()
    rows = _store(db, probe_ids, rounds)
    line(f"stored {rows:,} results in {time.perf_counter() - started:.1f} s")

    in_db = _db_bytes(db)
    started = time.perf_counter()
    done = archive_day(engine, DAY, tmp / "archive")
    seconds = time.perf_counter() - started
    engine.dispose()
    parquet = sum(f.bytes for f in done.files)
    assert done.rows == rows, (done.rows, rows)

    outcomes = []
    per_db = in_db["total"] / rows
    per_parquet = parquet / rows
    ratio = per_db / per_parquet
    line(
        f"SQLite: {per_db:.1f} bytes/result ({in_db['table'] / rows:.1f} table, "
        f"{in_db['indexes'] / rows:.1f} indexes)"
    )
    pg = _pg_bytes(db)
    if pg is not None:
        line(
            f"PostgreSQL, the same rows: {pg['total'] / rows:.1f} bytes/result "
            f"({pg['table'] / rows:.1f} table and TOAST, {pg['indexes'] / rows:.1f} indexes)"
        )
    line(f"Parquet (zstd): {per_parquet:.2f} bytes/result, {parquet:,} bytes in one file")
    year = RESULTS_PER_CENTRE_DAY * 365
    line(
        f"a centre-year ({year:,} results): {per_db * year / 1e9:.2f} GB in SQLite, "
        f"{per_parquet * year / 1e6:.0f} MB in Parquet"
    )
    outcomes.append(
        check(
            "archive",
            "Parquet vs database per result",
            f"{ratio:.1f}× smaller ({per_parquet:.2f} vs {per_db:.1f} B)",
            "≥ 10×",
            ratio >= 10,
        )
    )
    rate = rows / seconds
    whole_day = CENTRES * RESULTS_PER_CENTRE_DAY
    line(f"archive_day: {rows:,} results in {seconds:.1f} s, {rate:,.0f} results/s")
    line(
        f"a whole province-day at that rate ({whole_day:,} results, 21 a round): "
        f"{whole_day / rate:.0f} s"
    )
    outcomes.append(
        check(
            "archive",
            "archive a province-day",
            f"{whole_day / rate:.0f} s (projected from {hours:g} h)"
            if hours < 24
            else f"{seconds:.0f} s",
            "diagnostic: < 1 h",
            whole_day / rate < 3_600,
        )
    )
    return outcomes


def _store(db: Path, probe_ids: list[str], rounds: int) -> int:
    """The province's results of ``rounds`` rounds from the day's start, by raw executemany."""
    rng = random.Random(14)
    start, _end = day_bounds(DAY)
    index = {c: i for i, c in enumerate(COLUMNS)}
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    total = 0
    per_batch = 100 // ROUND  # rounds in a 100-result batch
    try:
        for pid in probe_ids:
            rsrp = -95.0
            for first in range(0, rounds, per_batch):
                batch = prepared(pid, 1 + first * ROUND)
                out = []
                for k, row in enumerate(batch.rows):
                    values = [row.get(c) for c in COLUMNS]
                    rsrp = _noisy(values, index, rng, rsrp)
                    at = start + (first + k // ROUND) * ROUND_SECONDS + (k % ROUND) * 0.4
                    values[index["measured_at"]] = at + rng.uniform(0, 2)
                    values[index["received_at"]] = at + rng.uniform(5, 12)
                    out.append(tuple(values))
                conn.executemany(INSERT_SQL, out)
                total += len(out)
            conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return total


def _noisy(values: list[Any], index: dict[str, int], rng: random.Random, rsrp: float) -> float:
    """Values as the agent measures them (full-precision floats from its clock) and the details
    each check adds (``probes/checks/*.py``)."""
    kind = values[index["kind"]]
    if values[index["duration_seconds"]] is not None:
        values[index["duration_seconds"]] = rng.lognormvariate(math.log(0.05), 0.6)
    details = _details(kind, rng)
    if details is not None:
        values[index["details"]] = orjson.dumps(details).decode()
    if kind == "icmp":
        low = rng.lognormvariate(math.log(0.03), 0.4)
        values[index["rtt_min_seconds"]] = low
        values[index["rtt_max_seconds"]] = low + rng.expovariate(1 / 0.01)
        values[index["jitter_seconds"]] = rng.expovariate(1 / 0.003)
        if rng.random() < 1 / 40:
            values[index["ok"]] = False
            values[index["packets_received"]] = 0
            values[index["error"]] = "timeout"
    elif kind == "modem":
        rsrp = min(-70.0, max(-125.0, rsrp + rng.choice((-1.0, 0.0, 0.0, 1.0))))
        values[index["rsrp_dbm"]] = rsrp
        values[index["snr_db"]] = round(rng.uniform(0, 15), 1)
        values[index["rsrq_db"]] = float(rng.randint(-15, -8))
    return rsrp


def _details(kind: str, rng: random.Random) -> dict[str, Any] | None:
    if kind == "icmp":
        return {"address": "14.225.4.12", "socket": "dgram", "loss": 0.0}
    if kind == "tcp":
        resolve = rng.lognormvariate(math.log(0.004), 0.8)
        connect = rng.lognormvariate(math.log(0.03), 0.4)
        return {"address": "14.225.4.12", "resolve_seconds": resolve, "connect_seconds": connect}
    if kind == "http":
        phases = ("dns", "connect", "tls", "ttfb", "body")
        out: dict[str, Any] = {
            f"{p}_seconds": round(rng.lognormvariate(math.log(0.03), 0.6), 6) for p in phases
        }
        return {**out, "body_bytes": 65_536, "redirects": 0}
    if kind == "modem":
        return {
            "state": "connected",
            "registration": "home",
            "operator": "Viettel",
            "operator_code": "45204",
            "signal_quality_percent": rng.randint(40, 80),
            "access_technologies": ["lte"],
        }
    return None


def _pg_bytes(db: Path) -> dict[str, int] | None:
    """The same rows copied into a fresh PostgreSQL database migrated by the collector's own
    migrations: bytes of the table (with TOAST) and of its indexes, after VACUUM. None when no
    server answers at ``LOMSONG_TEST_POSTGRES`` (the tests' server)."""
    import psycopg

    admin_url = os.environ.get(
        "LOMSONG_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ).replace("postgresql+psycopg://", "postgresql://")
    name = f"bench_archive_{os.getpid()}"
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        line(f"PostgreSQL: not measured ({type(exc).__name__})")
        return None
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        engine = open_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        migrate(engine)
        engine.dispose()
        source = sqlite3.connect(db)
        with psycopg.connect(url, autocommit=True) as pg:
            with pg.cursor().copy(f"COPY results ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in source.execute(f"SELECT {', '.join(COLUMNS)} FROM results"):
                    copy.write_row(_pg_row(row))
            pg.execute("VACUUM ANALYZE results")
            table, indexes = pg.execute(
                "SELECT pg_table_size('results'), pg_indexes_size('results')"
            ).fetchone() or (0, 0)
        source.close()
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
    return {"table": int(table), "indexes": int(indexes), "total": int(table) + int(indexes)}


_OK = COLUMNS.index("ok")


def _pg_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    # SQLite keeps booleans as 0 and 1
    return (*row[:_OK], bool(row[_OK]), *row[_OK + 1 :])


def _db_bytes(db: Path) -> dict[str, int]:
    """Bytes of pages the results table and its indexes use (SQLite ``dbstat``)."""
    conn = sqlite3.connect(db)
    try:
        names = [
            n
            for (n,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE tbl_name = 'results' AND type IN "
                "('table', 'index')"
            )
        ]
        sizes = dict(
            conn.execute(
                f"SELECT name, sum(pgsize) FROM dbstat WHERE name IN "
                f"({', '.join('?' * len(names))}) GROUP BY name",
                names,
            ).fetchall()
        )
    finally:
        conn.close()
    table = int(sizes.get("results", 0))
    indexes = sum(int(v) for k, v in sizes.items() if k != "results")
    return {"table": table, "indexes": indexes, "total": table + indexes}


if __name__ == "__main__":
    main()
