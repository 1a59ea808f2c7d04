"""``lomsong archive verify``: the archive's files against their records and the database.

Three counts per day and province must agree: the rows in the Parquet file (its footer), the
rows recorded when it was written (``archived_files``), and, while the day is still in the
database, the rows the database holds. Pruning deletes a day only after it is archived, so a
pruned day's database count is 0 and its file and record are what is left of it: a file that is
missing, torn or not the one recorded is then data lost, and said so. A day still in the
database with a province that has no file is not archived yet (``lomsong archive day``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from sqlalchemy import Engine

from lomsong.storage.archive import (
    PART_NAME,
    archived_days,
    day_counts,
    inspect_file,
    recorded_files,
    relative_path,
    sha256_of,
)


@dataclass(frozen=True)
class ArchiveCheck:
    """One day and province: the three counts, and what is wrong (None: nothing)."""

    day: date
    province: str
    file_rows: int | None
    recorded_rows: int | None
    database_rows: int
    problem: str | None


def verify_archive(
    engine: Engine, root: Path, days: Sequence[date] | None = None, *, checksums: bool = False
) -> list[ArchiveCheck]:
    """Check ``days`` (every day the archive or its records know, by default); with
    ``checksums`` each file's sha256 is read and compared with its record too."""
    every = recorded_files(engine)
    if days is None:
        known = {date.fromisoformat(key.split("/")[0]) for key in every}
        days = sorted(known | set(archived_days(root)))
    out: list[ArchiveCheck] = []
    for day in days:
        records = recorded_files(engine, day)
        in_db = {p: rows for p, (rows, _ids) in day_counts(engine, day).items()}
        folder = root / "results" / f"date={day.isoformat()}"
        on_disk = {
            p.name.removeprefix("province="): p / PART_NAME
            for p in folder.glob("province=*")
            if (p / PART_NAME).exists()
        }
        for province in sorted(set(records) | set(on_disk) | set(in_db)):
            record = records.get(province)
            path = on_disk.get(province)
            file_rows = inspect_file(path) if path is not None else None
            db_rows = in_db.get(province, 0)
            problem = _problem(path, file_rows, record, db_rows)
            if problem is None and checksums and record is not None and path is not None:
                if sha256_of(path) != record["sha256"]:
                    problem = "checksum differs from the record"
            out.append(
                ArchiveCheck(
                    day,
                    province,
                    file_rows,
                    record["rows"] if record else None,
                    db_rows,
                    problem,
                )
            )
    return out


def _problem(
    path: Path | None, file_rows: int | None, record: dict[str, object] | None, db_rows: int
) -> str | None:
    if path is None and record is None:
        return "not archived"
    if path is None:
        return f"file missing ({record['path'] if record else ''})"
    if file_rows is None:
        return "file unreadable or not the results' schema"
    if record is None:
        return "file not recorded (run `lomsong archive day`)"
    if file_rows != record["rows"]:
        return f"file has {file_rows} rows, its record {record['rows']}"
    if db_rows and db_rows != file_rows:
        return f"database has {db_rows} rows, the file {file_rows}"
    return None


def describe(check: ArchiveCheck) -> str:
    """One line for a problem: where, and what."""
    where = relative_path(check.day, check.province).rsplit("/", 1)[0]
    return f"{where}: {check.problem}"
