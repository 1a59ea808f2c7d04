"""What a centre's page draws, read from the rollups and the outages: one query each.

The charts come from ``history.probe_series`` (every check of the probe in one query, at the
resolution the span calls for: 5-minute points for 24 h, hourly for 7 and 30 days, daily for a
year), never from raw results. Each uplink is drawn from its icmp check when it has one (the
only check with packets, so with loss), else from the first of tcp, http and dns it has; the
signal from its modem results.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine, or_, select

from lomsong.collector.history import Point, probe_series
from lomsong.maps.charts import BandPoint
from lomsong.maps.probe_page import RANGES, ProbeHistory, UplinkChart
from lomsong.storage.schema import outages

#: the checks a latency band is drawn from, best first
BAND_KINDS = ("icmp", "tcp", "http", "dns")
#: at most this many outages on a page
OUTAGE_LIMIT = 500


def probe_history(
    engine: Engine,
    probe_id: str,
    operators: Mapping[str, str | None],
    range_key: str,
    now: float,
) -> ProbeHistory:
    """The charts of ``range_key`` ending ``now``; ``operators``: uplink → operator."""
    since = now - RANGES[range_key][0]
    found = probe_series(engine, probe_id, since, now)
    history = ProbeHistory(range_key, since, now)
    for uplink, operator in operators.items():
        kind = next((k for k in BAND_KINDS if (uplink, k) in found), None)
        if kind is not None:
            points = [band_point(p) for p in found[(uplink, kind)]]
            history.charts.append(UplinkChart(uplink, operator, kind, points))
        signal = [
            (float(p.start), float(p.seconds), p.rsrp_mean)
            for p in found.get((uplink, "modem"), [])
            if p.rsrp_mean is not None
        ]
        if signal:
            history.rsrp[uplink] = (operator, signal)
    return history


def band_point(p: Point) -> BandPoint:
    """Loss is the packets lost; for a check that sends none, the runs that failed."""
    loss = p.loss_ratio
    if loss is None and p.success_ratio is not None:
        loss = 1.0 - p.success_ratio
    return BandPoint(float(p.start), float(p.seconds), p.p5, p.p50, p.p95, loss)


def probe_outages(engine: Engine, probe_id: str, since: float) -> list[dict[str, Any]]:
    """The probe's outages open now or ended since ``since``, newest first."""
    query = (
        select(outages)
        .where(outages.c.probe_id == probe_id)
        .where(or_(outages.c.ended_at.is_(None), outages.c.ended_at >= since))
        .order_by(outages.c.started_at.desc(), outages.c.id)
        .limit(OUTAGE_LIMIT)
    )
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]
