"""SQLite files for the ingest benchmark: fresh ones, the raw ``sqlite3`` floor, a 5M-row one.

Every file is migrated by the collector's own migrations, so the ``results`` table, its primary
key and its index are exactly the ones the collector writes to.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from bench.workload import BASE, COLUMNS, ROUND, UPLINKS, prepared, row_tuples
from lomsong.collector.auth import create_token
from lomsong.collector.registry import register_probe
from lomsong.storage.database import migrate, open_engine
from lomsong.storage.places import load_places
from lomsong.storage.schema import communes

INSERT_SQL = f"INSERT INTO results ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def migrated(path: Path) -> Engine:
    """An engine on a new file, migrated, with the 2025 provinces and communes loaded."""
    engine = open_engine(sqlite_url(path))
    migrate(engine)
    load_places(engine)
    return engine


def commune_codes(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(communes.c.code).order_by(communes.c.code)).scalars())


def probe_id(commune_code: str) -> str:
    return f"p-{commune_code}"


def fresh_database(path: Path, n_probes: int) -> dict[str, str]:
    """A migrated file with ``n_probes`` probes registered; returns probe id → probe token."""
    engine = migrated(path)
    try:
        out: dict[str, str] = {}
        for code in commune_codes(engine)[:n_probes]:
            pid = probe_id(code)
            register_probe(engine, pid, code, UPLINKS)
            out[pid] = create_token(engine, role="probe", probe_id=pid).token
        return out
    finally:
        engine.dispose()


def floor_rate(
    path: Path, batches: Sequence[Sequence[tuple[Any, ...]]], commit_every: int
) -> float:
    """Rows a second that plain ``executemany`` stores, WAL and synchronous=FULL, as configured."""
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        rows = 0
        start = time.perf_counter()
        for i, batch in enumerate(batches):
            if i % commit_every == 0:
                con.execute("BEGIN")
            con.executemany(INSERT_SQL, batch)
            rows += len(batch)
            if (i + 1) % commit_every == 0 or i + 1 == len(batches):
                con.execute("COMMIT")
        elapsed = time.perf_counter() - start
        (stored,) = con.execute("SELECT count(*) FROM results").fetchone()
        assert stored == rows, (stored, rows)
        return rows / elapsed
    finally:
        con.close()


def _prefill_rows(probe_ids: Sequence[str], seqs_each: int) -> Iterator[tuple[Any, ...]]:
    """Realistic rows, probe after probe: one round of ten checks repeated with new seqs."""
    templates = row_tuples(prepared("p-template", 1, ROUND))
    by_slot = {t[1] % ROUND: t for t in templates}
    i_boot, i_details = COLUMNS.index("boot_id"), COLUMNS.index("details")
    assert COLUMNS[:4] == ("probe_id", "seq", "measured_at", "received_at")
    assert (i_boot, i_details) == (len(COLUMNS) - 2, len(COLUMNS) - 1)
    middles = {slot: t[4:i_boot] for slot, t in by_slot.items()}
    details = {slot: t[i_details] for slot, t in by_slot.items()}
    for pid in probe_ids:
        boot = f"boot-{pid}"
        for seq in range(1, seqs_each + 1):
            slot = seq % ROUND
            at = BASE + seq
            yield (pid, seq, at, at + 30.0, *middles[slot], boot, details[slot])


def prefill(path: Path, total_rows: int) -> tuple[list[str], int]:
    """Fill a new file with ``total_rows`` results spread over every commune's probe.

    Every commune gets a registered probe whose state says what is stored. The rows go in with
    raw ``executemany`` and no journal (it is a fixture, not a measurement); the file is in
    WAL mode again afterwards. Returns the probe ids and the seqs each holds.
    """
    engine = migrated(path)
    codes = commune_codes(engine)
    engine.dispose()
    ids = [probe_id(c) for c in codes]
    seqs_each = -(-total_rows // len(ids))
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        con.execute("PRAGMA cache_size=-1048576")
        con.execute("BEGIN")
        now = time.time()
        con.executemany(
            "INSERT INTO probes (id, commune_code, label, created_at) VALUES (?, ?, NULL, ?)",
            [(pid, code, now) for pid, code in zip(ids, codes, strict=True)],
        )
        con.executemany(
            "INSERT INTO probe_uplinks (probe_id, name, operator) VALUES (?, ?, ?)",
            [(pid, u.name, u.operator) for pid in ids for u in UPLINKS],
        )
        con.executemany(
            "INSERT INTO probe_state (probe_id, boot_id, agent_version, last_seen_at, "
            "last_sent_at, last_measured_at, clock_skew_seconds, stored_through_seq, max_seq, "
            "results_total) VALUES (?, ?, '0.1.0', ?, ?, ?, 30.0, ?, ?, ?)",
            [
                (pid, f"boot-{pid}", now, now, BASE + seqs_each, seqs_each, seqs_each, seqs_each)
                for pid in ids
            ],
        )
        # The first probe's rows from Python, every other probe's copied from them inside
        # SQLite: a Python tuple of 29 values costs more than SQLite's insert itself.
        con.executemany(INSERT_SQL, _prefill_rows(ids[:1], seqs_each))
        copied = ", ".join(
            "?" if c == "probe_id" else "'boot-' || ?" if c == "boot_id" else c for c in COLUMNS
        )
        con.executemany(
            f"INSERT INTO results ({', '.join(COLUMNS)}) "
            f"SELECT {copied} FROM results WHERE probe_id = ? ORDER BY seq",
            [(pid, pid, ids[0]) for pid in ids[1:]],
        )
        con.execute("COMMIT")
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()
    # On disk before anything is measured: else the first fsync of the measurement would
    # write the whole pre-fill back.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return ids, seqs_each
