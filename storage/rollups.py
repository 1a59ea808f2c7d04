"""Rollups of results per check and time bucket: what they hold, how they fold and merge.

Three levels, each its own table keyed by (probe_id, uplink, kind, target, bucket_start):

======== ============== ==========================================================
level    table          bucket of ``measured_at``
======== ============== ==========================================================
``5m``   ``rollup_5m``  5 minutes, from the epoch (so from any UTC hour)
``1h``   ``rollup_1h``  one UTC hour
``1d``   ``rollup_1d``  one Asia/Ho_Chi_Minh day, midnight to midnight (UTC+7 all
                        year: Vietnam has kept no summer time since 1975)
======== ============== ==========================================================

Buckets go by when a result was *measured*, not when it arrived: a backlog that arrives hours
late adds to its own past buckets. ``uplink`` is ``""`` for results of no uplink (heartbeat).

A rollup row counts runs and successes, packets sent and received, the latency of successful
runs (``duration_seconds``; not of modem reads or heartbeats) as count, sum, min, max and a
histogram (``storage/latency_bins.py``), and of modem results RSRP, RSRQ and SNR as count, sum,
min and max, and the serving cells seen, as counts per cell (``"mcc-mnc-tac-cid"``). Sums are
floating point: a sum folded in another grouping may differ in its last bits.

Every field merges by addition, min or max, so the rows a writer's transaction inserts are
folded into 5-minute rollups and added to the stored rows with one ``INSERT … ON CONFLICT DO
UPDATE``. A re-sent result, which the insert skips, is never folded. Concurrent writers
(PostgreSQL replicas) stay correct because the merge happens in the database, under the row's
lock; the histogram and cell counts are added key by key there (a subquery over ``json_each``,
or ``jsonb_each_text`` on PostgreSQL). On PostgreSQL the writer folds in Python (``fold_5m``) in
its own transaction (``RollupWriter.write_fine``). On SQLite it records the rowid range it
inserted (``rollup_pending``) and the leader folds the ranges in SQL (``fold_select_sql``,
value for value what ``fold_5m`` does; ``fold_pending``, and first thing in
``derive_marked``), so that SQLite's one writer is not held by it.

Hourly and daily rows are *derived*: in the same transaction the writer marks each (check,
hour) whose 5-minute rows it changed (``rollup_marks``), and the detector's leader, on its
own schedule (``derive``), rebuilds the marked hours from their 5-minute rows, moves the days
they lie in by what those hours gained since their stored rows (an hour only ever gains
results: counts and sums by their difference, minima and maxima by the new hour's), writes
both and deletes the marks, in one transaction. Rebuilt from the finer rows and compared with
the stored ones in the same transaction, a derivation is idempotent: one that is cut short
(SIGKILL, lost connection) leaves its marks for the next, one that runs twice changes
nothing, and a 5-minute row changed while a derivation ran is marked again. On PostgreSQL the
marks taken are locked (``FOR UPDATE SKIP LOCKED``) and a writer re-marks with ``DO UPDATE``,
which waits for that lock and, the mark being gone, inserts it anew; one derivation runs at a
time (a transaction-level advisory lock), so a new leader taking over mid-way loses nothing.
The hourly and daily rows thus trail the 5-minute ones by up to ``rollups.derive_every_seconds``;
a 5-minute bucket lies in one hour and one local day (UTC+7 is a whole number of hours), so
the three levels hold the same counts once derived. ``fold`` folds raw rows at every level at
once and ``recompute`` folds every stored raw row, for the tests, the benchmark and ``rebuild``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, Table, delete, select

from lomsong.storage import latency_bins
from lomsong.storage.database import enable_immediate_transactions, write_transaction
from lomsong.storage.schema import (
    results,
    rollup_1d,
    rollup_1h,
    rollup_5m,
    rollup_marks,
    rollup_pending,
)
from lomsong.timefmt import LOCAL_TZ

#: The local day's offset from UTC in seconds (fixed: see the module docstring).
LOCAL_OFFSET_SECONDS = int(LOCAL_TZ.utcoffset(datetime(2026, 1, 1)).total_seconds())  # type: ignore[union-attr]

#: (probe_id, uplink, kind, target, bucket_start)
Key = tuple[str, str, str, str, int]

#: Kinds whose ``duration_seconds`` is not a network latency.
NO_LATENCY_KINDS = frozenset({"modem", "heartbeat"})
SIGNALS = ("rsrp", "rsrq", "snr")
_SIGNAL_COLUMNS = {"rsrp": "rsrp_dbm", "rsrq": "rsrq_db", "snr": "snr_db"}


@dataclass(frozen=True)
class Level:
    name: str
    table: Table
    seconds: int
    #: the bucket's start is ``floor((t + offset) / seconds) * seconds - offset``
    offset: int = 0

    def bucket(self, t: float) -> int:
        return math.floor((t + self.offset) / self.seconds) * self.seconds - self.offset


LEVELS = (
    Level("5m", rollup_5m, 300),
    Level("1h", rollup_1h, 3600),
    Level("1d", rollup_1d, 86_400, LOCAL_OFFSET_SECONDS),
)
LEVEL_BY_NAME = {lv.name: lv for lv in LEVELS}


@dataclass(slots=True)
class Stat:
    """count, sum, min, max of one measure."""

    count: int = 0
    total: float = 0.0
    low: float | None = None
    high: float | None = None

    def add(self, v: float) -> None:
        self.count += 1
        self.total += v
        if self.low is None or v < self.low:
            self.low = v
        if self.high is None or v > self.high:
            self.high = v

    def merge(self, o: Stat) -> None:
        self.count += o.count
        self.total += o.total
        if o.low is not None and (self.low is None or o.low < self.low):
            self.low = o.low
        if o.high is not None and (self.high is None or o.high > self.high):
            self.high = o.high

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None


@dataclass(slots=True)
class Rollup:
    """One bucket of one check: everything a rollup row holds."""

    runs: int = 0
    successes: int = 0
    packets_sent: int = 0
    packets_received: int = 0
    rtt: Stat = field(default_factory=Stat)
    hist: dict[int, int] = field(default_factory=dict)
    rsrp: Stat = field(default_factory=Stat)
    rsrq: Stat = field(default_factory=Stat)
    snr: Stat = field(default_factory=Stat)
    cells: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, kind: str, rows: Sequence[Mapping[Any, Any]]) -> Rollup:
        """The rollup of one check's ``rows`` (of one kind; NULL columns may be absent), in a
        few passes of built-ins: the writer folds every result it stores."""
        r = cls(runs=len(rows))
        oks = [row for row in rows if row.get("ok")]
        r.successes = len(oks)
        if kind not in NO_LATENCY_KINDS:
            lat = [d for row in oks if (d := row.get("duration_seconds")) is not None]
            if lat:
                r.rtt = Stat(len(lat), sum(lat), min(lat), max(lat))
                r.hist = latency_bins.count_bins(lat)
            sent = [n for row in rows if (n := row.get("packets_sent")) is not None]
            if sent:
                r.packets_sent = sum(sent)
                r.packets_received = sum(
                    n for row in rows if (n := row.get("packets_received")) is not None
                )
        if kind != "modem":
            return r
        for name, column in _SIGNAL_COLUMNS.items():
            vs = [v for row in rows if (v := row.get(column)) is not None]
            if vs:
                setattr(r, name, Stat(len(vs), sum(vs), min(vs), max(vs)))
        if any(row.get("cid") is not None for row in rows):
            for row in rows:
                if row.get("cid") is not None:
                    r._count_cell(row)
        return r

    def _count_cell(self, row: Mapping[Any, Any]) -> None:
        get = row.get
        area = get("tac")
        if area is None:
            area = get("lac")
        cell = f"{get('mcc') or ''}-{get('mnc') or ''}-{'' if area is None else area}-{get('cid')}"
        self.cells[cell] = self.cells.get(cell, 0) + 1

    def merge(self, o: Rollup) -> None:
        self.runs += o.runs
        self.successes += o.successes
        self.packets_sent += o.packets_sent
        self.packets_received += o.packets_received
        self.rtt.merge(o.rtt)
        latency_bins.merge(self.hist, o.hist)
        self.rsrp.merge(o.rsrp)
        self.rsrq.merge(o.rsrq)
        self.snr.merge(o.snr)
        for c, n in o.cells.items():
            self.cells[c] = self.cells.get(c, 0) + n

    @property
    def top_cell(self) -> str | None:
        """The serving cell seen most (ties: the smallest name)."""
        if not self.cells:
            return None
        return min(self.cells.items(), key=lambda kv: (-kv[1], kv[0]))[0]

    def params(self) -> tuple[Any, ...]:
        """The row's values after its key, in ``VALUE_COLUMNS`` order."""
        t, p, q, n = self.rtt, self.rsrp, self.rsrq, self.snr
        return (
            self.runs, self.successes, self.packets_sent, self.packets_received,
            t.count, t.total, t.low, t.high, p.count, p.total, p.low, p.high,
            q.count, q.total, q.low, q.high, n.count, n.total, n.low, n.high,
            latency_bins.dumps(self.hist),
            orjson.dumps(self.cells).decode() if self.cells else "{}",
        )  # fmt: skip

    @classmethod
    def from_values(cls, values: Sequence[Any]) -> Rollup:
        """The inverse of ``params``: a row read back."""
        r = cls(int(values[0]), int(values[1]), int(values[2]), int(values[3]))
        stats = [Stat(int(values[i]), float(values[i + 1]), values[i + 2], values[i + 3])
                 for i in (4, 8, 12, 16)]  # fmt: skip
        r.rtt, r.rsrp, r.rsrq, r.snr = stats
        r.hist = latency_bins.loads(values[20])
        cells = values[21]
        if cells and cells != "{}":
            r.cells = orjson.loads(cells)
        return r


KEY_COLUMNS = ("probe_id", "uplink", "kind", "target", "bucket_start")
_ADDED = ("runs", "successes", "packets_sent", "packets_received")
VALUE_COLUMNS: tuple[str, ...] = (
    *_ADDED,
    *(f"{m}_{p}" for m in ("rtt", *SIGNALS) for p in ("count", "sum", "min", "max")),
    "hist",
    "cells",
)

Folded = dict[str, dict[Key, Rollup]]


def fold_5m(rows: Iterable[Mapping[Any, Any]]) -> dict[Key, Rollup]:
    """The 5-minute rollups of ``rows``."""
    by_key: dict[Key, list[Mapping[Any, Any]]] = {}
    for row in rows:
        key = (
            row["probe_id"],
            row.get("uplink") or "",
            row["kind"],
            row["target"],
            math.floor(row["measured_at"] / 300) * 300,
        )
        same = by_key.get(key)
        if same is None:
            by_key[key] = [row]
        else:
            same.append(row)
    return {key: Rollup.of(key[2], same) for key, same in by_key.items()}


def coarsen(fine: Mapping[Key, Rollup], level: Level) -> dict[Key, Rollup]:
    """Rollups of finer buckets merged into ``level``'s buckets."""
    coarse: dict[Key, Rollup] = {}
    # A coarse bucket with one fine bucket shares its rollup (never changed after this): the
    # writer's groups span a minute or two, so that is most of them.
    merged: set[Key] = set()
    for (p, u, k, tg, b), r in fine.items():
        key = (p, u, k, tg, level.bucket(b))
        c = coarse.get(key)
        if c is None:
            coarse[key] = r
            continue
        if key not in merged:
            merged.add(key)
            c = coarse[key] = _copy(c)
        c.merge(r)
    return coarse


def fold(rows: Iterable[Mapping[Any, Any]]) -> Folded:
    """The rollups of ``rows`` at every level, by level name: 5-minute ones from the rows,
    hourly and daily ones merged from those."""
    fine = fold_5m(rows)
    out: Folded = {LEVELS[0].name: fine}
    for level in LEVELS[1:]:
        out[level.name] = coarsen(fine, level)
    return out


def _copy(r: Rollup) -> Rollup:
    c = Rollup()
    c.merge(r)
    return c


def upsert_sql(table: str, dialect: str) -> str:
    """The additive upsert of one level, in the driver's parameter style."""
    p = "?" if dialect == "sqlite" else "%s"
    columns = (*KEY_COLUMNS, *VALUE_COLUMNS)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([p] * len(columns))}) "
        f"{_on_conflict_add(table, dialect)}"
    )


def _on_conflict_add(table: str, dialect: str) -> str:
    """The upsert's ``ON CONFLICT`` clause that adds the new values to the stored row."""
    least, greatest = ("min", "max") if dialect == "sqlite" else ("least", "greatest")
    sets = []
    for c in VALUE_COLUMNS:
        old, new = f"{table}.{c}", f"excluded.{c}"
        if c.endswith("_min") or c.endswith("_max"):
            fn = least if c.endswith("_min") else greatest
            sets.append(f"{c} = {fn}(coalesce({old}, {new}), coalesce({new}, {old}))")
        elif c in ("hist", "cells"):
            sets.append(f"{c} = {_merge_counts(old, new, dialect)}")
        else:
            sets.append(f"{c} = {old} + {new}")
    return f"ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET {', '.join(sets)}"


@functools.cache
def fold_select_sql(dialect: str, source: str, where: str = "true") -> str:
    """The query that folds the raw rows of ``source`` (a table of ``results``' columns)
    that match ``where`` into 5-minute rollups, one row per key (``KEY_COLUMNS``, then
    ``VALUE_COLUMNS``): what ``fold_5m`` does in Python, value for value.

    Nothing of the rows passes through Python: on SQLite the query runs with the GIL
    released, beside the event loop. The rows are sorted once, by check, bucket, latency bin
    and serving cell (a row has at most one of those two); the groups, a few per bucket, are
    then merged per bucket. The latency bin is ``latency_bins.bin_of`` in SQL (the same ``ln``
    of the same doubles, so the same bin); its constants come as the parameters
    ``FOLD_PARAMS``. Buckets go by ``measured_at``, which is always positive (``wire``), so
    truncation is the floor.
    """
    sqlite = dialect == "sqlite"

    def pm(name: str) -> str:  # a named parameter in the driver's style
        return f":{name}" if sqlite else f"%({name})s"

    key = "probe_id, uplink, kind, target, bucket_start"
    bucket = (
        "CAST(measured_at / 300 AS INTEGER) * 300"
        if sqlite
        else "CAST(floor(measured_at / 300) AS BIGINT) * 300"
    )
    no_latency = ", ".join(f"'{k}'" for k in sorted(NO_LATENCY_KINDS))
    modem = "kind = 'modem'"
    signals = ", ".join(
        f"CASE WHEN {modem} THEN {column} END AS {name}" for name, column in _SIGNAL_COLUMNS.items()
    )
    cell = (
        "coalesce(mcc, '') || '-' || coalesce(mnc, '') || '-' || "
        "coalesce(CAST(coalesce(tac, lac) AS TEXT), '') || '-' || CAST(cid AS TEXT)"
    )
    integer = "INTEGER" if sqlite else "BIGINT"
    bin_ = (
        f"CASE WHEN d > {pm('low')} THEN {'max' if sqlite else 'greatest'}(1, "
        f"CAST(ceil(ln(d / {pm('low')}) / {pm('step')}) AS {integer})) ELSE 0 END"
    )
    stat = ("d", *_SIGNAL_COLUMNS)
    stats = ", ".join(
        f"count({v}) AS {v}_n, coalesce(sum({v}), 0.0) AS {v}_sum, min({v}) AS {v}_min, "
        f"max({v}) AS {v}_max"
        for v in stat
    )
    # A bucket's bins and cells are gathered into a JSON array as its rows are grouped, and
    # counted per value from that array: a second sort of every row by bin and cell cost a
    # third more (SQLite).
    if sqlite:
        gather, each = "json_group_array", "json_each"
        count_of = "json_group_object(value, n)"
    else:
        gather, each = "jsonb_agg", "jsonb_array_elements_text"
        count_of = "CAST(jsonb_object_agg(value, n) AS TEXT)"

    def counted(array: str) -> str:
        return (
            f"coalesce((SELECT {count_of} FROM (SELECT value, count(*) AS n FROM {each}({array}) "
            "GROUP BY value) AS c), '{}')"
        )

    ctes = (
        f"WITH new AS (SELECT probe_id, coalesce(uplink, '') AS uplink, kind, target, "
        f"{bucket} AS bucket_start, CASE WHEN ok THEN 1 ELSE 0 END AS good, "
        f"CASE WHEN ok AND kind NOT IN ({no_latency}) THEN duration_seconds END AS d, "
        f"CASE WHEN kind NOT IN ({no_latency}) THEN packets_sent END AS sent, "
        f"CASE WHEN kind NOT IN ({no_latency}) THEN packets_received END AS received, "
        f"{signals}, CASE WHEN {modem} AND cid IS NOT NULL THEN {cell} END AS cell "
        f"FROM {source} WHERE {where}), "
        f"folded AS (SELECT {key}, count(*) AS runs, sum(good) AS good, "
        "coalesce(sum(sent), 0) AS sent, "
        "CASE WHEN count(sent) > 0 THEN coalesce(sum(received), 0) ELSE 0 END AS received, "
        f"{stats}, {gather}({bin_}) FILTER (WHERE d IS NOT NULL) AS bins, "
        f"{gather}(cell) FILTER (WHERE cell IS NOT NULL) AS cells "
        "FROM new GROUP BY 1, 2, 3, 4, 5)"
    )
    values = ", ".join(f"{v}_n, {v}_sum, {v}_min, {v}_max" for v in stat)
    select = (
        f"SELECT {key}, runs, good, sent, received, {values}, {counted('bins')}, "
        f"{counted('cells')} FROM folded ORDER BY 1, 2, 3, 4, 5"
    )
    return f"{ctes} {select}"


#: The constants of ``fold_select_sql``'s latency bin, as parameters (exact doubles, not decimals).
FOLD_PARAMS = {"low": latency_bins.MIN_SECONDS, "step": latency_bins.LOG_GAMMA}


def _merge_counts(old: str, new: str, dialect: str) -> str:
    """SQL adding two JSON objects of counts key by key, inside the upsert (under the row's
    lock: no writer reads a histogram and writes it back): the old object with each new key's
    count added."""
    if dialect == "sqlite":
        # In SQL, not a Python function: SQLite calls one with the GIL taken back for every
        # row it merges, from inside the upsert, and the writer then waits on the event loop
        # (up to the interpreter's 5-ms switch interval) once a row. A few µs more CPU, none
        # of it under the GIL.
        added = (
            f"SELECT json_patch({old}, json_group_object(n.key, n.value + "
            f"coalesce(json_extract({old}, '$.\"' || n.key || '\"'), 0))) FROM json_each({new}) n"
        )
        agg = added
    else:
        # 14 µs where a union of both objects grouped by key took 38 µs (PostgreSQL 15)
        added = (
            f"SELECT jsonb_object_agg(n.key, n.value::bigint + "
            f"coalesce(({old}::jsonb ->> n.key)::bigint, 0)) FROM jsonb_each_text({new}::jsonb) n"
        )
        agg = f"SELECT (coalesce({old}, '{{}}')::jsonb || ({added}))::text"
    return f"CASE WHEN {new} = '{{}}' THEN {old} ELSE coalesce(({agg}), '{{}}') END"


def replace_sql(table: str, dialect: str) -> str:
    """The upsert that replaces a derived row (hourly, daily) with a rebuilt one."""
    p = "?" if dialect == "sqlite" else "%s"
    columns = (*KEY_COLUMNS, *VALUE_COLUMNS)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([p] * len(columns))}) "
        f"ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in VALUE_COLUMNS)
    )


HOUR = 3600
#: Marks derived in one transaction: a bound on how long a derivation holds SQLite's lock.
DERIVE_CHUNK = 500
#: The advisory lock (PostgreSQL) that lets one derivation run at a time: "rollups" in ASCII.
DERIVE_LOCK = 0x726F6C6C757073
_MARK_COLUMNS = "probe_id, uplink, kind, target, hour_start"
_JOIN_ON = (
    "r.probe_id = m.probe_id AND r.uplink = m.uplink AND r.kind = m.kind "
    "AND r.target = m.target AND r.bucket_start >= m.lo AND r.bucket_start < m.lo + {span}"
)


class RollupWriter:
    """The upserts of every level for one dialect, built once."""

    def __init__(self, dialect: str) -> None:
        self._dialect = dialect
        self._sqlite = dialect == "sqlite"
        #: the writer leaves rows for ``fold_pending`` (SQLite) rather than fold them itself
        self.pending = self._sqlite
        self._p = p = "?" if self._sqlite else "%s"
        self._sql = {lv.name: upsert_sql(lv.table.name, dialect) for lv in LEVELS}
        self._replace = {lv.name: replace_sql(lv.table.name, dialect) for lv in LEVELS[1:]}
        # PostgreSQL: DO UPDATE, not DO NOTHING, so that a writer waits for a derivation that
        # holds the mark (FOR UPDATE) and, once it deleted it, marks the hour anew
        again = "NOTHING" if self._sqlite else "UPDATE SET hour_start = excluded.hour_start"
        self._mark = (
            f"INSERT INTO rollup_marks ({_MARK_COLUMNS}) VALUES ({', '.join([p] * 5)}) "
            f"ON CONFLICT ({_MARK_COLUMNS}) DO {again}"
        )
        self._unmark = (
            f"DELETE FROM rollup_marks WHERE probe_id = {p} AND uplink = {p} AND kind = {p} "
            f"AND target = {p} AND hour_start = {p}"
        )
        self._take = (
            f"SELECT {_MARK_COLUMNS} FROM rollup_marks ORDER BY {_MARK_COLUMNS} LIMIT {p}"
            + ("" if self._sqlite else " FOR UPDATE SKIP LOCKED")
        )

    def write(self, conn: Connection, folded: Folded) -> int:
        """Add ``folded`` to the tables in ``conn``'s transaction, in key order (so that two
        writers lock rows in one order); return the rows upserted."""
        n = 0
        for level in LEVELS:
            rows = folded.get(level.name)
            if not rows:
                continue
            conn.exec_driver_sql(
                self._sql[level.name], [(*k, *r.params()) for k, r in sorted(rows.items())]
            )
            n += len(rows)
        return n

    def write_fine(self, conn: Connection, fine: Mapping[Key, Rollup]) -> None:
        """PostgreSQL: add the 5-minute rollups of the rows ``conn``'s transaction inserted
        (``fold_5m``) and mark their hours for ``derive``, in that transaction."""
        if fine:
            keys = sorted(fine)
            self.add_fine(conn, [(*k, *fine[k].params()) for k in keys])

    def pend(self, conn: Connection, after_rowid: int) -> None:
        """SQLite: note the rows ``conn``'s transaction inserted after ``after_rowid`` (the
        largest rowid before it inserted any) for ``fold_pending``."""
        # max alone (not in an expression or under HAVING) is one seek, not a scan
        last = conn.exec_driver_sql("SELECT max(rowid) FROM results").scalar()
        # Ranges never overlap: rows deleted at the top of a pending range (a database put
        # back from a copy) give their rowids to new rows, which that range folds.
        top = conn.exec_driver_sql(
            "SELECT last_rowid FROM rollup_pending ORDER BY after_rowid DESC LIMIT 1"
        ).scalar()
        start = max(after_rowid, top or 0)
        if last is not None and last > start:
            conn.exec_driver_sql(
                "INSERT INTO rollup_pending (after_rowid, last_rowid) VALUES (?, ?)",
                (start, last),
            )

    def add_fine(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
        """Add folded 5-minute rows (keys, then values, in key order) to the stored ones and
        mark their hours for ``derive``, in ``conn``'s transaction."""
        if not rows:
            return
        conn.exec_driver_sql(self._sql["5m"], [tuple(r) for r in rows])
        marks = sorted({(r[0], r[1], r[2], r[3], r[4] - r[4] % HOUR) for r in rows})
        conn.exec_driver_sql(self._mark, marks)

    def derive(self, conn: Connection, limit: int = DERIVE_CHUNK) -> int:
        """Rebuild the hourly rows of up to ``limit`` marked (check, hour)s from their 5-minute
        rows and the daily rows of their days from the hourly ones, in ``conn``'s transaction,
        and delete those marks; return how many marks it took (0: none, or another
        derivation holds the lock)."""
        if not self._sqlite:
            got = conn.exec_driver_sql("SELECT pg_try_advisory_xact_lock(%s)", (DERIVE_LOCK,))
            if not got.scalar():
                return 0
        marks = [tuple(m) for m in conn.exec_driver_sql(self._take, (limit,))]
        if not marks:
            return 0
        hourly, daily = LEVELS[1], LEVELS[2]
        hours = self._merged(conn, "rollup_5m", marks, HOUR, hourly)
        # A day moves by what its hours gained: an hour only ever gains results, so the day
        # takes the difference of the counts and sums, and the new hour's minima and maxima.
        # Read and written in this transaction, the difference is exact and counted once.
        before = self._merged(conn, "rollup_1h", sorted(hours), 1, hourly)
        gained: dict[Key, list[Sequence[Any]]] = {}
        for key, now in hours.items():
            p, u, k, t, h = key
            gained.setdefault((p, u, k, t, daily.bucket(h)), []).append(
                _gained(now, before.get(key))
            )
        days = self._merged(conn, "rollup_1d", sorted(gained), 1, daily)
        self._put(conn, "1h", hours)
        self._put(
            conn,
            "1d",
            {
                key: merge_values([days[key], *more] if key in days else more)
                for key, more in gained.items()
            },
        )
        conn.exec_driver_sql(self._unmark, marks)
        return len(marks)

    def _merged(
        self,
        conn: Connection,
        table: str,
        ranges: Sequence[tuple[Any, ...]],
        span: int,
        level: Level,
    ) -> dict[Key, tuple[Any, ...]]:
        """The rows of ``table`` in each check's ``[start, start + span)`` of ``ranges``,
        merged into ``level``'s buckets (values in ``VALUE_COLUMNS`` order)."""
        p = self._p
        values = ", ".join([f"({p}, {p}, {p}, {p}, {p})"] * len(ranges))
        columns = ", ".join(f"r.{c}" for c in (*KEY_COLUMNS, *VALUE_COLUMNS))
        sql = (
            f"WITH m (probe_id, uplink, kind, target, lo) AS (VALUES {values}) "
            f"SELECT {columns} FROM m JOIN {table} r ON {_JOIN_ON.format(span=span)}"
        )
        flat = tuple(v for r in ranges for v in r)
        grouped: dict[Key, list[Sequence[Any]]] = {}
        for row in conn.exec_driver_sql(sql, flat):
            key = (row[0], row[1], row[2], row[3], level.bucket(int(row[4])))
            same = grouped.get(key)
            if same is None:
                grouped[key] = [row[5:]]
            else:
                same.append(row[5:])
        return {key: merge_values(same) for key, same in grouped.items()}

    def _put(self, conn: Connection, level: str, rows: Mapping[Key, Sequence[Any]]) -> None:
        if rows:
            conn.exec_driver_sql(self._replace[level], [(*k, *v) for k, v in sorted(rows.items())])


#: Positions in ``VALUE_COLUMNS`` of the values merged by addition, minimum and maximum.
_ADDED_AT = tuple(
    i for i, c in enumerate(VALUE_COLUMNS) if c in _ADDED or c.endswith(("_count", "_sum"))
)
_LOW_AT = tuple(i for i, c in enumerate(VALUE_COLUMNS) if c.endswith("_min"))
_HIGH_AT = tuple(i for i, c in enumerate(VALUE_COLUMNS) if c.endswith("_max"))
_HIST_AT = VALUE_COLUMNS.index("hist")
_CELLS_AT = VALUE_COLUMNS.index("cells")


def merge_values(rows: Sequence[Sequence[Any]]) -> tuple[Any, ...]:
    """Stored rows' values (``VALUE_COLUMNS``) merged into one row's, as ``Rollup.merge``
    would, without building rollups: what a derivation does with each coarse bucket."""
    if len(rows) == 1:
        return tuple(rows[0])
    out = list(rows[0])
    hist: dict[str, int] = {}
    cells: dict[str, int] = {}
    _add_counts_into(hist, out[_HIST_AT])
    _add_counts_into(cells, out[_CELLS_AT])
    for v in rows[1:]:
        for i in _ADDED_AT:
            out[i] += v[i]
        for i in _LOW_AT:
            if v[i] is not None and (out[i] is None or v[i] < out[i]):
                out[i] = v[i]
        for i in _HIGH_AT:
            if v[i] is not None and (out[i] is None or v[i] > out[i]):
                out[i] = v[i]
        _add_counts_into(hist, v[_HIST_AT])
        _add_counts_into(cells, v[_CELLS_AT])
    out[_HIST_AT] = orjson.dumps(hist).decode() if hist else "{}"
    out[_CELLS_AT] = orjson.dumps(cells).decode() if cells else "{}"
    return tuple(out)


def _gained(now: Sequence[Any], before: Sequence[Any] | None) -> tuple[Any, ...]:
    """What a bucket's values ``now`` hold beyond ``before`` (an earlier state of the same
    bucket, which only ever gains results): counts and sums subtracted, minima and maxima
    those of ``now``."""
    if before is None:
        return tuple(now)
    out = list(now)
    for i in _ADDED_AT:
        out[i] = now[i] - before[i]
    for i in (_HIST_AT, _CELLS_AT):
        counts: dict[str, int] = {}
        _add_counts_into(counts, now[i])
        for k, n in (orjson.loads(before[i]) if before[i] and before[i] != "{}" else {}).items():
            counts[k] = counts.get(k, 0) - n
        more = {k: n for k, n in counts.items() if n}
        out[i] = orjson.dumps(more).decode() if more else "{}"
    return tuple(out)


def _add_counts_into(into: dict[str, int], text: str | None) -> None:
    if text and text != "{}":
        for k, n in orjson.loads(text).items():
            into[k] = into.get(k, 0) + n


#: The columns of ``results`` that ``Rollup.add`` reads.
RAW_COLUMNS = (
    "probe_id",
    "uplink",
    "kind",
    "target",
    "measured_at",
    "ok",
    "duration_seconds",
    "packets_sent",
    "packets_received",
    "rsrp_dbm",
    "rsrq_db",
    "snr_db",
    "mcc",
    "mnc",
    "tac",
    "lac",
    "cid",
)


def recompute(conn: Connection, probe_ids: Sequence[str] | None = None) -> Folded:
    """The rollups of every stored raw result (of ``probe_ids``), folded afresh."""
    query = select(*(results.c[c] for c in RAW_COLUMNS))
    if probe_ids is not None:
        query = query.where(results.c.probe_id.in_(list(probe_ids)))
    return fold(conn.execute(query).mappings())


def read_level(
    conn: Connection, level: str, probe_ids: Sequence[str] | None = None
) -> dict[Key, Rollup]:  # noqa: E501
    """A level's table as stored."""
    table = LEVEL_BY_NAME[level].table
    query = select(*(table.c[c] for c in (*KEY_COLUMNS, *VALUE_COLUMNS)))
    if probe_ids is not None:
        query = query.where(table.c.probe_id.in_(list(probe_ids)))
    out: dict[Key, Rollup] = {}
    for row in conn.execute(query):
        out[(row[0], row[1], row[2], row[3], int(row[4]))] = Rollup.from_values(row[5:])
    return out


def rebuild(conn: Connection) -> int:
    """Replace every rollup with one recomputed from the raw rows (after a period with
    ``rollups.enabled = false``, or rows stored by other means); return the rows written."""
    for level in LEVELS:
        conn.execute(delete(level.table))
    conn.execute(delete(rollup_marks))
    conn.execute(delete(rollup_pending))
    return RollupWriter(conn.dialect.name).write(conn, recompute(conn))


def derive_marked(engine: Engine, *, limit: int = DERIVE_CHUNK, rounds: int = 1_000) -> int:
    """Fold what the writer left pending (SQLite, ``fold_pending``) and derive every marked
    hour (``RollupWriter.derive``), ``limit`` marks a transaction, at most ``rounds``
    transactions; return the marks taken. On SQLite a fold step and a derivation share one
    write transaction: the writer waits for the lock once a step, not twice."""
    enable_immediate_transactions(engine)
    writer = RollupWriter(engine.dialect.name)
    upto = _pending_upto(engine) if writer.pending else None
    total = 0
    for _ in range(rounds):
        step = _FoldStep.read(engine, upto) if upto is not None else None
        with write_transaction(engine) as conn:
            if step is not None:
                step.add(conn, writer)
            n = writer.derive(conn, limit)
        total += n
        if n < limit and step is None:
            break
    return total


#: SQLite: raw rows folded in one ``fold_pending`` step at most (about 6 µs each, outside any
#: lock): a step's write transaction then holds the lock for its upsert of a few thousand
#: 5-minute rows only.
FOLD_CHUNK_ROWS = 50_000
_FOLD_SELECT = "rowid > :lo AND rowid <= :hi"


@dataclass
class _FoldStep:
    """One step of ``fold_pending``: a run of adjacent pending ranges and their fold."""

    taken: list[tuple[int, int]]
    folded: list[Sequence[Any]]

    @classmethod
    def read(cls, engine: Engine, upto: int, max_rows: int = FOLD_CHUNK_ROWS) -> _FoldStep | None:
        """Fold the first run of pending ranges that end at or below the rowid ``upto``,
        without the write lock; None: none pends."""
        with engine.connect() as conn:
            pending = conn.exec_driver_sql(
                "SELECT after_rowid, last_rowid FROM rollup_pending WHERE last_rowid <= ? "
                "ORDER BY after_rowid LIMIT 10000",
                (upto,),
            ).all()
            if not pending:
                return None
            taken = [(int(pending[0][0]), int(pending[0][1]))]
            for lo, hi in pending[1:]:
                if lo != taken[-1][1] or hi - taken[0][0] > max_rows:
                    break
                taken.append((int(lo), int(hi)))
            params = {**FOLD_PARAMS, "lo": taken[0][0], "hi": taken[-1][1]}
            select = fold_select_sql("sqlite", "results", _FOLD_SELECT)
            return cls(taken, list(conn.exec_driver_sql(select, params).all()))

    def add(self, conn: Connection, writer: RollupWriter) -> bool:
        """In ``conn``'s write transaction: delete the ranges and add their fold; False, with
        nothing changed, when another fold took any of them meanwhile (two folds may read
        overlapping runs: the next read takes what is left)."""
        where = "FROM rollup_pending WHERE after_rowid >= ? AND last_rowid <= ?"
        span = (self.taken[0][0], self.taken[-1][1])
        # read under the write lock, which nobody else changes ranges without
        if conn.exec_driver_sql(f"SELECT count(*) {where}", span).scalar() != len(self.taken):
            return False
        conn.exec_driver_sql(f"DELETE {where}", span)
        writer.add_fine(conn, self.folded)
        return True


def _pending_upto(engine: Engine) -> int | None:
    """The end of the last range pending now: a fold takes no range the writer adds while it
    runs (under steady ingest there always is one), so that it ends."""
    with engine.connect() as conn:
        last = conn.exec_driver_sql("SELECT max(last_rowid) FROM rollup_pending").scalar()
    return None if last is None else int(last)


def fold_pending(engine: Engine, *, max_rows: int = FOLD_CHUNK_ROWS, rounds: int = 1_000) -> int:
    """SQLite: fold the raw rows the writer left pending (``rollup_pending``) into the
    5-minute rollups; return how many ranges it folded (0 on PostgreSQL, whose writer folds in
    its own transaction).

    A step folds a run of adjacent ranges in a read transaction, which takes no lock (WAL),
    so the writer goes on inserting meanwhile; then, in one write transaction, it deletes
    those ranges, adds what it folded and marks the hours. A step that finds its ranges
    gone (another fold took them) adds nothing, so a range is folded exactly once; one cut
    short by a crash leaves its ranges for the next. Nothing changes the rows of a pending
    range meanwhile: new rows get rowids above every range, and pruning leaves pending rows
    alone (``storage/retention.py``).
    """
    if engine.dialect.name != "sqlite":
        return 0
    enable_immediate_transactions(engine)
    writer = RollupWriter("sqlite")
    upto = _pending_upto(engine)
    done = 0
    for _ in range(rounds):
        step = _FoldStep.read(engine, upto, max_rows) if upto is not None else None
        if step is None:
            break
        with write_transaction(engine) as conn:
            if step.add(conn, writer):
                done += len(step.taken)
    return done
