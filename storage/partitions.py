"""Raw results by day: the calendar of a result, and PostgreSQL's day partitions of ``results``.

A result belongs to the Asia/Ho_Chi_Minh day of its ``measured_at`` (UTC+7, no daylight
saving), the day the availability reports and the archive count in. The day depends on the
result alone, so a re-sent result lands on the day, and in the partition, it landed on before.

On PostgreSQL ``results`` is partitioned by RANGE on ``measured_at``: one partition a day,
``result_days.results_YYYY_MM_DD``, and a DEFAULT partition ``result_days.results_default`` for a
result of a day that has none yet (a backlog older than any partition, a clock far ahead). The
partitions live in their own schema so that the tables the code knows (``public``) stay the
ones ``storage/schema.py`` draws. The leader creates each day's partition days ahead
(``AHEAD_DAYS``), so in practice the DEFAULT partition stays empty; creating a day whose rows
already wait in DEFAULT moves them into it in the same transaction.

Why a DEFAULT partition rather than creating a partition when an insert fails: an insert that
fails aborts the writer's whole transaction (a group of batches from many probes), which would
have to be replayed after DDL taken from the ingest path; the DEFAULT partition keeps ingest free
of DDL and of a failure mode, at the cost of a scan of the (empty) DEFAULT when a day is made.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from typing import Final

from sqlalchemy import Connection

#: The collector's calendar: Asia/Ho_Chi_Minh, UTC+7 all year round.
LOCAL: Final = timezone(timedelta(hours=7), "Asia/Ho_Chi_Minh")
SCHEMA: Final = "result_days"
DEFAULT_PARTITION: Final = f"{SCHEMA}.results_default"
#: Days made ahead of today: ingest accepts a batch whose clock is up to 7 days ahead
#: (``ingest.max_clock_skew_seconds``), and one more covers the midnight in between.
AHEAD_DAYS: Final = 8
#: How long pruning waits for the lock on ``results`` before trying again at its next run:
#: a DETACH waits behind a long query, and every insert would queue behind the DETACH.
LOCK_TIMEOUT: Final = "5s"

_NAME = re.compile(r"^results_(\d{4})_(\d{2})_(\d{2})$")


def day_of(ts: float) -> date:
    """The local day ``ts`` (epoch seconds) falls on."""
    return datetime.fromtimestamp(ts, LOCAL).date()


def day_start(day: date) -> float:
    """Epoch seconds of ``day``'s local midnight."""
    return datetime(day.year, day.month, day.day, tzinfo=LOCAL).timestamp()


def day_bounds(day: date) -> tuple[float, float]:
    """``[start, end)`` of ``day`` in epoch seconds."""
    start = day_start(day)
    return start, day_start(day + timedelta(days=1))


def partition_name(day: date) -> str:
    return f"results_{day:%Y_%m_%d}"


def is_partitioned(conn: Connection) -> bool:
    """Whether ``results`` is a partitioned table (PostgreSQL after migration 0008)."""
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.exec_driver_sql(
        "SELECT relkind FROM pg_class WHERE oid = to_regclass('public.results')"
    ).scalar()
    return bool(kind == "p")


def partition_days(conn: Connection) -> list[date]:
    """The days that have a partition, oldest first."""
    names = conn.exec_driver_sql(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE i.inhparent = 'public.results'::regclass AND n.nspname = %s",
        (SCHEMA,),
    ).scalars()
    days = []
    for name in names:
        m = _NAME.match(name)
        if m:
            days.append(date(int(m[1]), int(m[2]), int(m[3])))
    return sorted(days)


def create_partition(conn: Connection, day: date) -> bool:
    """Make ``day``'s partition unless it exists; ``True`` if it was made.

    Rows of that day already in the DEFAULT partition move into it in the same transaction:
    attaching checks that DEFAULT holds none of the day, and they would block it otherwise.
    ATTACH takes a lighter lock on ``results`` than CREATE … PARTITION OF, so ingest goes on.
    """
    if day in set(partition_days(conn)):
        return False
    lo, hi = day_bounds(day)
    table = f"{SCHEMA}.{partition_name(day)}"
    conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    conn.exec_driver_sql(f"CREATE TABLE {table} (LIKE public.results INCLUDING DEFAULTS)")
    conn.exec_driver_sql(
        f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE measured_at >= %s "
        f"AND measured_at < %s RETURNING *) INSERT INTO {table} SELECT * FROM moved",
        (lo, hi),
    )
    # The CHECK spares ATTACH a scan of the new table; it is redundant once attached.
    conn.exec_driver_sql(
        f"ALTER TABLE {table} ADD CONSTRAINT day_range "
        f"CHECK (measured_at >= {lo!r} AND measured_at < {hi!r})"
    )
    conn.exec_driver_sql(
        f"ALTER TABLE public.results ATTACH PARTITION {table} FOR VALUES FROM ({lo!r}) TO ({hi!r})"
    )
    conn.exec_driver_sql(f"ALTER TABLE {table} DROP CONSTRAINT day_range")
    return True


def create_ahead(conn: Connection, now: float, days: int = AHEAD_DAYS) -> list[date]:
    """Make the partitions of today and the next ``days`` days; return those made."""
    today = day_of(now)
    made = []
    for i in range(days + 1):
        day = today + timedelta(days=i)
        if create_partition(conn, day):
            made.append(day)
    return made


def detach_partition(conn: Connection, day: date) -> bool:
    """Take ``day``'s partition out of ``results``: its rows leave the table at once, without
    a row-by-row delete. The table stays until pruning drops it (``retention.finish_detached``):
    removing its files is left out of the transaction that holds the lock on ``results``, which
    ingest waits for."""
    if day not in set(partition_days(conn)):
        return False
    conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    conn.exec_driver_sql(
        f"ALTER TABLE public.results DETACH PARTITION {SCHEMA}.{partition_name(day)}"
    )
    return True


def detached_days(conn: Connection) -> dict[date, str]:
    """The day tables of ``result_days`` that are no longer partitions of ``results`` (detached
    by pruning and not dropped yet), by day, with their qualified names."""
    names = conn.exec_driver_sql(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = 'r' AND NOT c.relispartition",
        (SCHEMA,),
    ).scalars()
    out = {}
    for name in names:
        m = _NAME.match(name)
        if m:
            out[date(int(m[1]), int(m[2]), int(m[3]))] = f"{SCHEMA}.{name}"
    return dict(sorted(out.items()))
