"""What pruning removed is recorded per day and province with the removal, and ``archive
verify`` holds it against the archive's files (SQLite chunks and PostgreSQL partition drops)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import Engine, text, update

from lomsong.storage.archive import archive_day, day_counts
from lomsong.storage.archive_verify import verify_archive
from lomsong.storage.partitions import create_partition, day_bounds, detached_days
from lomsong.storage.pruned import pruned_records, record_pruned, table_counts
from lomsong.storage.retention import finish_detached, prune
from lomsong.storage.schema import pruned_days, results
from tests.storage.archive_rows import ORPHAN, register, result_row, seed

DAY = date(2026, 11, 3)
#: noon two days later: with raw_days = 1 the day before DAY and DAY itself expire
NOW = day_bounds(DAY + timedelta(days=2))[0] + 12 * 3600


def _ready(engine: Engine) -> dict[date, dict[str, int]]:
    """Seeded rows of DAY (and the edges of the days around it); per day, the rows a province."""
    register(engine)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            for d in (DAY - timedelta(days=1), DAY):  # DAY + 1 waits in DEFAULT
                create_partition(conn, d)
    seed(engine, DAY, per_probe=40)
    return {
        d: {p: n for p, (n, _ids) in day_counts(engine, d).items()}
        for d in (DAY - timedelta(days=1), DAY)
    }


def _archiver(engine: Engine, root: Path) -> Callable[[date], object]:
    return lambda day: archive_day(engine, day, root)


def test_prune_records_each_day_and_province_and_verify_agrees(
    engine: Engine, tmp_path: Path
) -> None:
    before = _ready(engine)
    root = tmp_path / "archive"
    report = prune(
        engine,
        now=NOW,
        raw_days=1,
        rollup_5m_days=400,
        archiver=_archiver(engine, root),
        defer_drop=True,
    )
    assert [d.day for d in report.days] == [DAY - timedelta(days=1), DAY]
    checks = verify_archive(engine, root)
    assert [c.problem for c in checks] == [None] * len(checks), checks
    if engine.dialect.name == "postgresql":
        # detached, not dropped yet: verify counts the detached tables
        with engine.connect() as conn:
            assert list(detached_days(conn)) == [DAY - timedelta(days=1), DAY]
        assert report.pending_drop == [DAY - timedelta(days=1), DAY]
        # archiving a detached day again keeps its files
        assert {f.action for f in archive_day(engine, DAY, root).files} == {"kept"}
        again = prune(engine, now=NOW, raw_days=1, rollup_5m_days=400)
        assert [(d.day, d.rows) for d in again.dropped] == [
            (d, sum(before[d].values())) for d in before
        ]
        with engine.connect() as conn:
            assert detached_days(conn) == {}
    recorded = pruned_records(engine)
    assert {k: r.rows for k, r in recorded.items()} == {
        (d, p): n for d, per in before.items() for p, n in per.items()
    }
    for (d, p), r in recorded.items():
        assert r.archived_rows == before[d][p]
        assert r.archive_path == f"results/date={d}/province={p}/part-00000.parquet"
    checks = verify_archive(engine, root)
    assert all(c.problem is None for c in checks), checks
    assert {(c.day, c.province): c.pruned_rows for c in checks} == {
        (d, p): n for d, per in before.items() for p, n in per.items()
    }
    assert all(c.file_rows == c.pruned_rows and c.database_rows == 0 for c in checks)

    # a count that does not match the file is flagged
    with engine.begin() as conn:
        conn.execute(
            update(pruned_days)
            .where(pruned_days.c.day == DAY.isoformat(), pruned_days.c.province == "04")
            .values(rows=pruned_days.c.rows + 1)
        )
    wrong = [c for c in verify_archive(engine, root) if c.problem]
    assert [(c.day, c.province) for c in wrong] == [(DAY, "04")]
    n = before[DAY]["04"]
    assert wrong[0].problem == f"file {n:,} rows ≠ pruned {n + 1:,} + left 0"


def test_a_day_pruned_without_an_archive_is_flagged(engine: Engine, tmp_path: Path) -> None:
    before = _ready(engine)
    prune(engine, now=NOW, raw_days=1, rollup_5m_days=400)
    records = pruned_records(engine)
    assert {k: r.rows for k, r in records.items()} == {
        (d, p): n for d, per in before.items() for p, n in per.items()
    }
    assert all(r.archived_rows is None for r in records.values())
    checks = verify_archive(engine, tmp_path / "archive")
    assert {c.problem for c in checks} == {
        f"{n:,} rows pruned without an archive" for per in before.values() for n in per.values()
    }


def test_a_partly_pruned_day_keeps_its_file_and_late_rows_are_added(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    engine = sqlite_engine
    before = _ready(engine)
    root = tmp_path / "archive"
    archive_day(engine, DAY, root)
    # a prune killed after its first chunk: some of 04's rows gone, and counted, together
    with engine.begin() as conn:
        gone = conn.execute(
            text(
                "DELETE FROM results WHERE rowid IN (SELECT rowid FROM results WHERE "
                "probe_id = 'cb-thuc-phan' AND measured_at >= :lo AND measured_at < :hi "
                "LIMIT 15)"
            ),
            dict(zip(("lo", "hi"), day_bounds(DAY), strict=True)),
        ).rowcount
        record_pruned(conn, DAY, {"04": gone})
    again = {f.province: f for f in archive_day(engine, DAY, root).files}
    assert again["04"].action == "kept" and again["04"].rows == before[DAY]["04"]
    assert all(c.problem is None for c in verify_archive(engine, root, [DAY]))

    prune(engine, now=NOW, raw_days=1, rollup_5m_days=400, archiver=_archiver(engine, root))
    # a result of the pruned day arrives late: the next archive run adds it to the file
    late = result_row(ORPHAN, 99_999, day_bounds(DAY)[0] + 60, random.Random(1))
    with engine.begin() as conn:
        conn.execute(results.insert(), [late])
    late_verify = {c.province: c for c in verify_archive(engine, root, [DAY])}
    assert late_verify["unknown"].problem is not None  # the late row is in no file yet
    prune(engine, now=NOW, raw_days=1, rollup_5m_days=400, archiver=_archiver(engine, root))
    done = {c.province: c for c in verify_archive(engine, root, [DAY])}
    assert all(c.problem is None for c in done.values()), done
    assert done["unknown"].file_rows == before[DAY]["unknown"] + 1
    assert done["unknown"].pruned_rows == before[DAY]["unknown"] + 1


def test_a_detached_day_is_counted_once_by_two_pruners(pg_url: str) -> None:
    from tests.conftest import ready_engine

    engine = ready_engine(pg_url)
    try:
        before = _ready(engine)
        prune(engine, now=NOW, raw_days=1, rollup_5m_days=400, defer_drop=True)
        with engine.connect() as conn:
            tables = detached_days(conn)
        assert list(tables) == [DAY - timedelta(days=1), DAY]
        # another pruner holds DAY's table, counts it and drops it while this one waits
        other = engine.connect()
        other.exec_driver_sql(f"LOCK TABLE {tables[DAY]} IN ACCESS EXCLUSIVE MODE")
        done: list[object] = []
        waiting = threading.Thread(target=lambda: done.append(finish_detached(engine)))
        waiting.start()
        time.sleep(0.5)
        record_pruned(other, DAY, table_counts(other, tables[DAY]))
        other.exec_driver_sql(f"DROP TABLE {tables[DAY]}")
        other.commit()
        other.close()
        waiting.join(timeout=30)
        assert not waiting.is_alive() and done, "finish_detached did not return"
        with engine.connect() as conn:
            assert detached_days(conn) == {}
        assert {k: r.rows for k, r in pruned_records(engine).items()} == {
            (d, p): n for d, per in before.items() for p, n in per.items()
        }
    finally:
        engine.dispose()
