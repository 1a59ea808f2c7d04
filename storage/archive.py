"""The open archive: a day of raw results written as Parquet before the database drops it.

Layout under ``archive.path`` (hive partitioning, which DuckDB, pyarrow and Spark read as is)::

    results/date=2026-11-03/province=04/part-00000.parquet

One file per day and province, zstd-compressed, with exactly the columns and types of the
``results`` table (``RESULTS_SCHEMA``). **A day is the Asia/Ho_Chi_Minh day of
``measured_at``** (``storage/partitions.py``: UTC+7 all year), the same day the database is
partitioned, pruned and reported by, so a day is archived whole before it is dropped whole.
The province is the one of the probe's commune; results of a probe that is not registered
go to ``province=unknown``.

Why no crash can leave a gap: the archive never deletes a row. A file is written under a hidden
temporary name (``.part-00000.parquet.tmp``, which no reader's glob matches), fsynced, renamed
into place, and its folder fsynced; only then is it recorded in ``archived_files``. Pruning
deletes a day only after :func:`archive_day` has returned. So after a crash the rows are still in
the database, and the archive holds either no file or a complete one; the next run removes the
temporary file, records a complete unrecorded file once its rows and schema are checked against
the database (or rewrites it), and writes what is missing. Running it again on an archived day
changes nothing.

A result of the day that arrives after the run is not in its file: ``lomsong archive verify``
shows the difference and the next run rewrites the province's file. The leader archives a day
only once it is older than ``retention.raw_days``, and ingest refuses results measured longer
ago than ``ingest.max_past_seconds`` (30 days), so none can arrive between the archive and the
prune that follows it.

A day pruning has begun (SQLite deletes it in chunks; ``pruned_days`` counts what went) is
never rewritten from the rows left: its file is kept when it holds what was pruned and what is
left, rows that arrived after the prune are added to the file's rows, and anything else is an
error that stops pruning the day.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Engine, bindparam, func, select, text
from sqlalchemy.types import BigInteger, Boolean, Float, Integer, String, Text

from lomsong.errors import StorageError
from lomsong.storage.partitions import day_bounds
from lomsong.storage.pruned import (
    UNKNOWN_PROVINCE,
    detached_counts,
    probe_provinces,
    pruned_records,
)
from lomsong.storage.schema import archived_files, results

#: the one file of a day and province; a rewrite replaces it by rename
PART_NAME: Final = "part-00000.parquet"
#: rows written as one Parquet row group (at least; whole probes are gathered)
ROW_GROUP_ROWS: Final = 131_072
_LOCK_NAME: Final = ".archive.lock"


def _arrow_type(column: Any) -> pa.DataType:
    kind = column.type
    if isinstance(kind, BigInteger):
        return pa.int64()
    if isinstance(kind, Integer):
        return pa.int32()
    if isinstance(kind, Float):
        return pa.float64()
    if isinstance(kind, Boolean):
        return pa.bool_()
    if isinstance(kind, String | Text):
        return pa.string()
    raise TypeError(f"results.{column.name}: no Parquet type for {kind!r}")


#: the table's columns, in its order, with its types and nullability
RESULTS_SCHEMA: Final = pa.schema(
    [pa.field(c.name, _arrow_type(c), nullable=bool(c.nullable)) for c in results.columns]
)


#: How the files are encoded: zstd, and the float columns (times, round trips, signal) in
#: BYTE_STREAM_SPLIT, which puts the bytes of equal rank together so that the sign, exponent
#: and leading mantissa bytes, nearly constant along a series, compress away; about 20 % smaller
#: than plain zstd on results (``bench/bench_archive.py``). Every reader named in the module's
#: docstring decodes it (Spark from 3.2, DuckDB from 0.10).
_FLOATS = [f.name for f in RESULTS_SCHEMA if pa.types.is_floating(f.type)]
WRITE_OPTIONS: Final[dict[str, Any]] = {
    "compression": "zstd",
    "compression_level": 9,
    "use_byte_stream_split": _FLOATS,
    "use_dictionary": [n for n in RESULTS_SCHEMA.names if n not in _FLOATS],
}


def step_hook(step: str, province: str) -> None:
    """Called after each step of writing a file; the crash tests replace it with one that
    kills the process there. Steps: temp_written, temp_synced, renamed, dir_synced, recorded."""


@dataclass(frozen=True)
class ArchivedFile:
    """One file of a day: what it holds and what this run did with it.

    ``action``: ``written`` (new), ``rewritten`` (the database had other rows than the file),
    ``recorded`` (a complete file left unrecorded by a crash, checked and recorded), ``kept``
    (already archived), ``missing`` or ``damaged`` (recorded, but gone from disk or no longer
    the file recorded, and its rows no longer in the database: nothing left to write it from).
    """

    province: str
    path: str
    rows: int
    bytes: int
    sha256: str
    action: str


@dataclass(frozen=True)
class ArchivedDay:
    """What :func:`archive_day` left: a file per province that had results that day."""

    day: date
    files: list[ArchivedFile] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """Rows in the day's files: what pruning the day may delete."""
        return sum(f.rows for f in self.files if f.action not in ("missing", "damaged"))


def relative_path(day: date, province: str) -> str:
    return f"results/date={day.isoformat()}/province={province}/{PART_NAME}"


def archive_day(
    engine: Engine, day: date, root: Path, *, clock: Callable[[], float] = time.time
) -> ArchivedDay:
    """Write the results measured on the local ``day`` under ``root``, one Parquet file a province,
    and record each file once it is in place; idempotent, and safe to run again after a crash.

    Returns every file of the day, with what was done to it; raises ``StorageError`` when the
    archive folder cannot be written. The database is only read (and ``archived_files``
    written): pruning the day is the caller's, after this returns.
    """
    root = Path(root)
    try:
        (root / "results").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"archive folder {str(root)!r}: {exc.strerror or exc}") from exc
    with _locked(root):
        _remove_temporaries(root, day)
        counts = day_counts(engine, day)
        recorded = recorded_files(engine, day)
        pruned = {p: r.rows for (_d, p), r in pruned_records(engine, day).items()}
        for (_d, p), n in detached_counts(engine, day).items():  # detached, not yet dropped
            pruned[p] = pruned.get(p, 0) + n
        on_disk = _provinces_on_disk(root, day)
        out = ArchivedDay(day)
        for province in sorted(set(counts) | set(recorded) | on_disk):
            out.files.append(
                _archive_province(
                    engine,
                    root,
                    day,
                    province,
                    counts.get(province),
                    recorded.get(province),
                    pruned.get(province, 0),
                    clock,
                )
            )
    return out


def _archive_province(
    engine: Engine,
    root: Path,
    day: date,
    province: str,
    db: tuple[int, list[str]] | None,
    record: dict[str, Any] | None,
    pruned: int,
    clock: Callable[[], float],
) -> ArchivedFile:
    final = root / relative_path(day, province)
    db_rows = db[0] if db else 0
    found = inspect_file(final) if pruned and final.exists() else None
    if found is not None:
        # some of the day was pruned: never rewrite the file from the rows left alone. Keep it
        # if it holds the pruned rows and those left; add rows that came after the prune.
        if found == pruned + db_rows:
            if record is not None and record["rows"] == found:
                return _file(record, "kept")
            return _record(engine, root, day, province, found, clock, "recorded")
        if found == pruned and db is not None:
            rows = _write(engine, final, day, province, db[1], keep=final)
            return _record(engine, root, day, province, rows, clock, "rewritten")
        raise StorageError(
            f"archive file {relative_path(day, province)!r} has {found:,} rows, but "
            f"{pruned:,} were pruned and {db_rows:,} are left in the database: not rewritten; "
            "see `lomsong archive verify`"
        )
    if record is not None and final.exists():
        if db_rows in (0, record["rows"]) and final.stat().st_size == record["bytes"]:
            return _file(record, "kept")
    elif record is None and final.exists():
        found = inspect_file(final)
        if found is not None and (db_rows == 0 or found == db_rows):
            return _record(engine, root, day, province, found, clock, "recorded")
    if db is None:
        if record is not None:
            return _file(record, "damaged" if final.exists() else "missing")
        raise StorageError(
            f"archive file {relative_path(day, province)!r} is unreadable and its rows are no "
            f"longer in the database"
        )
    action = "written" if record is None and not final.exists() else "rewritten"
    rows = _write(engine, final, day, province, db[1])
    return _record(engine, root, day, province, rows, clock, action)


def _file(record: dict[str, Any], action: str) -> ArchivedFile:
    return ArchivedFile(
        record["province"],
        record["path"],
        record["rows"],
        record["bytes"],
        record["sha256"],
        action,
    )


def _write(
    engine: Engine,
    final: Path,
    day: date,
    province: str,
    probe_ids: list[str],
    *,
    keep: Path | None = None,
) -> int:
    """Write the province's rows of the day to a temporary name, fsync, rename, fsync the
    folders; return the rows written. With ``keep``, that file's rows come first."""
    folder = final.parent
    folder.mkdir(parents=True, exist_ok=True)
    temp = folder / f".{final.name}.tmp"
    start, end = day_bounds(day)
    # One check's series after another (probe, kind, target, uplink, then time): neighbouring
    # rows share their details' keys and their floats' leading bytes, which zstd packs tightly.
    query = (
        select(*results.columns)
        .where(results.c.probe_id == bindparam("probe_id"))
        .where(results.c.measured_at >= start, results.c.measured_at < end)
        .order_by(
            results.c.kind,
            results.c.target,
            results.c.uplink,
            results.c.measured_at,
            results.c.seq,
        )
    )
    rows = 0
    try:
        with (
            engine.connect() as conn,
            pq.ParquetWriter(temp, RESULTS_SCHEMA, **WRITE_OPTIONS) as writer,
        ):
            pending: list[Any] = []
            if keep is not None:
                kept = pq.ParquetFile(keep).read()
                writer.write_table(kept)
                rows += kept.num_rows
            for probe_id in sorted(probe_ids):
                pending.extend(conn.execute(query, {"probe_id": probe_id}))
                if len(pending) >= ROW_GROUP_ROWS:
                    writer.write_table(_arrow_table(pending))
                    rows, pending = rows + len(pending), []
            if pending or not rows:
                writer.write_table(_arrow_table(pending))
                rows += len(pending)
        step_hook("temp_written", province)
        _fsync_file(temp)
        step_hook("temp_synced", province)
        os.replace(temp, final)
        step_hook("renamed", province)
        for made in (folder, folder.parent, folder.parent.parent):
            _fsync_dir(made)
        step_hook("dir_synced", province)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise StorageError(f"archive file {str(final)!r}: {exc.strerror or exc}") from exc
    return rows


def _arrow_table(rows: list[Any]) -> pa.Table:
    if not rows:
        return RESULTS_SCHEMA.empty_table()
    columns = list(zip(*rows, strict=True))
    arrays = [pa.array(v, type=f.type) for v, f in zip(columns, RESULTS_SCHEMA, strict=True)]
    return pa.Table.from_arrays(arrays, schema=RESULTS_SCHEMA)


def _record(
    engine: Engine,
    root: Path,
    day: date,
    province: str,
    rows: int,
    clock: Callable[[], float],
    action: str,
) -> ArchivedFile:
    path = relative_path(day, province)
    full = root / path
    size = full.stat().st_size
    digest = sha256_of(full)
    with engine.begin() as conn:
        conn.execute(
            _RECORD_UPSERT,
            {
                "day": day.isoformat(),
                "province": province,
                "path": path,
                "rows": rows,
                "bytes": size,
                "sha256": digest,
                "at": clock(),
            },
        )
    step_hook("recorded", province)
    return ArchivedFile(province, path, rows, size, digest, action)


_RECORD_UPSERT = text(
    "INSERT INTO archived_files (day, province, path, rows, bytes, sha256, written_at) "
    "VALUES (:day, :province, :path, :rows, :bytes, :sha256, :at) "
    "ON CONFLICT (day, province) DO UPDATE SET path = excluded.path, rows = excluded.rows, "
    "bytes = excluded.bytes, sha256 = excluded.sha256, written_at = excluded.written_at"
)


def day_counts(engine: Engine, day: date) -> dict[str, tuple[int, list[str]]]:
    """Per province, the rows the database holds for the local ``day`` and the probes they are of.

    Only index seeks on ``(probe_id, measured_at)``: the probes that have any results are found
    one after another (the smallest id above the last), then each one's day is counted by a
    range of the index. A scan of ``measured_at`` would read every stored day on SQLite, which
    has no index on it alone.
    """
    start, end = day_bounds(day)
    next_probe = select(func.min(results.c.probe_id)).where(results.c.probe_id > bindparam("after"))
    count = select(func.count()).where(
        results.c.probe_id == bindparam("probe_id"),
        results.c.measured_at >= start,
        results.c.measured_at < end,
    )
    out: dict[str, tuple[int, list[str]]] = {}
    with engine.connect() as conn:
        where = probe_provinces(conn)
        probe_id = conn.execute(next_probe, {"after": ""}).scalar()
        while probe_id is not None:
            n = int(conn.execute(count, {"probe_id": probe_id}).scalar_one())
            if n:
                province = where.get(probe_id, UNKNOWN_PROVINCE)
                rows, ids = out.get(province, (0, []))
                out[province] = (rows + n, [*ids, probe_id])
            probe_id = conn.execute(next_probe, {"after": probe_id}).scalar()
    return out


def recorded_files(engine: Engine, day: date | None = None) -> dict[str, dict[str, Any]]:
    """The recorded files of ``day`` by province (every day's, keyed ``day/province``, when
    ``day`` is None)."""
    query = select(archived_files)
    if day is not None:
        query = query.where(archived_files.c.day == day.isoformat())
    with engine.connect() as conn:
        found = [dict(r._mapping) for r in conn.execute(query)]
    if day is not None:
        return {r["province"]: r for r in found}
    return {f"{r['day']}/{r['province']}": r for r in found}


def inspect_file(path: Path) -> int | None:
    """The rows of a complete archive file of the results' schema; None if it is not one."""
    try:
        parquet = pq.ParquetFile(path)
        ok = parquet.schema_arrow.equals(RESULTS_SCHEMA)
        rows = parquet.metadata.num_rows
    except (OSError, pa.ArrowException):
        return None
    return int(rows) if ok else None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def archived_days(root: Path) -> list[date]:
    """The days that have a folder in the archive."""
    out = []
    for folder in (root / "results").glob("date=*"):
        try:
            out.append(date.fromisoformat(folder.name.removeprefix("date=")))
        except ValueError:
            continue
    return sorted(out)


def _provinces_on_disk(root: Path, day: date) -> set[str]:
    folder = root / "results" / f"date={day.isoformat()}"
    return {
        p.name.removeprefix("province=")
        for p in folder.glob("province=*")
        if (p / PART_NAME).exists()
    }


def _remove_temporaries(root: Path, day: date) -> None:
    for temp in (root / "results" / f"date={day.isoformat()}").glob("province=*/.*.tmp"):
        temp.unlink(missing_ok=True)


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One archiver at a time per archive folder (a manual run beside the leader's)."""
    fd = os.open(root / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
