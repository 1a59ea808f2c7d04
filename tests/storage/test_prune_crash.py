"""Crash safety of pruning: ``prune`` is killed with SIGKILL at random moments, several times.

A child process prunes a real SQLite file, archiving each day to a CSV (written to a temporary
name and renamed) before it goes. After every kill: the file passes SQLite's integrity check,
every result younger than ``raw_days`` is there unchanged, no result is there twice, a day
that lost any row has its complete archive, and the rows recorded as pruned plus the rows left
are the whole day. A last run finishes the work.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from lomsong.storage.database import open_engine
from lomsong.storage.partitions import day_bounds, day_of
from tests.conftest import ready_engine
from tests.storage.test_retention import NOW, digest

KILLS = 3
SEED = 20_261_206
RAW_DAYS = 3
DAYS = 10
PROBES = [f"p-{i:02d}" for i in range(6)]
#: results a probe a day: enough that a day takes several chunks to delete
PER_DAY = 1_500

CHILD = """
import os, sys, csv
from lomsong.storage.database import open_engine
from lomsong.storage.partitions import day_bounds
from lomsong.storage.retention import prune
from sqlalchemy import text

url, root, now, raw_days = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
engine = open_engine(url)

def to_csv(day):
    final = os.path.join(root, f"{day}.csv")
    if os.path.exists(final):
        return
    lo, hi = day_bounds(day)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT probe_id, seq FROM results WHERE measured_at >= :lo AND measured_at < :hi"
        ), {"lo": lo, "hi": hi}).all()
    tmp = final + ".tmp"
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(rows)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, final)

print("pruning", flush=True)
report = prune(engine, now=now, raw_days=raw_days, rollup_5m_days=400, archiver=to_csv)
print("done", report.rows, flush=True)
"""


def _fill(db: Path) -> None:
    engine = ready_engine(f"sqlite:///{db}")
    engine.dispose()
    first = day_of(NOW) - timedelta(days=DAYS - 1)
    rows = []
    for pid in PROBES:
        seq = 1
        for d in range(DAYS):
            lo, hi = day_bounds(first + timedelta(days=d))
            step = (hi - lo - 60) / PER_DAY
            for i in range(PER_DAY):
                at = lo + 30 + i * step
                rows.append((pid, seq, at, at + 1, "icmp", "1.1.1.1", 1, "b"))
                seq += 1
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO results (probe_id, seq, measured_at, received_at, kind, target, ok, "
            "boot_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


def _child(db: Path, root: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, f"sqlite:///{db}", str(root), repr(NOW), str(RAW_DAYS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _check(db: Path, root: Path, younger: tuple[int, str]) -> int:
    """Check the invariants; return how many expired days are gone whole."""
    url = f"sqlite:///{db}"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        twice = conn.execute(
            "SELECT count(*) FROM (SELECT probe_id, seq FROM results "
            "GROUP BY probe_id, seq HAVING count(*) > 1)"
        ).fetchone()[0]
        assert twice == 0
        gone = 0
        first_kept = day_of(NOW - RAW_DAYS * 86_400)
        day = day_of(NOW) - timedelta(days=DAYS - 1)
        while day < first_kept:
            lo, hi = day_bounds(day)
            n = conn.execute(
                "SELECT count(*) FROM results WHERE measured_at >= ? AND measured_at < ?",
                (lo, hi),
            ).fetchone()[0]
            # each chunk counted what it deleted in its own transaction: nothing lost or twice
            pruned = conn.execute(
                "SELECT coalesce(sum(rows), 0) FROM pruned_days WHERE day = ?", (day.isoformat(),)
            ).fetchone()[0]
            assert pruned + n == PER_DAY * len(PROBES), (day, pruned, n)
            if n < PER_DAY * len(PROBES):  # some of the day went: it was archived first
                archive = root / f"{day}.csv"
                assert archive.exists(), day
                assert len(archive.read_text().splitlines()) == PER_DAY * len(PROBES)
            gone += n == 0
            day += timedelta(days=1)
    engine = open_engine(url)
    try:
        assert digest(engine, NOW - RAW_DAYS * 86_400) == younger
    finally:
        engine.dispose()
    return gone


def test_sigkill_during_prune_loses_nothing_younger_and_doubles_nothing(tmp_path: Path) -> None:
    db, root = tmp_path / "l.db", tmp_path / "archive"
    root.mkdir()
    _fill(db)
    engine = open_engine(f"sqlite:///{db}")
    younger = digest(engine, NOW - RAW_DAYS * 86_400)
    engine.dispose()
    rng = random.Random(SEED)
    for _ in range(KILLS):
        child = _child(db, root)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "pruning"
        time.sleep(rng.uniform(0.0, 0.4))
        child.send_signal(signal.SIGKILL)
        child.communicate()
        _check(db, root, younger)
    child = _child(db, root)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    expired = (DAYS - 1) - RAW_DAYS
    assert _check(db, root, younger) == expired
    assert len(list(root.glob("*.csv"))) == expired
