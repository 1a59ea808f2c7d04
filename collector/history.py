"""History of a probe's checks over time, read from the rollups: what the charts draw.

For pages and the API (one query per chart, never a scan of raw results)::

    from lomsong.collector.history import series, probe_series

    points = series(engine, "cb-04-001", "viettel-4g", "icmp", since, until)
    for p in points:            # oldest first; a bucket without results has no point
        p.start, p.seconds      # the bucket: epoch seconds of its start, and its length
        p.runs, p.success_ratio, p.loss_ratio
        p.p5, p.p50, p.p95, p.p99          # latency, seconds (within 2 %; None: no success)
        p.rtt_mean, p.rtt_min, p.rtt_max   # seconds
        p.rsrp_min, p.rsrp_mean, p.rsrp_max, p.rsrq_mean, p.snr_mean, p.top_cell  # modem
        p.as_dict()             # the same, JSON-ready

    charts = probe_series(engine, "cb-04-001", since, until)   # {(uplink, kind): [Point]}

``since`` and ``until`` are epoch seconds (``until`` excluded). The resolution is chosen from
the span unless given (``"5m"``, ``"1h"``, ``"1d"``): up to two days 5-minute points (288 for
24 h), up to 35 days hourly ones (168 for 7 d, 720 for 30 d), beyond that daily ones (365 for a
year), days being Asia/Ho_Chi_Minh days. Points of a check with several targets (icmp to the
portal and to a resolver) are merged unless ``target`` is given: their histograms add up, so
the percentiles are those of all the check's runs.

A SmokePing-style band is ``p50`` as the line, ``p5``–``p95`` as the shade and ``loss_ratio``
as the colour (icmp; for checks that send no packets, ``1 − success_ratio``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from sqlalchemy import CompoundSelect, Engine, and_, or_, select, union

from lomsong.storage import latency_bins
from lomsong.storage.rollups import KEY_COLUMNS, LEVEL_BY_NAME, VALUE_COLUMNS, Level, Rollup
from lomsong.storage.schema import rollup_1d, rollup_marks

#: The spans (seconds) up to which a resolution is chosen; beyond the last, daily points.
AUTO_RESOLUTION = ((2 * 86_400.0, "5m"), (35 * 86_400.0, "1h"))
QUANTILES = (0.05, 0.5, 0.95, 0.99)


@dataclass(frozen=True)
class Point:
    """One bucket of a check's history."""

    start: int
    seconds: int
    runs: int
    successes: int
    success_ratio: float | None
    #: lost packets ÷ packets sent; None for checks that send no packets
    loss_ratio: float | None
    p5: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    rtt_mean: float | None
    rtt_min: float | None
    rtt_max: float | None
    rsrp_min: float | None
    rsrp_mean: float | None
    rsrp_max: float | None
    rsrq_mean: float | None
    snr_mean: float | None
    top_cell: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolution_for(since: float, until: float) -> str:
    """The level a chart of ``[since, until)`` reads."""
    span = until - since
    for limit, name in AUTO_RESOLUTION:
        if span <= limit:
            return name
    return "1d"


def series(
    engine: Engine,
    probe_id: str,
    uplink: str,
    kind: str,
    since: float,
    until: float,
    resolution: str | None = None,
    *,
    target: str | None = None,
) -> list[Point]:
    """One check's points, oldest first (see the module docstring)."""
    got = probe_series(
        engine, probe_id, since, until, resolution, uplink=uplink, kind=kind, target=target
    )
    return got.get((uplink, kind), [])


def probe_series(
    engine: Engine,
    probe_id: str,
    since: float,
    until: float,
    resolution: str | None = None,
    *,
    uplink: str | None = None,
    kind: str | None = None,
    target: str | None = None,
) -> dict[tuple[str, str], list[Point]]:
    """Every check of a probe in one query: ``{(uplink, kind): points}`` (uplink ``""`` for the
    heartbeat)."""
    level = _level(resolution or resolution_for(since, until))
    t = level.table
    query = select(*(t.c[c] for c in (*KEY_COLUMNS, *VALUE_COLUMNS))).where(
        t.c.probe_id == probe_id,
        t.c.bucket_start >= level.bucket(since),
        t.c.bucket_start < until,
    )
    if uplink is not None:
        query = query.where(t.c.uplink == uplink)
    if kind is not None:
        query = query.where(t.c.kind == kind)
    if target is not None:
        query = query.where(t.c.target == target)
    with engine.connect() as conn:
        if target is None:
            # The key is (probe, uplink, kind, target, bucket_start): with every check named
            # in full, the range on bucket_start is read from the key instead of each check's
            # whole history (a year of hourly rows, 400 days of 5-minute ones).
            checks: list[tuple[str, str, str]] = [
                (u, k, g)
                for u, k, g in conn.execute(_checks(probe_id))
                if (uplink is None or u == uplink) and (kind is None or k == kind)
            ]
            if not checks:
                return {}
            query = query.where(
                or_(*(and_(t.c.uplink == u, t.c.kind == k, t.c.target == g) for u, k, g in checks))
            )
        rows = conn.execute(query).all()
    return points_of(((r[1], r[2], int(r[4]), r[5:]) for r in rows), level.seconds)


def _checks(probe_id: str) -> CompoundSelect[Any]:
    """The (uplink, kind, target)s a probe has rollups of: those of its daily rows and of the
    hours not yet derived into them (their marks)."""
    d, m = rollup_1d, rollup_marks
    return union(
        select(d.c.uplink, d.c.kind, d.c.target).where(d.c.probe_id == probe_id),
        select(m.c.uplink, m.c.kind, m.c.target).where(m.c.probe_id == probe_id),
    )


def points_of(
    rows: Iterable[tuple[str, str, int, Sequence[Any]]], seconds: int
) -> dict[tuple[str, str], list[Point]]:
    """Rows ``(uplink, kind, bucket_start, values)`` merged per check and bucket into points."""
    grouped: dict[tuple[str, str], dict[int, list[Sequence[Any]]]] = {}
    for uplink, kind, start, values in rows:
        buckets = grouped.setdefault((uplink, kind), {})
        same = buckets.get(start)
        if same is None:
            buckets[start] = [values]
        else:
            same.append(values)
    return {
        check: [_point_of(start, seconds, same) for start, same in sorted(buckets.items())]
        for check, buckets in sorted(grouped.items())
    }


def _point_of(start: int, seconds: int, same: list[Sequence[Any]]) -> Point:
    if len(same) == 1:  # one target: read the row as it is, no rollup built (most points)
        return point_of_values(start, seconds, same[0])
    r = Rollup.from_values(same[0])
    for values in same[1:]:
        r.merge(Rollup.from_values(values))
    return point(start, seconds, r)


def point_of_values(start: int, seconds: int, v: Sequence[Any]) -> Point:
    """``point`` of one stored row (``VALUE_COLUMNS``), read straight from its values."""
    runs, successes, sent, received = int(v[0]), int(v[1]), int(v[2]), int(v[3])
    rtt_count, rsrp_count, rsrq_count, snr_count = int(v[4]), int(v[8]), int(v[12]), int(v[16])
    p5, p50, p95, p99 = latency_bins.quantiles_of_text(v[20], QUANTILES, low=v[6], high=v[7])
    cells = v[21]
    top_cell = None
    if cells and cells != "{}":
        top_cell = min(orjson.loads(cells).items(), key=lambda kv: (-kv[1], kv[0]))[0]
    return Point(
        start=start,
        seconds=seconds,
        runs=runs,
        successes=successes,
        success_ratio=successes / runs if runs else None,
        loss_ratio=(sent - received) / sent if sent else None,
        p5=p5,
        p50=p50,
        p95=p95,
        p99=p99,
        rtt_mean=float(v[5]) / rtt_count if rtt_count else None,
        rtt_min=v[6],
        rtt_max=v[7],
        rsrp_min=v[10],
        rsrp_mean=float(v[9]) / rsrp_count if rsrp_count else None,
        rsrp_max=v[11],
        rsrq_mean=float(v[13]) / rsrq_count if rsrq_count else None,
        snr_mean=float(v[17]) / snr_count if snr_count else None,
        top_cell=top_cell,
    )


def point(start: int, seconds: int, r: Rollup) -> Point:
    """What a chart shows of one bucket's rollup."""
    p5, p50, p95, p99 = latency_bins.quantiles(r.hist, QUANTILES, low=r.rtt.low, high=r.rtt.high)
    sent = r.packets_sent
    return Point(
        start=start,
        seconds=seconds,
        runs=r.runs,
        successes=r.successes,
        success_ratio=r.successes / r.runs if r.runs else None,
        loss_ratio=(sent - r.packets_received) / sent if sent else None,
        p5=p5,
        p50=p50,
        p95=p95,
        p99=p99,
        rtt_mean=r.rtt.mean,
        rtt_min=r.rtt.low,
        rtt_max=r.rtt.high,
        rsrp_min=r.rsrp.low,
        rsrp_mean=r.rsrp.mean,
        rsrp_max=r.rsrp.high,
        rsrq_mean=r.rsrq.mean,
        snr_mean=r.snr.mean,
        top_cell=r.top_cell,
    )


def _level(name: str) -> Level:
    level = LEVEL_BY_NAME.get(name)
    if level is None:
        raise ValueError(
            f"resolution: {name!r} is not a rollup level; expected one of "
            f"{{{', '.join(repr(n) for n in LEVEL_BY_NAME)}}}"
        )
    return level
