"""Availability as people ask for it, read from ``availability_daily`` and
``availability_monthly`` only (never raw rows or outages): a whole month from its stored sums,
days and parts of a month from the days.

- ``report``: per day or month, one row per centre and per uplink, with per-operator and
  per-province totals (the API, its downloads and ``lomsong report availability``);
- ``daily_availability``: the last N days per centre and per province, for the 90-day bars;
- ``uptime``: per centre, the share of the last 1, 7, 30 and 90 days;
- ``window_ratios``: the Prometheus gauges' figures.

Totals add seconds, so a centre with more observed time weighs more: availability of a group
= 1 − Σ down ÷ Σ observed. A window of N days is the N local days ending today, today as far as
it has been computed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

from sqlalchemy import Engine, func, literal, select

from lomsong.collector.availability import CENTRE, Figures, local_day
from lomsong.storage.schema import availability_daily, availability_monthly, communes
from lomsong.storage.schema import provinces as provinces_table

Period = Literal["day", "month"]
Level = Literal["province", "operator", "centre", "uplink"]
#: the windows of the pages' uptime figures and of the gauges
UPTIME_DAYS = (1, 7, 30, 90)

_d = availability_daily.c
_SUMS = (
    func.sum(_d.observed_seconds),
    func.sum(_d.down_seconds),
    func.sum(_d.maintenance_seconds),
    func.sum(_d.power_seconds),
    func.sum(_d.network_seconds),
    func.sum(_d.unknown_seconds),
    func.sum(_d.outages),
    func.sum(_d.resolved),
    func.sum(_d.repair_seconds),
    func.max(_d.longest_seconds),
)


@dataclass
class Row:
    """One line of a report."""

    period: str
    level: Level
    province_code: str
    province_name: str = ""
    commune_code: str | None = None
    commune_name: str | None = None
    probe_id: str | None = None
    uplink: str | None = None
    operator: str | None = None
    figures: Figures = field(default_factory=Figures)

    def as_json(self) -> dict[str, Any]:
        f = self.figures
        return {
            "period": self.period,
            "level": self.level,
            "province": self.province_code,
            "province_name": self.province_name,
            "commune": self.commune_code,
            "commune_name": self.commune_name,
            "probe_id": self.probe_id,
            "uplink": self.uplink,
            "operator": self.operator,
            "availability": None if f.ratio is None else round(f.ratio, 6),
            "observed_seconds": round(f.observed, 3),
            "down_seconds": round(f.down, 3),
            "maintenance_seconds": round(f.maintenance, 3),
            "down_by_cause_seconds": {
                "power": round(f.power, 3),
                "network": round(f.network, 3),
                "unknown": round(f.unknown, 3),
            },
            "outages": f.outages,
            "mttr_seconds": None if f.mttr is None else round(f.mttr, 3),
            "longest_outage_seconds": round(f.longest, 3),
        }


def period_of(day: str, by: Period) -> str:
    return day if by == "day" else day[:7]


def report(
    engine: Engine,
    first: date,
    last: date,
    *,
    by: Period = "month",
    provinces: Collection[str] | None = None,
    commune: str | None = None,
    operator: str | None = None,
) -> list[Row]:
    """Rows per period: each province's total, its per-operator totals, then each centre
    followed by its uplinks. ``operator`` keeps only that operator's uplinks (no centres)."""
    found: list[Any] = []
    with engine.connect() as conn:
        for period, lo, hi in _periods(first, last, by):
            whole = by == "month" and lo.endswith("-01") and _month_end(hi)
            if whole:  # a whole month: its stored sums
                t = availability_monthly.c
                query = select(
                    literal(period),
                    t.probe_id,
                    t.uplink,
                    t.commune_code,
                    t.province_code,
                    t.operator,
                    t.observed_seconds,
                    t.down_seconds,
                    t.maintenance_seconds,
                    t.power_seconds,
                    t.network_seconds,
                    t.unknown_seconds,
                    t.outages,
                    t.resolved,
                    t.repair_seconds,
                    t.longest_seconds,
                ).where(t.month == period)
            else:  # days, or part of a month: summed from the days
                t = _d
                query = (
                    select(
                        _d.day if by == "day" else literal(period),
                        _d.probe_id,
                        _d.uplink,
                        func.max(_d.commune_code),
                        func.max(_d.province_code),
                        func.max(_d.operator),
                        *_SUMS,
                    )
                    .where(_d.day >= lo, _d.day <= hi)
                    .group_by(_d.probe_id, _d.uplink, *((_d.day,) if by == "day" else ()))
                )
            if provinces is not None:
                query = query.where(t.province_code.in_(sorted(provinces)))
            if commune is not None:
                query = query.where(t.commune_code == commune)
            if operator is not None:
                query = query.where(t.operator == operator)
            found += conn.execute(query).all()
        codes = sorted({r[3] for r in found})
        commune_names = dict(
            conn.execute(
                select(communes.c.code, communes.c.name).where(communes.c.code.in_(codes))
            ).all()
        )
        province_names = dict(
            conn.execute(select(provinces_table.c.code, provinces_table.c.name)).all()
        )
    totals: dict[tuple[str, str, str], Row] = {}
    detail: dict[tuple[str, str], list[Row]] = {}
    for period, pid, uplink, commune_code, province, op, *sums in found:
        figures = Figures.of(sums)
        name = province_names.get(province, province)
        level: Level = "centre" if uplink == CENTRE else "uplink"
        row = Row(period, level, province, name, commune_code, commune_names.get(commune_code))
        row.probe_id, row.uplink, row.operator, row.figures = pid, uplink or None, op, figures
        detail.setdefault((period, province), []).append(row)
        group = (period, province, "" if uplink == CENTRE else op or "")
        total = totals.get(group)
        if total is None:
            kind: Level = "province" if uplink == CENTRE else "operator"
            total = totals[group] = Row(period, kind, province, name, operator=op)
        total.figures.add(figures)
    # each period and province: its total, its operators' totals, then centres and uplinks
    out: list[Row] = []
    for group_key in sorted(detail):
        out += sorted(
            (t for (p, prov, _op), t in totals.items() if (p, prov) == group_key),
            key=lambda r: (r.level != "province", r.operator or ""),
        )
        out += sorted(
            detail[group_key],
            key=lambda r: (r.commune_code or "", r.probe_id or "", r.uplink or ""),
        )
    return out


def _month_end(day: str) -> bool:
    d = date.fromisoformat(day)
    return d == date.max or (d + timedelta(days=1)).day == 1


def _next_month(month: date) -> date | None:
    """The first day of the month after ``month``'s; ``None`` after December 9999."""
    if month.month < 12:
        return month.replace(month=month.month + 1, day=1)
    return None if month.year == date.max.year else date(month.year + 1, 1, 1)


def _periods(first: date, last: date, by: Period) -> list[tuple[str, str, str]]:
    """(period, first day, last day) of each query: the whole span when ``by`` is day, else
    each month it touches."""
    if by == "day":
        return [("", first.isoformat(), last.isoformat())]
    out = []
    month: date | None = first.replace(day=1)
    while month is not None and month <= last:
        following = _next_month(month)
        end = date.max if following is None else following - timedelta(days=1)
        lo, hi = max(first, month), min(last, end)
        out.append((month.isoformat()[:7], lo.isoformat(), hi.isoformat()))
        month = following
    return out


def daily_availability(
    engine: Engine,
    probe_ids: Collection[str] | None = None,
    province: str | None = None,
    *,
    days: int = 90,
    today: date | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The last ``days`` local days (oldest first), per centre and per province.

    Give ``probe_ids``, a ``province``, or both. Answers::

        {"days": ["2026-09-03", …, "2026-12-01"],
         "probes": {probe_id: [{"day", "ratio", "outages", "observed_seconds",
                                "down_seconds", "maintenance_seconds"} | None per day]},
         "provinces": {code: [the same, summed over its centres]}}

    A day is ``None`` when nothing was observed that day (before the probe was first heard,
    or not computed yet); ``ratio`` is ``None`` when the whole day was maintenance.
    """
    if today is None:
        today = local_day(now if now is not None else _now())
    first = today - timedelta(days=days - 1)
    calendar = [(first + timedelta(days=i)).isoformat() for i in range(days)]
    query = select(
        _d.day,
        _d.probe_id,
        _d.province_code,
        _d.observed_seconds,
        _d.down_seconds,
        _d.maintenance_seconds,
        _d.outages,
    ).where(_d.uplink == CENTRE, _d.day >= calendar[0], _d.day <= calendar[-1])
    if probe_ids is not None:
        query = query.where(_d.probe_id.in_(sorted(probe_ids)))
    if province is not None:
        query = query.where(_d.province_code == province)
    index = {d: i for i, d in enumerate(calendar)}
    per_probe: dict[str, list[list[float] | None]] = {}
    per_province: dict[str, list[list[float] | None]] = {}
    with engine.connect() as conn:
        for day, pid, prov, observed, down, maint, count in conn.execute(query):
            for table, key in ((per_probe, pid), (per_province, prov)):
                cells = table.setdefault(key, [None] * days)
                cell = cells[index[day]]
                if cell is None:
                    cells[index[day]] = [observed, down, maint, count]
                else:
                    for k, v in enumerate((observed, down, maint, count)):
                        cell[k] += v
    if probe_ids is not None:
        for pid in probe_ids:
            per_probe.setdefault(pid, [None] * days)

    def days_of(cells: list[list[float] | None]) -> list[dict[str, Any] | None]:
        return [
            None
            if c is None
            else {
                "day": calendar[i],
                "ratio": None if c[0] <= 0 else 1.0 - c[1] / c[0],
                "outages": int(c[3]),
                "observed_seconds": c[0],
                "down_seconds": c[1],
                "maintenance_seconds": c[2],
            }
            for i, c in enumerate(cells)
        ]

    return {
        "days": calendar,
        "probes": {k: days_of(v) for k, v in per_probe.items()},
        "provinces": {k: days_of(v) for k, v in per_province.items()},
    }


def uptime(
    engine: Engine,
    probe_ids: Collection[str] | None = None,
    province: str | None = None,
    *,
    windows: Iterable[int] = UPTIME_DAYS,
    today: date | None = None,
    now: float | None = None,
) -> dict[str, dict[str, float | None]]:
    """Per centre, its availability over each window (``"1d"``, ``"7d"``, ``"30d"``, ``"90d"``:
    the N local days ending today); ``None`` where nothing was observed."""
    if today is None:
        today = local_day(now if now is not None else _now())
    out: dict[str, dict[str, float | None]] = {}
    for n, figures in window_figures(engine, windows, today, probe_ids, province, uplinks=False):
        for (pid, _uplink), f in figures.items():
            out.setdefault(pid, {})[f"{n}d"] = f.ratio
    for pid in probe_ids or ():
        out.setdefault(pid, {})
    for values in out.values():
        for n in windows:
            values.setdefault(f"{n}d", None)
    return out


def window_figures(
    engine: Engine,
    windows: Iterable[int],
    today: date,
    probe_ids: Collection[str] | None = None,
    province: str | None = None,
    *,
    uplinks: bool,
) -> Iterable[tuple[int, dict[tuple[str, str], Figures]]]:
    """Per window of N days, the figures of every centre (``uplinks=False``) or every uplink."""
    for n in windows:
        first = (today - timedelta(days=n - 1)).isoformat()
        query = (
            select(_d.probe_id, _d.uplink, *_SUMS)
            .where(_d.day >= first, _d.day <= today.isoformat())
            .where(_d.uplink != CENTRE if uplinks else _d.uplink == CENTRE)
            .group_by(_d.probe_id, _d.uplink)
        )
        if probe_ids is not None:
            query = query.where(_d.probe_id.in_(sorted(probe_ids)))
        if province is not None:
            query = query.where(_d.province_code == province)
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        yield n, {(pid, up): Figures.of(sums) for pid, up, *sums in rows}


def _now() -> float:
    import time

    return time.time()
