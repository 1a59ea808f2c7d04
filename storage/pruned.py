"""What pruning removed: rows per local day and province, written with the removal itself.

Each step that removes raw results adds its count here in its own transaction, so the record
and the removal commit together or not at all: a SQLite chunk adds the rows it deleted, a
PostgreSQL DETACH adds the day's rows it deleted from the DEFAULT partition, and the DROP of a
detached day adds the rows the table held, counted just before it is dropped. The archive file
each province's rows were written to (``archive.path``) is recorded beside the count, so
``lomsong archive verify`` can say of every pruned day whether what left the database is what
the archive holds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Final

from sqlalchemy import Connection, Engine, select, text

from lomsong.storage.partitions import detached_days, is_partitioned
from lomsong.storage.schema import communes, probes, pruned_days

#: the province of results whose probe is not (or no longer) registered
UNKNOWN_PROVINCE: Final = "unknown"

#: per province: the rows of its archive file and the file, as an archive run left them
Archived = Mapping[str, tuple[int, str]]


@dataclass(frozen=True)
class PrunedDay:
    """One day and province: the rows pruning removed, and the archive file recorded with them
    (``archived_rows`` is None where no archive was configured)."""

    day: date
    province: str
    rows: int
    archived_rows: int | None
    archive_path: str | None


def probe_provinces(conn: Connection) -> dict[str, str]:
    """Each registered probe's province (a result of another probe is ``UNKNOWN_PROVINCE``'s)."""
    found = conn.execute(
        select(probes.c.id, communes.c.province_code).join(
            communes, communes.c.code == probes.c.commune_code
        )
    )
    return {str(probe_id): str(province) for probe_id, province in found}


def archived_of(result: object) -> Archived | None:
    """Per province, the file an archiver's result names (``storage.archive.ArchivedDay``);
    None for an archiver that says nothing of its files."""
    files = getattr(result, "files", None)
    if files is None:
        return None
    return {
        f.province: (int(f.rows), str(f.path))
        for f in files
        if f.action not in ("missing", "damaged")
    }


_UPSERT = text(
    "INSERT INTO pruned_days (day, province, rows, archived_rows, archive_path, "
    "first_pruned_at, last_pruned_at) VALUES (:day, :province, :rows, :archived_rows, "
    ":archive_path, :at, :at) ON CONFLICT (day, province) DO UPDATE SET "
    "rows = pruned_days.rows + excluded.rows, "
    "archived_rows = coalesce(excluded.archived_rows, pruned_days.archived_rows), "
    "archive_path = coalesce(excluded.archive_path, pruned_days.archive_path), "
    "last_pruned_at = excluded.last_pruned_at"
)


def record_pruned(
    conn: Connection,
    day: date,
    counts: Mapping[str, int],
    archived: Archived | None = None,
    *,
    at: float | None = None,
) -> None:
    """Add ``counts`` (rows removed, per province) to the day's record, inside the caller's
    transaction, the one that removed them. Every province of ``archived`` gets its file
    recorded, with 0 rows if none of its rows went in this step."""
    provinces = set(counts) | set(archived or {})
    if not provinces:
        return
    stamp = time.time() if at is None else at
    conn.execute(
        _UPSERT,
        [
            {
                "day": day.isoformat(),
                "province": province,
                "rows": int(counts.get(province, 0)),
                "archived_rows": (archived or {}).get(province, (None, None))[0],
                "archive_path": (archived or {}).get(province, (None, None))[1],
                "at": stamp,
            }
            for province in sorted(provinces)
        ],
    )


def by_province(conn: Connection, probe_counts: Mapping[str, int]) -> dict[str, int]:
    """Rows per probe summed into rows per province."""
    where = probe_provinces(conn)
    out: dict[str, int] = {}
    for probe_id, n in probe_counts.items():
        if n:
            province = where.get(probe_id, UNKNOWN_PROVINCE)
            out[province] = out.get(province, 0) + int(n)
    return out


def pruned_records(engine: Engine, day: date | None = None) -> dict[tuple[date, str], PrunedDay]:
    """The records of ``day`` (of every day when None), by (day, province)."""
    query = select(pruned_days)
    if day is not None:
        query = query.where(pruned_days.c.day == day.isoformat())
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    out = {}
    for row in rows:
        r = row._mapping
        d = date.fromisoformat(r["day"])
        out[(d, r["province"])] = PrunedDay(
            d, r["province"], int(r["rows"]), r["archived_rows"], r["archive_path"]
        )
    return out


def table_counts(conn: Connection, table: str) -> dict[str, int]:
    """The rows of a table of results (a detached day) per province: one scan of it."""
    counts = conn.exec_driver_sql(f"SELECT probe_id, count(*) FROM {table} GROUP BY probe_id")
    return by_province(conn, {str(p): int(n) for p, n in counts})


def detached_counts(engine: Engine, day: date | None = None) -> dict[tuple[date, str], int]:
    """PostgreSQL: the rows of each day detached and not dropped yet (of ``day`` alone when
    given), per province: pruned from ``results`` but not yet counted in ``pruned_days``."""
    out: dict[tuple[date, str], int] = {}
    with engine.connect() as conn:
        if not is_partitioned(conn):
            return out
        for d, table in detached_days(conn).items():
            if day is not None and d != day:
                continue
            out.update({(d, p): n for p, n in table_counts(conn, table).items()})
    return out
