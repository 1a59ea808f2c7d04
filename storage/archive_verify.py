"""``lomsong archive verify``: the archive's files against their records, the database and what
pruning removed.

Per day and province four counts are read: the rows in the Parquet file (its footer), the rows
recorded when it was written (``archived_files``), the rows pruning removed (``pruned_days``,
written with each removal; on PostgreSQL a day detached and not yet dropped counts its detached
table too), and the rows the database still holds. They agree when the file holds exactly what
was pruned and what is left: file = pruned + database. A pruned day without a file is data
lost (or, when pruning ran without ``archive.path``, pruned without an archive), and said so; a
day still in the database whose province has no file is not archived yet (``lomsong archive
day``). A day pruned before ``pruned_days`` existed has no count of what was pruned: its file is
then checked against its record only.
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
from lomsong.storage.pruned import PrunedDay, detached_counts, pruned_records


@dataclass(frozen=True)
class ArchiveCheck:
    """One day and province: the counts, and what is wrong (None: nothing).

    ``pruned_rows`` is None where no prune of the day was recorded."""

    day: date
    province: str
    file_rows: int | None
    recorded_rows: int | None
    pruned_rows: int | None
    database_rows: int
    problem: str | None


def verify_archive(
    engine: Engine, root: Path, days: Sequence[date] | None = None, *, checksums: bool = False
) -> list[ArchiveCheck]:
    """Check ``days`` (every day the archive, its records or the prune records know, by
    default); with ``checksums`` each file's sha256 is read and compared with its record too."""
    every = recorded_files(engine)
    pruned = pruned_records(engine)
    detached = detached_counts(engine)
    if days is None:
        known = {date.fromisoformat(key.split("/")[0]) for key in every}
        known |= {d for d, _p in pruned} | {d for d, _p in detached}
        days = sorted(known | set(archived_days(root)))
    out: list[ArchiveCheck] = []
    for day in days:
        records = recorded_files(engine, day)
        in_db = {p: rows for p, (rows, _ids) in day_counts(engine, day).items()}
        gone = _pruned_of(day, pruned, detached)
        folder = root / "results" / f"date={day.isoformat()}"
        on_disk = {
            p.name.removeprefix("province="): p / PART_NAME
            for p in folder.glob("province=*")
            if (p / PART_NAME).exists()
        }
        for province in sorted(set(records) | set(on_disk) | set(in_db) | set(gone)):
            record = records.get(province)
            path = on_disk.get(province)
            file_rows = inspect_file(path) if path is not None else None
            db_rows = in_db.get(province, 0)
            prune = gone.get(province)
            problem = _problem(path, file_rows, record, db_rows, prune)
            if problem is None and checksums and record is not None and path is not None:
                if sha256_of(path) != record["sha256"]:
                    problem = "checksum differs from the record"
            out.append(
                ArchiveCheck(
                    day,
                    province,
                    file_rows,
                    record["rows"] if record else None,
                    prune.rows if prune else None,
                    db_rows,
                    problem,
                )
            )
    return out


def _pruned_of(
    day: date,
    pruned: dict[tuple[date, str], PrunedDay],
    detached: dict[tuple[date, str], int],
) -> dict[str, PrunedDay]:
    out = {p: r for (d, p), r in pruned.items() if d == day}
    for (d, p), n in detached.items():
        if d != day:
            continue
        r = out.get(p)
        if r is None:
            out[p] = PrunedDay(day, p, n, None, None)
        else:
            out[p] = PrunedDay(day, p, r.rows + n, r.archived_rows, r.archive_path)
    return out


def _problem(
    path: Path | None,
    file_rows: int | None,
    record: dict[str, object] | None,
    db_rows: int,
    pruned: PrunedDay | None,
) -> str | None:
    gone = pruned.rows if pruned is not None else 0
    if path is None and record is None:
        if gone and pruned is not None and pruned.archived_rows is None:
            return f"{gone:,} rows pruned without an archive"
        if gone:
            return f"{gone:,} rows pruned, and no archive file"
        return "not archived"
    if path is None:
        return f"file missing ({record['path'] if record else ''})"
    if file_rows is None:
        return "file unreadable or not the results' schema"
    if record is None:
        return "file not recorded (run `lomsong archive day`)"
    if file_rows != record["rows"]:
        return f"file {file_rows:,} rows, record {record['rows']:,}"
    if (gone or db_rows) and gone + db_rows != file_rows:
        return f"file {file_rows:,} rows ≠ pruned {gone:,} + left {db_rows:,}"
    return None


def describe(check: ArchiveCheck) -> str:
    """One line for a problem: where, and what."""
    where = relative_path(check.day, check.province).rsplit("/", 1)[0]
    return f"{where}: {check.problem}"
