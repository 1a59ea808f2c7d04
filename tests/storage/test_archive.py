"""The open archive: a day of results as Parquet that DuckDB and pyarrow read back whole."""

from __future__ import annotations

import os
import random
from datetime import date
from pathlib import Path

from sqlalchemy import Engine, delete, select

from lomsong.storage.archive import (
    archive_day,
    day_bounds,
    inspect_file,
    recorded_files,
    sha256_of,
)
from lomsong.storage.schema import archived_files, results
from tests.storage.archive_rows import (
    ORPHAN,
    db_rows,
    duckdb_rows,
    pyarrow_rows,
    register,
    result_row,
    seed,
)

DAY = date(2026, 11, 3)


def test_duckdb_and_pyarrow_read_back_the_days_rows(engine: Engine, tmp_path: Path) -> None:
    """On SQLite and PostgreSQL: one file per province, hive layout, the table's rows exactly
    (first and last instant of the local day in, the neighbouring days out), recorded."""
    register(engine)
    seed(engine, DAY)
    expected = db_rows(engine, DAY)
    assert len(expected) == 4 * 60
    done = archive_day(engine, DAY, tmp_path, clock=lambda: 1_800_000_000.0)
    assert [(f.province, f.action) for f in done.files] == [
        ("01", "written"),
        ("04", "written"),
        ("unknown", "written"),
    ]
    assert done.rows == len(expected)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.parquet")) == [
        "results/date=2026-11-03/province=01/part-00000.parquet",
        "results/date=2026-11-03/province=04/part-00000.parquet",
        "results/date=2026-11-03/province=unknown/part-00000.parquet",
    ]
    assert duckdb_rows(tmp_path) == expected
    assert pyarrow_rows(tmp_path) == expected
    recorded = recorded_files(engine, DAY)
    assert {p: r["rows"] for p, r in recorded.items()} == {"01": 60, "04": 120, "unknown": 60}
    for r in recorded.values():
        assert r["sha256"] == sha256_of(tmp_path / r["path"])
        assert r["bytes"] == (tmp_path / r["path"]).stat().st_size
        assert r["written_at"] == 1_800_000_000.0
    assert ORPHAN in {row[0] for row in pyarrow_rows(tmp_path)}


def test_again_is_a_no_op_and_each_leftover_is_mended(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    engine = sqlite_engine
    register(engine)
    seed(engine, DAY, per_probe=20)
    archive_day(engine, DAY, tmp_path)
    files = sorted(tmp_path.rglob("*.parquet"))
    stamps = [p.stat().st_mtime_ns for p in files]

    again = archive_day(engine, DAY, tmp_path)
    assert {f.action for f in again.files} == {"kept"}
    assert [p.stat().st_mtime_ns for p in files] == stamps

    # a crash after the rename: the file is there, its record is not
    with engine.begin() as conn:
        conn.execute(delete(archived_files).where(archived_files.c.province == "04"))
    # a crash before the rename: a temporary file is left beside
    temp = files[0].with_name(".part-00000.parquet.tmp")
    temp.write_bytes(b"PAR1 half a file")
    mended = archive_day(engine, DAY, tmp_path)
    assert {f.province: f.action for f in mended.files} == {
        "01": "kept",
        "04": "recorded",
        "unknown": "kept",
    }
    assert not temp.exists()
    assert [p.stat().st_mtime_ns for p in files] == stamps
    assert recorded_files(engine, DAY)["04"]["rows"] == 40

    # a late result of the day after a manual archive: the province's file is written anew
    late = result_row("cb-thuc-phan", 99_999, day_bounds(DAY)[0] + 3_600, random.Random(1))
    with engine.begin() as conn:
        conn.execute(results.insert(), [late])
    rewritten = archive_day(engine, DAY, tmp_path)
    assert {f.province: f.action for f in rewritten.files}["04"] == "rewritten"
    assert recorded_files(engine, DAY)["04"]["rows"] == 41
    assert duckdb_rows(tmp_path) == db_rows(engine, DAY)

    # pruned from the database: the archive stays as it is, and says so
    with engine.begin() as conn:
        conn.execute(delete(results))
    after_prune = archive_day(engine, DAY, tmp_path)
    assert {f.action for f in after_prune.files} == {"kept"}
    assert after_prune.rows == 81


def test_an_unreadable_file_is_rewritten_while_the_rows_are_there(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    engine = sqlite_engine
    register(engine)
    seed(engine, DAY, per_probe=10)
    archive_day(engine, DAY, tmp_path)
    with engine.begin() as conn:
        conn.execute(delete(archived_files))
    part = tmp_path / "results/date=2026-11-03/province=01/part-00000.parquet"
    part.write_bytes(part.read_bytes()[:-100])  # torn: no footer
    assert inspect_file(part) is None
    done = archive_day(engine, DAY, tmp_path)
    assert {f.province: f.action for f in done.files}["01"] == "rewritten"
    assert inspect_file(part) == 10
    with engine.connect() as conn:
        assert conn.execute(select(archived_files.c.province)).scalars().all() == [
            "01",
            "04",
            "unknown",
        ]
    assert os.listdir(part.parent) == ["part-00000.parquet"]
