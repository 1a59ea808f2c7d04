"""Crash safety of pruning on PostgreSQL (partition drops): SIGKILL after each step.

A child process prunes a real PostgreSQL database with the real archive writer (Parquet) and
kills itself at one step: inside the archive writer, after a day's archive returned, after its
DETACH committed, after a detached table was counted and dropped. After the kill: nothing
younger than ``raw_days`` is touched, no result is there twice, a day that left ``results`` has
its complete archive, and what pruning recorded plus what is left (in ``results`` or a detached
table) is the whole day. A last run finishes; then ``archive verify`` agrees on every day and
the records count every row of the expired days exactly once.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from lomsong.storage.archive import archive_day, day_counts, inspect_file, relative_path
from lomsong.storage.archive_verify import verify_archive
from lomsong.storage.partitions import create_partition, day_bounds, day_of, detached_days
from lomsong.storage.pruned import pruned_records
from lomsong.storage.retention import keep_from, prune
from lomsong.storage.schema import results
from tests.storage.archive_rows import ORPHAN, PROBES, register, result_row
from tests.storage.test_retention import NOW, digest

RAW_DAYS = 2
DAYS = 5
PER_DAY = 40
FIRST = day_of(NOW) - timedelta(days=DAYS - 1)
#: the two days that expire: the first has a partition, the second waits in DEFAULT
EXPIRED = (FIRST, FIRST + timedelta(days=1))

CHILD = """
import os, signal, sys
from datetime import date
from pathlib import Path
from lomsong.storage import archive, retention
from lomsong.storage.database import open_engine

url, root, now, raw_days, at_step, at_day = sys.argv[1:7]
engine = open_engine(url)

def kill(step, where):
    if (step, str(where)) == (at_step, at_day):
        os.kill(os.getpid(), signal.SIGKILL)

archive.step_hook = kill
retention.step_hook = kill
retention.prune(
    engine, now=float(now), raw_days=int(raw_days), rollup_5m_days=400,
    archiver=lambda day: archive.archive_day(engine, day, Path(root)),
)
sys.exit(3)  # not killed: the step was never reached
"""


def _fill(engine: Engine) -> dict[date, dict[str, int]]:
    register(engine)
    with engine.begin() as conn:
        for d in range(DAYS):
            day = FIRST + timedelta(days=d)
            if day != EXPIRED[1]:
                create_partition(conn, day)
    rng = random.Random(14)
    rows = []
    for i, probe_id in enumerate([*PROBES, ORPHAN]):
        seq = 1 + 100_000 * i
        for d in range(DAYS):
            lo, hi = day_bounds(FIRST + timedelta(days=d))
            for k in range(PER_DAY):
                rows.append(result_row(probe_id, seq, lo + 1 + k * (hi - lo - 2) / PER_DAY, rng))
                seq += 1
    with engine.begin() as conn:
        conn.execute(results.insert(), rows)
    return {d: {p: n for p, (n, _ids) in day_counts(engine, d).items()} for d in EXPIRED}


def _check(engine: Engine, root: Path, before: dict[date, dict[str, int]], younger: object) -> None:
    cutoff = NOW - RAW_DAYS * 86_400
    assert digest(engine, cutoff) == younger
    with engine.connect() as conn:
        twice = conn.execute(
            text(
                "SELECT count(*) FROM (SELECT probe_id, seq FROM results "
                "GROUP BY probe_id, seq HAVING count(*) > 1) d"
            )
        ).scalar()
        assert twice == 0
        detached = {}
        for day, table in detached_days(conn).items():
            found = conn.exec_driver_sql(
                f"SELECT probe_id, count(*) FROM {table} GROUP BY probe_id"
            ).all()
            detached[day] = sum(n for _p, n in found)
    records = pruned_records(engine)
    for day, per in before.items():
        left = sum(n for n, _ids in day_counts(engine, day).values())
        gone = sum(r.rows for (d, _p), r in records.items() if d == day)
        # every row of the day is in exactly one place
        assert gone + left + detached.get(day, 0) == sum(per.values()), day
        if left < sum(per.values()):  # the day left results: its archive is whole
            for province, n in per.items():
                assert inspect_file(root / relative_path(day, province)) == n, (day, province)


@pytest.mark.parametrize(
    ("step", "where"),
    [
        ("renamed", "04"),  # inside the archive writer, the first day's second file
        ("archived", str(EXPIRED[0])),
        ("detached", str(EXPIRED[0])),
        ("archived", str(EXPIRED[1])),
        ("detached", str(EXPIRED[1])),  # a day without a partition: its DEFAULT rows
        ("dropped", str(EXPIRED[0])),
    ],
)
def test_sigkill_at_each_step_of_a_postgres_prune(
    pg_url: str, tmp_path: Path, step: str, where: str
) -> None:
    from tests.conftest import ready_engine

    engine = ready_engine(pg_url)
    try:
        before = _fill(engine)
        assert keep_from(NOW, RAW_DAYS) == EXPIRED[1] + timedelta(days=1)
        younger = digest(engine, NOW - RAW_DAYS * 86_400)
        root = tmp_path / "archive"
        killed = subprocess.run(
            [sys.executable, "-c", CHILD, pg_url, str(root), repr(NOW), str(RAW_DAYS), step, where],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        _check(engine, root, before, younger)

        report = prune(
            engine,
            now=NOW,
            raw_days=RAW_DAYS,
            rollup_5m_days=400,
            archiver=lambda day: archive_day(engine, day, root),
        )
        assert report.failed is None
        _check(engine, root, before, younger)
        with engine.connect() as conn:
            assert detached_days(conn) == {}
        records = pruned_records(engine)
        assert {k: r.rows for k, r in records.items()} == {
            (d, p): n for d, per in before.items() for p, n in per.items()
        }
        assert all(r.archived_rows == r.rows for r in records.values())
        checks = verify_archive(engine, root)
        assert {c.day for c in checks} == set(EXPIRED)
        assert [c.problem for c in checks] == [None] * len(checks), checks
    finally:
        engine.dispose()
