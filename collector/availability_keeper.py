"""Keeps ``availability_daily`` up to date, so that no report or scrape reads raw rows.

Run by the detector leader on a schedule (``pipeline.py``, every
``availability_refresh_seconds``), and by anything that wants the table current now (tests,
the benchmark). A run recomputes, from the ``outages`` table and the pure arithmetic of
``availability.py``:

- **today** (and any day since the last run) for every registered probe;
- every day touched by an outage that changed since the last run (``outages.updated_at``; a
  backfill corrects a silent outage's start, end and cause long after it opened) and every
  day of every outage still open (its length grows), stretched back to the start of any
  outage overlapping them, so that a merged down interval is always whole;
- on the first run, up to ``BACKFILL_DAYS`` days of history.

Closed days are otherwise final. The watermark is the newest ``computed_at`` in the table, so
a new leader carries on where the old one stopped; it is read back ``MARGIN_SECONDS`` early,
since an outage written just before a run may commit just after its read. A probe's days and
months are replaced in one transaction (delete, insert), so a run killed half way leaves each day
either as it was or as it is now, and the next run recomputes what it did not reach.

A month is summed again from its days only for the probes whose older days were recomputed (an
outage changed, or the first run of a day); the scheduled run's usual case, today alone, moves
the month by the difference between today's new and old figures in the same transaction, so the
month stays the sum of its days (and is summed afresh at least once a day).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, or_, select

from lomsong.collector.availability import (
    DayFigures,
    OutageSpan,
    Subject,
    day_start,
    local_day,
    probe_days,
)
from lomsong.collector.registry import ProbeInfo, load_probes
from lomsong.config.alerts import MaintenanceConfig
from lomsong.storage.database import write_transaction
from lomsong.storage.schema import (
    availability_daily,
    availability_monthly,
    availability_probes,
    outages,
    results,
)

log = logging.getLogger(__name__)

#: how far back the first run fills the table
BACKFILL_DAYS = 400
#: outages updated this long before the watermark are read again
MARGIN_SECONDS = 120.0
#: probes written per transaction
CHUNK = 200
#: the conditions availability counts (``degraded`` is not down)
DOWN_CONDITIONS = ("probe_silent", "uplink_down")


class AvailabilityKeeper:
    """Recomputes the days that need it; ``refresh`` answers how many rows it wrote."""

    def __init__(
        self,
        engine: Engine,
        windows: Sequence[MaintenanceConfig] = (),
        *,
        clock: Callable[[], float],
    ) -> None:
        self.engine = engine
        self.windows = tuple(windows)
        self.clock = clock

    def refresh(self) -> int:
        now = self.clock()
        today = local_day(now)
        with self.engine.connect() as conn:
            probes = load_probes(conn)
            first_heard: dict[str, float] = dict(conn.execute(select(availability_probes)).all())
            last = conn.execute(select(func.max(availability_daily.c.computed_at))).scalar()
        new = self._first_heard(set(probes) - set(first_heard))
        first_heard.update(new)
        # per probe, the first day to recompute (through today)
        start: dict[str, date] = {}
        floor = today - timedelta(days=BACKFILL_DAYS)
        since = today if last is None else min(local_day(last), today)
        for pid in probes:
            if pid in first_heard:
                fresh = last is None or pid in new
                start[pid] = max(floor, local_day(first_heard[pid])) if fresh else since
        if last is not None:
            for pid, began in self._changed(float(last) - MARGIN_SECONDS):
                if pid in start:
                    start[pid] = max(floor, min(start[pid], local_day(began)))
        written = 0
        pids = sorted(start)
        for i in range(0, len(pids), CHUNK):
            chunk = pids[i : i + CHUNK]
            spans = self._outages(chunk, start, now)
            rows: list[DayFigures] = []
            for pid in chunk:
                info = probes[pid]
                subject = Subject(
                    pid,
                    info.commune_code,
                    info.province_code,
                    {u.name: u.operator for u in info.uplinks},
                    first_heard[pid],
                )
                rows += probe_days(subject, spans[pid], self.windows, start[pid], today, now)
            written += self._write(chunk, start, rows, probes, now)
        return written

    def _first_heard(self, pids: set[str]) -> dict[str, float]:
        """The oldest result of each probe that has one (an index seek each), stored."""
        found: dict[str, float] = {}
        with self.engine.connect() as conn:
            for pid in sorted(pids):
                oldest = conn.execute(
                    select(func.min(results.c.measured_at)).where(results.c.probe_id == pid)
                ).scalar()
                if oldest is not None:
                    found[pid] = float(oldest)
        if found:
            with write_transaction(self.engine) as conn:
                known = set(
                    conn.execute(
                        select(availability_probes.c.probe_id).where(
                            availability_probes.c.probe_id.in_(sorted(found))
                        )
                    ).scalars()
                )
                fresh = [{"probe_id": p, "first_heard_at": t} for p, t in found.items()]
                fresh = [r for r in fresh if r["probe_id"] not in known]
                if fresh:
                    conn.execute(insert(availability_probes), fresh)
        return found

    def _changed(self, since: float) -> Iterator[tuple[str, float]]:
        """(probe, start) of the outages changed since ``since`` or still open."""
        query = select(outages.c.probe_id, outages.c.started_at).where(
            outages.c.condition.in_(DOWN_CONDITIONS),
            or_(outages.c.updated_at >= since, outages.c.ended_at.is_(None)),
        )
        with self.engine.connect() as conn:
            yield from conn.execute(query)

    def _outages(
        self, pids: Sequence[str], start: dict[str, date], now: float
    ) -> dict[str, list[OutageSpan]]:
        """Each probe's outages overlapping its days, stretched back until no outage
        overlapping them starts earlier (a merged interval is then whole)."""
        found: dict[str, list[OutageSpan]] = defaultdict(list)
        pending = {pid: day_start(start[pid]) for pid in pids}
        while pending:
            by_from: dict[float, list[str]] = defaultdict(list)
            for pid, lo in pending.items():
                by_from[lo].append(pid)
            pending = {}
            for lo, group in by_from.items():
                query = select(
                    outages.c.probe_id,
                    outages.c.condition,
                    outages.c.started_at,
                    outages.c.ended_at,
                    outages.c.cause,
                    outages.c.uplink,
                ).where(
                    outages.c.probe_id.in_(group),
                    outages.c.condition.in_(DOWN_CONDITIONS),
                    outages.c.started_at < now,
                    or_(outages.c.ended_at.is_(None), outages.c.ended_at > lo),
                )
                with self.engine.connect() as conn:
                    rows = conn.execute(query).all()
                earliest: dict[str, float] = {}
                for pid, condition, began, ended, cause, uplink in rows:
                    earliest[pid] = min(earliest.get(pid, lo), began)
                    found[pid].append(OutageSpan(condition, began, ended, cause, uplink))
                for pid in group:
                    if earliest.get(pid, lo) < lo:
                        # something starts before: its day changes too (the merged interval's
                        # length), so read again from there (rarely more than once)
                        found[pid] = []
                        pending[pid] = day_start(local_day(earliest[pid]))
                        start[pid] = local_day(earliest[pid])
        return found

    def _write(
        self,
        pids: Sequence[str],
        start: dict[str, date],
        rows: Sequence[DayFigures],
        probes: dict[str, ProbeInfo],
        now: float,
    ) -> int:
        """Replace the probes' days from their start through today, and their months.

        A probe whose only recomputed day is today (the scheduled run's common case) has its
        month moved by the difference between today's new and old figures; a probe with
        older days recomputed (an outage changed, the first run of a day) has its months summed
        again from their days, which also settles the month's float sums once a day."""
        today = local_day(now)
        d = availability_daily.c
        by_start: dict[date, list[str]] = defaultdict(list)
        for pid in pids:
            by_start[start[pid]].append(pid)
        only_today = by_start.get(today, [])
        with write_transaction(self.engine) as conn:
            old: dict[tuple[str, str], Any] = {}
            if only_today:
                found = conn.execute(
                    select(availability_daily).where(
                        d.probe_id.in_(only_today), d.day == today.isoformat()
                    )
                )
                old = {(r.probe_id, r.uplink): r for r in found}
            for first, group in by_start.items():
                conn.execute(
                    delete(availability_daily).where(
                        d.probe_id.in_(group),
                        d.day >= first.isoformat(),
                        d.day <= today.isoformat(),
                    )
                )
            # driver-level statements with tuples: SQLAlchemy's per-row parameter building
            # was a third of a scheduled run
            p = "?" if conn.dialect.name == "sqlite" else "%s"
            if rows:
                conn.exec_driver_sql(
                    _INSERT_DAY.format(p=p), [_day_values(_row(f, probes, now)) for f in rows]
                )
            resum = {pid for pid in pids if start[pid] != today}
            moved = _month_moves(only_today, old, rows, today, resum)
            if moved:
                conn.exec_driver_sql(
                    _MOVE_MONTH.format(p=p), [_move(f, o, probes, now) for f, o in moved]
                )
            if resum:
                since = min(start[pid] for pid in resum).replace(day=1)
                _sum_months(conn, sorted(resum), since)
        return len(rows)


def _month_moves(
    only_today: Sequence[str],
    old: dict[tuple[str, str], Any],
    rows: Sequence[DayFigures],
    today: date,
    resum: set[str],
) -> list[tuple[DayFigures, Any]]:
    """Today's new figures with their old row, for the probes whose month can move by the
    difference; a probe with a row gone, or whose longest outage shrank (the month's longest
    may have been it), joins ``resum``."""
    todays = {
        (f.probe_id, f.uplink): f for f in rows if f.day == today and f.probe_id in only_today
    }
    for key, was in old.items():
        now_is = todays.get(key)
        if now_is is None or now_is.longest < was.longest_seconds:
            resum.add(key[0])
    return [(f, old.get(key)) for key, f in todays.items() if f.probe_id not in resum]


def _sum_months(conn: Connection, pids: Sequence[str], since: date) -> None:
    """The months of ``pids`` from ``since``'s, summed again from every day of theirs."""
    conn.execute(
        delete(availability_monthly).where(
            availability_monthly.c.probe_id.in_(pids),
            availability_monthly.c.month >= since.isoformat()[:7],
        )
    )
    d = availability_daily.c
    month = func.substr(d.day, 1, 7)
    sums = select(
        d.probe_id,
        d.uplink,
        month,
        func.max(d.commune_code),
        func.max(d.province_code),
        func.max(d.operator),
        *(func.sum(getattr(d, c)) for c in _SUMMED),
        func.max(d.longest_seconds),
        func.max(d.computed_at),
    ).where(d.probe_id.in_(pids), d.day >= since.isoformat())
    sums = sums.group_by(d.probe_id, d.uplink, month)
    columns = ["probe_id", "uplink", "month", "commune_code", "province_code", "operator"]
    columns += [*_SUMMED, "longest_seconds", "computed_at"]
    conn.execute(insert(availability_monthly).from_select(columns, sums))


#: the columns a month sums from its days (``longest_seconds`` is their max)
_SUMMED = (
    "observed_seconds",
    "down_seconds",
    "maintenance_seconds",
    "power_seconds",
    "network_seconds",
    "unknown_seconds",
    "outages",
    "resolved",
    "repair_seconds",
)

#: A month moved by the difference between today's new and old figures (a new month starts
#: from today's); its longest outage is the longer of the two (``_month_moves`` sends the
#: probes whose today's longest shrank to be summed again instead).
_MOVE_MONTH = (
    "INSERT INTO availability_monthly (probe_id, uplink, month, commune_code, province_code, "
    f"operator, {', '.join(_SUMMED)}, longest_seconds, computed_at) VALUES ("
    + ", ".join(["{p}"] * (len(_SUMMED) + 8))
    + ") ON CONFLICT (probe_id, uplink, month) DO UPDATE SET commune_code = "
    "excluded.commune_code, province_code = excluded.province_code, operator = "
    "excluded.operator, "
    + ", ".join(f"{c} = availability_monthly.{c} + {{p}}" for c in _SUMMED)
    + ", longest_seconds = CASE WHEN excluded.longest_seconds > "
    "availability_monthly.longest_seconds THEN excluded.longest_seconds ELSE "
    "availability_monthly.longest_seconds END, computed_at = excluded.computed_at"
)
#: the columns of a day's row
_DAY_COLUMNS = (
    "day",
    "probe_id",
    "uplink",
    "commune_code",
    "province_code",
    "operator",
    *_SUMMED,
    "longest_seconds",
    "computed_at",
)
_INSERT_DAY = (
    f"INSERT INTO availability_daily ({', '.join(_DAY_COLUMNS)}) VALUES ("
    + ", ".join(["{p}"] * len(_DAY_COLUMNS))
    + ")"
)


def _day_values(row: dict[str, object]) -> tuple[object, ...]:
    return tuple(row[c] for c in _DAY_COLUMNS)


def _move(f: DayFigures, old: Any, probes: dict[str, ProbeInfo], now: float) -> tuple[Any, ...]:
    """The parameters of ``_MOVE_MONTH``: the month's row as today's alone would make it, then
    the difference today's new figures make to each sum."""
    new = _row(f, probes, now)
    values = [new["probe_id"], new["uplink"], f.day.isoformat()[:7], new["commune_code"]]
    values += [new["province_code"], new["operator"], *(new[c] for c in _SUMMED)]
    values += [new["longest_seconds"], now]
    was = [getattr(old, c) if old is not None else 0 for c in _SUMMED]
    return (*values, *(new[c] - w for c, w in zip(_SUMMED, was, strict=True)))  # type: ignore[operator]


def _row(f: DayFigures, probes: dict[str, ProbeInfo], now: float) -> dict[str, object]:
    info = probes[f.probe_id]
    return {
        "day": f.day.isoformat(),
        "probe_id": f.probe_id,
        "uplink": f.uplink,
        "commune_code": info.commune_code,
        "province_code": info.province_code,
        "operator": f.operator,
        "observed_seconds": f.observed,
        "down_seconds": f.down,
        "maintenance_seconds": f.maintenance,
        "power_seconds": f.power,
        "network_seconds": f.network,
        "unknown_seconds": f.unknown,
        "outages": f.outages,
        "resolved": f.resolved,
        "repair_seconds": f.repair,
        "longest_seconds": f.longest,
        "computed_at": now,
    }
