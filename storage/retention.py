"""Bounded storage: raw results older than ``retention.raw_days`` go, a whole day at a time.

A day expires when all of it is older than ``raw_days``: with ``now`` and ``cutoff = now −
raw_days × 86,400 s``, every day that ends at or before the start of ``cutoff``'s day goes, and
nothing measured after ``cutoff`` is touched. Days go oldest first; when an archiver is given
(``archive.path`` set) each day is handed to it first and removed only after it returned, so a
failing or killed archive leaves the day in the database, and pruning stops there.

How a day goes depends on the engine:

- PostgreSQL (``results`` partitioned by day, ``partitions``): its partition is detached, and
  any rows of it in the DEFAULT partition deleted, in one short transaction; the detached table
  is counted and dropped in another, which holds no lock on ``results`` — at the end of the same
  run, or (``defer_drop``, the leader's schedule) at the start of the next one. A run killed in
  between leaves the detached table, which the next run counts and drops: it is the record of
  what is still to be counted, so nothing is left behind and nothing counted twice.
- SQLite: its rows are deleted probe by probe in chunks through the (probe_id, measured_at)
  index, each chunk its own short write transaction sized to take about ``CHUNK_TARGET_SECONDS``,
  so the writer never waits long for the lock. The pages freed are reused by new rows, and given
  back to the filesystem by ``PRAGMA incremental_vacuum`` where the file is in incremental
  auto-vacuum mode (every file made by this version).

Every step records the rows it removed, per day and province, in ``pruned_days`` in its own
transaction (``storage/pruned.py``), with the archive file of each province when one was
written; ``lomsong archive verify`` compares the two.

5-minute rollups older than ``retention.rollup_5m_days`` are deleted in chunks too, through
the table's key (``rollup_sql``); hourly and daily rollups are kept.
"""

from __future__ import annotations

import importlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Final

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from lomsong.errors import ConfigError
from lomsong.storage.database import write_transaction
from lomsong.storage.partitions import (
    DEFAULT_PARTITION,
    LOCK_TIMEOUT,
    SCHEMA,
    create_ahead,
    create_partition,
    day_bounds,
    day_of,
    day_start,
    detach_partition,
    detached_days,
    is_partitioned,
    partition_days,
    partition_name,
)
from lomsong.storage.pruned import (
    UNKNOWN_PROVINCE,
    Archived,
    archived_of,
    by_province,
    probe_provinces,
    record_pruned,
    table_counts,
)
from lomsong.storage.rollups import fold_pending

if TYPE_CHECKING:
    from lomsong.config.collector import CollectorSettings

log = logging.getLogger(__name__)

#: What one chunk's transaction should take; its size is steered towards it (SQLite).
CHUNK_TARGET_SECONDS: Final = 0.025
MIN_CHUNK: Final = 100
MAX_CHUNK: Final = 50_000
#: Pages given back to the filesystem per transaction of ``incremental_vacuum``.
VACUUM_PAGES: Final = 500

#: Called with each expiring day before it is removed; raises if the day is not archived.
Archiver = Callable[[date], object]


@dataclass(frozen=True)
class ExpiredDay:
    """A day of raw results that has expired, and how many rows it holds."""

    day: date
    rows: int


@dataclass
class PrunePlan:
    """What pruning at ``now`` removes."""

    now: float
    #: the first day kept whole; every earlier day goes
    keep_from: date
    days: list[ExpiredDay]
    #: rollups of 5-minute buckets that start before this go
    rollup_cutoff: float
    #: rows of ``rollup_5m`` that go; ``None`` where the table does not exist
    rollup_rows: int | None


@dataclass
class PruneReport:
    """What pruning did; ``failed`` names the day whose archive failed, if one did."""

    plan: PrunePlan
    days: list[ExpiredDay] = field(default_factory=list)
    rollup_rows: int = 0
    chunks: int = 0
    #: how long each chunk's transaction took (SQLite: a delete or a vacuum step), seconds
    chunk_seconds: list[float] = field(default_factory=list)
    #: the longest of them
    max_chunk_seconds: float = 0.0
    pages_released: int = 0
    failed: tuple[date, str] | None = None
    #: PostgreSQL: the detached days dropped by this run (an earlier run's too), with their rows
    dropped: list[ExpiredDay] = field(default_factory=list)
    #: PostgreSQL: days detached and left to be dropped by the next run (``defer_drop``)
    pending_drop: list[date] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(d.rows for d in self.days)


def step_hook(step: str, day: date) -> None:
    """Called after each step of pruning a day; the crash tests replace it with one that kills
    the process there. Steps: archived (the archiver returned), detached (PostgreSQL: the
    DETACH committed), dropped (PostgreSQL: the detached table's count and DROP committed),
    chunk (SQLite: a chunk's delete committed)."""


def archiver_for(settings: CollectorSettings, engine: Engine) -> Archiver | None:
    """The archive writer for ``archive.path``, or ``None`` without one.

    The writer is ``lomsong.storage.archive.archive_day(engine, day, root)``; a collector built
    without it refuses to prune rather than prune unarchived days.
    """
    root = settings.archive.path
    if root is None:
        return None
    try:
        archive_day = importlib.import_module("lomsong.storage.archive").archive_day
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"setting archive.path (LOMSONG_ARCHIVE__PATH): {str(root)!r} is set but this "
            f"build has no archive writer ({exc}); nothing is pruned"
        ) from exc

    def archive(day: date) -> object:
        return archive_day(engine, day, root)

    return archive


def keep_from(now: float, raw_days: int) -> date:
    """The oldest day kept: the day of ``now − raw_days``, kept whole."""
    return day_of(now - raw_days * 86_400.0)


def plan_prune(
    engine: Engine, *, now: float, raw_days: int, rollup_5m_days: int, count: bool = True
) -> PrunePlan:
    """What would go at ``now``, counted (``lomsong db prune --dry-run`` prints it); without
    ``count`` the days' rows and the rollups are left 0 (a count reads the whole day)."""
    first = keep_from(now, raw_days)
    rollup_cutoff = day_start(keep_from(now, rollup_5m_days))
    with engine.connect() as conn:
        days = [
            ExpiredDay(d, _count_day(conn, d) if count else 0) for d in _expired_days(conn, first)
        ]
        rollup_rows = None
        if _has_table(conn, "rollup_5m"):
            rollup_rows = 0
            if count:
                sql = rollup_sql(conn.dialect.name)["count"]
                for series in expiring_series(conn, rollup_cutoff):
                    params = (*series, bucket_cutoff(rollup_cutoff))
                    rollup_rows += int(conn.exec_driver_sql(sql, params).scalar_one())
    return PrunePlan(now, first, days, rollup_cutoff, rollup_rows)


def prune(
    engine: Engine,
    *,
    now: float,
    raw_days: int,
    rollup_5m_days: int,
    archiver: Archiver | None = None,
    on_progress: Callable[[int], None] | None = None,
    defer_drop: bool = False,
) -> PruneReport:
    """Remove what expired at ``now``; archive each day first when ``archiver`` is given.

    ``on_progress`` is told the rows removed after each chunk or day (a progress bar). On
    PostgreSQL the coming days' partitions are made too (``partitions.create_ahead``), the days
    an earlier run detached are counted and dropped first, and with ``defer_drop`` the days
    detached now are left for the next run to drop.
    """
    partitioned = _partitioned(engine)
    # PostgreSQL counts a day when it drops it, not beforehand under the plan
    plan = plan_prune(
        engine,
        now=now,
        raw_days=raw_days,
        rollup_5m_days=rollup_5m_days,
        count=not partitioned,
    )
    report = PruneReport(plan)
    if partitioned:
        report.dropped.extend(finish_detached(engine))
        with engine.begin() as conn:
            create_ahead(conn, now)
        _adopt_kept_days(engine, plan.keep_from, day_of(now))
    for expired in plan.days:
        archived: Archived | None = None
        if archiver is not None:
            try:
                archived = archived_of(archiver(expired.day))
            except Exception as exc:
                log.error("archiving %s failed, so it stays in the database: %s", expired.day, exc)
                report.failed = (expired.day, f"{type(exc).__name__}: {exc}")
                break
            step_hook("archived", expired.day)
        if partitioned:
            rows = _detach_day(engine, expired.day, archived)
            if on_progress is not None:
                on_progress(rows)
        else:
            rows = _delete_day(engine, expired.day, report, on_progress, archived)
        report.days.append(ExpiredDay(expired.day, rows))
        log.info("pruned %s: %d raw results", expired.day, rows)
    if partitioned:
        if defer_drop:
            with engine.connect() as conn:
                report.pending_drop = list(detached_days(conn))
        else:
            dropped = finish_detached(engine)
            report.dropped.extend(dropped)
            rows_of = {d.day: d.rows for d in dropped}
            report.days = [ExpiredDay(d.day, d.rows + rows_of.get(d.day, 0)) for d in report.days]
    if plan.rollup_rows is not None:
        report.rollup_rows = _delete_rollups(engine, plan.rollup_cutoff, report)
    if engine.dialect.name == "sqlite" and (report.days or report.rollup_rows):
        report.pages_released = release_free_pages(engine, report)
    return report


# -- which days ------------------------------------------------------------------------------


def _expired_days(conn: Connection, first_kept: date) -> list[date]:
    if is_partitioned(conn):
        days = {d for d in partition_days(conn) if d < first_kept}
        days.update(_days_with_rows(conn, DEFAULT_PARTITION, first_kept))
        return sorted(days)
    return list(_days_with_rows(conn, "results", first_kept))


def _days_with_rows(conn: Connection, table: str, first_kept: date) -> Iterator[date]:
    """The days before ``first_kept`` that hold rows of ``table``, oldest first.

    Each step asks every probe for its oldest result from a time on, an index seek per probe on
    (probe_id, measured_at), rather than scanning the table for its oldest row.
    """
    probes = _probes(conn, table)
    if not probes:
        return
    p = _p(conn)
    oldest = f"SELECT min(measured_at) FROM {table} WHERE probe_id = {p} AND measured_at >= {p}"
    end = day_start(first_kept)
    since = float("-inf")
    while True:
        found = [conn.exec_driver_sql(oldest, (pid, since)).scalar() for pid in probes]
        times = [t for t in found if t is not None]
        if not times or min(times) >= end:
            return
        day = day_of(min(times))
        yield day
        since = day_bounds(day)[1]


def _probes(conn: Connection, table: str) -> list[str]:
    """The probes that have rows in ``table``, by a loose index scan (one seek per probe)."""
    rows = conn.exec_driver_sql(
        f"WITH RECURSIVE p(id) AS (SELECT min(probe_id) FROM {table} UNION ALL "
        f"SELECT (SELECT min(probe_id) FROM {table} WHERE probe_id > p.id) FROM p "
        "WHERE p.id IS NOT NULL) SELECT id FROM p WHERE id IS NOT NULL"
    )
    return [r[0] for r in rows]


def _count_day(conn: Connection, day: date) -> int:
    lo, hi = day_bounds(day)
    if not is_partitioned(conn):
        # probe by probe through the (probe_id, measured_at) index: a count over measured_at
        # alone would read the whole table
        sql = (
            "SELECT count(*) FROM results WHERE probe_id = ? AND measured_at >= ? "
            "AND measured_at < ?"
        )
        return sum(
            int(conn.exec_driver_sql(sql, (pid, lo, hi)).scalar_one())
            for pid in _probes(conn, "results")
        )
    tables = [DEFAULT_PARTITION]
    if day in set(partition_days(conn)):
        tables.append(f"{SCHEMA}.{partition_name(day)}")
    return sum(
        int(
            conn.exec_driver_sql(
                f"SELECT count(*) FROM {t} WHERE measured_at >= %s AND measured_at < %s",
                (lo, hi),
            ).scalar_one()
        )
        for t in tables
    )


def _adopt_kept_days(engine: Engine, first_kept: date, today: date) -> None:
    """PostgreSQL: give a partition to each kept day whose rows wait in DEFAULT (a backlog
    older than the partitions made ahead), so that DEFAULT stays small and the day can later
    be dropped whole."""
    with engine.connect() as conn:
        days = [d for d in _days_with_rows(conn, DEFAULT_PARTITION, today) if d >= first_kept]
    for day in days:
        with engine.begin() as conn:
            create_partition(conn, day)


# -- removing --------------------------------------------------------------------------------


def _detach_day(engine: Engine, day: date, archived: Archived | None) -> int:
    """PostgreSQL: detach the day's partition and delete its strays in DEFAULT, in one short
    transaction (the day is gone from ``results`` when it commits) that records the strays'
    count and the day's archive files; return the strays' count. The detached table's rows are
    counted when it is dropped (``finish_detached``), not here under the lock on ``results``."""
    lo, hi = day_bounds(day)
    with engine.begin() as conn:
        detach_partition(conn, day)
        strays = conn.exec_driver_sql(
            f"WITH gone AS (DELETE FROM {DEFAULT_PARTITION} WHERE measured_at >= %s "
            "AND measured_at < %s RETURNING probe_id) SELECT probe_id, count(*) FROM gone "
            "GROUP BY probe_id",
            (lo, hi),
        ).all()
        record_pruned(conn, day, by_province(conn, {str(p): int(n) for p, n in strays}), archived)
    step_hook("detached", day)
    return sum(int(n) for _p, n in strays)


def finish_detached(engine: Engine) -> list[ExpiredDay]:
    """PostgreSQL: count each detached day table's rows per province, record them and drop the
    table, one transaction a table; return the days and rows. A table only ever leaves
    ``result_days`` in the transaction that records its rows, so a kill at any point leaves each
    day either recorded and dropped or still there to be counted by the next run."""
    done = []
    with engine.connect() as conn:
        pending = detached_days(conn)
    for day, table in pending.items():
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                # the lock first, so that no other pruner counts the table beside this one
                conn.exec_driver_sql(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
                per_province = table_counts(conn, table)
                record_pruned(conn, day, per_province)
                conn.exec_driver_sql(f"DROP TABLE {table}")
        except DBAPIError:
            with engine.connect() as conn:
                if day in detached_days(conn):
                    raise
            log.info("the detached day %s was dropped by another prune meanwhile", day)
            continue
        step_hook("dropped", day)
        rows = sum(per_province.values())
        done.append(ExpiredDay(day, rows))
        log.info("dropped the detached day %s: %d raw results", day, rows)
    return done


def _delete_day(
    engine: Engine,
    day: date,
    report: PruneReport,
    on_progress: Callable[[int], None] | None,
    archived: Archived | None = None,
) -> int:
    """SQLite: delete the day's rows in chunks, each chunk one transaction that goes through
    the probes in turn (by the (probe_id, measured_at) index) until it holds its size, and
    records the rows it deleted per province (the first chunk records the archive files too)."""
    lo, hi = day_bounds(day)
    with engine.connect() as conn:
        probes = _probes(conn, "results")
        where = probe_provinces(conn)
    # Rows the leader has not folded into rollups yet stay for the next run: rollups count
    # every result stored, and a deleted row could lend its rowid to a new one.
    fold_pending(engine)
    sql = (
        "DELETE FROM results WHERE rowid IN (SELECT rowid FROM results "
        "WHERE probe_id = ? AND measured_at >= ? AND measured_at < ? AND rowid <= "
        f"(SELECT coalesce(min(after_rowid), {2**63 - 1}) FROM rollup_pending) LIMIT ?)"
    )
    chunker = _Chunker(report)
    total = 0
    while probes:
        n = 0
        counts: dict[str, int] = {}
        with chunker.timed(engine) as conn:
            while probes and n < chunker.size:
                gone = int(
                    conn.exec_driver_sql(sql, (probes[0], lo, hi, chunker.size - n)).rowcount
                )
                n += gone
                province = where.get(probes[0], UNKNOWN_PROVINCE)
                counts[province] = counts.get(province, 0) + gone
                if n < chunker.size:  # this probe's day is done
                    probes.pop(0)
            record_pruned(conn, day, {p: c for p, c in counts.items() if c}, archived)
        step_hook("chunk", day)
        archived = None  # recorded with the first chunk
        total += n
        if on_progress is not None and n:
            on_progress(n)
    return total


#: a series of 5-minute rollups: the key of ``rollup_5m`` without its ``bucket_start``
_SERIES = "probe_id, uplink, kind, target"
_OF_SERIES = "probe_id = {p} AND uplink = {p} AND kind = {p} AND target = {p}"


def rollup_sql(dialect: str) -> dict[str, str]:
    """The statements that prune ``rollup_5m``, each a range of its key (probe, uplink, kind,
    target, bucket_start), never a scan of ``bucket_start``, which leads no index:

    - ``next``: the first row of the series after the one given, which is that series' oldest
      bucket (``first`` without one): a skip scan of the key, one seek per series;
    - ``series`` (PostgreSQL): the same skip scan in one recursive statement, the series whose
      oldest bucket is before the cutoff (SQLite, in process, takes the seeks one by one);
    - ``count`` and ``delete``: a series' buckets before the cutoff, a chunk at a time.
    """
    p = "?" if dialect == "sqlite" else "%s"
    of = _OF_SERIES.format(p=p)
    after = ", ".join(f"s.{c}" for c in _SERIES.split(", "))
    return {
        "series": f"WITH RECURSIVE s AS ((SELECT {_SERIES}, bucket_start FROM rollup_5m "
        f"ORDER BY {_SERIES}, bucket_start LIMIT 1) UNION ALL SELECT n.* FROM s CROSS JOIN "
        f"LATERAL (SELECT {_SERIES}, bucket_start FROM rollup_5m r WHERE ({_SERIES}) > "
        f"({after}) ORDER BY {_SERIES}, bucket_start LIMIT 1) n) "
        f"SELECT {_SERIES} FROM s WHERE bucket_start < {p}",
        "first": f"SELECT {_SERIES}, bucket_start FROM rollup_5m ORDER BY {_SERIES}, "
        "bucket_start LIMIT 1",
        "next": f"SELECT {_SERIES}, bucket_start FROM rollup_5m WHERE ({_SERIES}) > "
        f"({p}, {p}, {p}, {p}) ORDER BY {_SERIES}, bucket_start LIMIT 1",
        "count": f"SELECT count(*) FROM rollup_5m WHERE {of} AND bucket_start < {p}",
        "delete": f"DELETE FROM rollup_5m WHERE {of} AND bucket_start < {p} AND bucket_start IN "
        "(SELECT bucket_start "
        f"FROM rollup_5m WHERE {of} AND bucket_start < {p} ORDER BY bucket_start LIMIT {p})",
    }


def bucket_cutoff(cutoff: float) -> int:
    """``cutoff`` as the integer ``bucket_start`` is compared with (``bucket_start < c`` holds
    for the same buckets): a float parameter would make PostgreSQL cast the column, and the
    comparison a filter over the series' rows rather than a bound of the key's range."""
    return math.ceil(cutoff)


def expiring_series(conn: Connection, cutoff: float) -> list[tuple[str, str, str, str]]:
    """The series of ``rollup_5m`` whose oldest bucket starts before ``cutoff``, by a skip scan
    of the table's key (one index seek a series, however many buckets each holds)."""
    sql = rollup_sql(conn.dialect.name)
    if conn.dialect.name == "postgresql":
        found = conn.exec_driver_sql(sql["series"], (bucket_cutoff(cutoff),))
        return [(str(a), str(b), str(c), str(d)) for a, b, c, d in found]
    out = []
    row = conn.exec_driver_sql(sql["first"]).first()
    while row is not None:
        series = (str(row[0]), str(row[1]), str(row[2]), str(row[3]))
        if row[4] < cutoff:
            out.append(series)
        row = conn.exec_driver_sql(sql["next"], series).first()
    return out


def _delete_rollups(engine: Engine, cutoff: float, report: PruneReport) -> int:
    """Delete the 5-minute buckets before ``cutoff``, series by series through the key, in
    chunks of about ``CHUNK_TARGET_SECONDS``, each its own transaction."""
    with engine.connect() as conn:
        series = expiring_series(conn, cutoff)
    sql = rollup_sql(engine.dialect.name)["delete"]
    bound = bucket_cutoff(cutoff)
    chunker = _Chunker(report)
    total = 0
    while series:
        n = 0
        with chunker.timed(engine) as conn:
            while series and n < chunker.size:
                key = series[0]
                gone = int(
                    conn.exec_driver_sql(sql, (*key, bound, *key, bound, chunker.size - n)).rowcount
                )
                n += gone
                if n < chunker.size:  # this series is done
                    series.pop(0)
        total += n
    return total


class _Chunker:
    """Times each chunk's transaction and steers the chunk's size (rows) so that a chunk takes
    about ``CHUNK_TARGET_SECONDS``."""

    def __init__(self, report: PruneReport, size: int = 500) -> None:
        self.report = report
        self.size = size

    @contextmanager
    def timed(self, engine: Engine) -> Iterator[Connection]:
        """One chunk: a write transaction, timed from BEGIN (the lock taken) to COMMIT."""
        started = time.perf_counter()
        with write_transaction(engine) as conn:
            yield conn
        took = time.perf_counter() - started
        self.report.chunks += 1
        self.report.chunk_seconds.append(took)
        self.report.max_chunk_seconds = max(self.report.max_chunk_seconds, took)
        if took > CHUNK_TARGET_SECONDS * 1.5:
            self.size = max(MIN_CHUNK, self.size // 2)
        elif took < CHUNK_TARGET_SECONDS / 2:
            self.size = min(MAX_CHUNK, self.size * 2)


def release_free_pages(engine: Engine, report: PruneReport | None = None) -> int:
    """SQLite in incremental auto-vacuum mode: give the free pages back to the filesystem, a
    bounded number per transaction; return how many. Other files keep them for new rows."""
    released = 0
    with engine.connect() as conn:
        mode = conn.exec_driver_sql("PRAGMA auto_vacuum").scalar()
    if mode != 2:
        return 0
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        while True:
            free = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar_one())
            conn.rollback()  # no transaction left open between the steps
            if free == 0:
                return released
            step = min(free, VACUUM_PAGES)
            # its own implicit transaction; executescript steps the pragma to its end, where
            # execute would free a single page
            started = time.perf_counter()
            raw.executescript(f"PRAGMA incremental_vacuum({step});")
            took = time.perf_counter() - started
            if report is not None:
                report.chunk_seconds.append(took)
                report.max_chunk_seconds = max(report.max_chunk_seconds, took)
            released += step


# -- small helpers ---------------------------------------------------------------------------


def _partitioned(engine: Engine) -> bool:
    if engine.dialect.name != "postgresql":
        return False
    with engine.connect() as conn:
        return is_partitioned(conn)


def _has_table(conn: Connection, name: str) -> bool:
    if conn.dialect.name == "sqlite":
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return conn.exec_driver_sql(sql, (name,)).first() is not None
    return conn.exec_driver_sql("SELECT to_regclass(%s)", (f"public.{name}",)).scalar() is not None


def _p(conn: Connection) -> str:
    return "?" if conn.dialect.name == "sqlite" else "%s"
