"""A commune centre's page ``/probes/{id}``: its state now, its 90 days, its charts, its outages.

What an engineer opens after the status page: the centre and its links as they are now, the
90-day availability bar with its uptime figures, per uplink a SmokePing-style latency band
over 24 h, 7 d, 30 d or a year (tabs are plain links, ``?range=7d``: no script), the signal
(RSRP) per operator over the same span, and beneath, the outages of the last 90 days, newest
first, each linking to its own page. One column that reflows to a 390-px phone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

from lomsong.maps import labels as lb
from lomsong.maps.availability_bars import BARS_STYLE
from lomsong.maps.charts import CHART_STYLE, BandPoint, band_chart, lines_chart, loss_legend
from lomsong.maps.pages import both, page
from lomsong.maps.probes import ProbeMarker
from lomsong.maps.status_model import OutageView
from lomsong.maps.status_page import STATUS_STYLE, badge, outage_colour, span, what
from lomsong.words import local_time, operator_name

#: the chart spans a reader can pick: key → (seconds, words)
RANGES: dict[str, tuple[float, tuple[str, str]]] = {
    "24h": (86_400.0, ("24 giờ", "24 h")),
    "7d": (7 * 86_400.0, ("7 ngày", "7 d")),
    "30d": (30 * 86_400.0, ("30 ngày", "30 d")),
    "1y": (365 * 86_400.0, ("1 năm", "1 year")),
}
DEFAULT_RANGE = "24h"

PAGE_STYLE = """
.tabs { display: flex; flex-wrap: wrap; gap: 4px; margin: 4px 0 8px; padding: 0;
  list-style: none; }
.tabs a { display: inline-block; padding: 2px 10px; border: 1px solid var(--line);
  border-radius: 12px; text-decoration: none; }
.tabs a[aria-current] { background: var(--head); color: #fff; border-color: var(--head); }
h3 { font-size: 15px; margin: 10px 0 4px; overflow-wrap: anywhere; }
"""


@dataclass(frozen=True)
class UplinkChart:
    """One uplink's latency band, from the check it is drawn from (icmp when it has one)."""

    uplink: str
    operator: str | None
    kind: str
    points: Sequence[BandPoint]


@dataclass
class ProbeHistory:
    """Everything the page shows of a centre's past over the chosen range."""

    range_key: str
    since: float
    until: float
    charts: list[UplinkChart] = field(default_factory=list)
    #: uplink → (operator, [(bucket start, seconds, mean RSRP dBm)])
    rsrp: dict[str, tuple[str | None, list[tuple[float, float, float]]]] = field(
        default_factory=dict
    )


def probe_page(
    marker: ProbeMarker,
    province_name: str,
    bars: str,
    history: ProbeHistory,
    outages: Sequence[OutageView],
    *,
    now: float,
    who: str,
    outage_days: int = 90,
) -> str:
    title = f"{marker.commune_name} ({marker.commune_code}) — {marker.id}"
    body = "".join(
        (
            _facts(marker, province_name, now),
            f"<h2>{both(('Khả dụng 90 ngày', 'Availability, 90 days'))}</h2>",
            bars,
            _charts(history),
            _outages(outages, now, outage_days),
        )
    )
    return page(
        title,
        body,
        who=who,
        style=STATUS_STYLE + BARS_STYLE + CHART_STYLE + PAGE_STYLE,
    )


def _facts(m: ProbeMarker, province_name: str, now: float) -> str:
    f = lb.FIELDS
    uplinks = "".join(
        f'<li data-uplink="{escape(u.name)}">{escape(u.name)} '
        f"({escape(operator_name(u.operator, 'vi'))}): {badge(u.state)}</li>"
        for u in m.uplinks
    )
    since = ""
    if m.since is not None and m.state != "up":
        since = (
            f" · {both(lb.WORDS['from'])} {escape(local_time(m.since))} "
            f'(<span class="for">{span(now - m.since)}</span>)'
        )
    seen = "—" if m.last_seen is None else escape(local_time(m.last_seen))
    label = f" — {escape(m.label)}" if m.label else ""
    return (
        f'<section id="probe" data-probe="{escape(m.id)}" data-state="{escape(m.state)}">'
        f'<p><a href="/?province={escape(m.province_code)}">{escape(province_name)}</a> · '
        f'<a href="/maps/province/{escape(m.province_code)}">{both(f["map"])}</a></p>'
        f'<h2 class="title">{escape(m.commune_name)} ({escape(m.commune_code)}) '
        f"{badge(m.state)}</h2>"
        f"<p>{escape(m.id)}{label}{since}</p>"
        f'<ul class="chips uplinks">{uplinks}</ul>'
        f'<p class="muted">{both(f["last_seen"])}: {seen}</p></section>'
    )


def _tabs(current: str) -> str:
    items = "".join(
        f'<li><a href="?range={key}"{" aria-current=page" if key == current else ""}>'
        f"{both(words)}</a></li>"
        for key, (_s, words) in RANGES.items()
    )
    return f'<ul class="tabs" id="ranges">{items}</ul>'


def _charts(h: ProbeHistory) -> str:
    words = RANGES[h.range_key][1]
    parts = [
        f'<h2 id="latency">{both(("Độ trễ và mất gói", "Latency and loss"))} — {both(words)}</h2>',
        _tabs(h.range_key),
    ]
    if not h.charts:
        parts.append(f'<p class="muted">{both(("Chưa có số liệu", "No data yet"))}</p>')
    for c in h.charts:
        op = f" ({operator_name(c.operator, 'vi')})" if c.operator else ""
        head = f"{c.uplink}{op} · {c.kind}"
        parts.append(
            f'<section class="uplink-chart" data-uplink="{escape(c.uplink)}">'
            f"<h3>{escape(head)}</h3>"
            + band_chart(c.points, h.since, h.until, label=f"{head}: ms")
            + "</section>"
        )
    if h.charts:
        parts.append(loss_legend())
    if h.rsrp:
        series = {
            f"{uplink} ({operator_name(op, 'vi')})" if op else uplink: (
                lb.operator_colour(op or ""),
                pts,
            )
            for uplink, (op, pts) in sorted(h.rsrp.items())
        }
        legend = "".join(
            f'<i style="background:{colour}"></i>{escape(name)}'
            for name, (colour, _p) in series.items()
        )
        parts.append(
            f'<h2 id="signal">{both(("Cường độ tín hiệu", "Signal strength"))} (RSRP, dBm)</h2>'
            + lines_chart(series, h.since, h.until, label="RSRP dBm", unit="")
            + f'<p class="legend">{legend}</p>'
        )
    return "".join(parts)


def _outages(rows: Sequence[OutageView], now: float, days: int) -> str:
    head = (
        f'<h2 id="outages">{both(("Sự cố", "Outages"))} — {days} '
        f"{both(('ngày qua', 'days'))} ({len(rows)})</h2>"
    )
    if not rows:
        return head + f'<p class="muted">{both(("Không có", "None"))}</p>'
    items = []
    for o in sorted(rows, key=lambda o: (-o.started_at, o.id)):
        end = now if o.ended_at is None else o.ended_at
        until = (
            both(("đang diễn ra", "ongoing"))
            if o.ended_at is None
            else escape(local_time(o.ended_at))
        )
        items.append(
            f'<li data-outage="{escape(o.id)}" style="border-left-color:{outage_colour(o)}">'
            f"<time>{escape(local_time(o.started_at))} → {until} · "
            f'<span class="for">{span(end - o.started_at)}</span></time>'
            f'<a href="/outages/{escape(o.id)}">{what(o)}</a></li>'
        )
    return f'{head}<ol class="timeline" id="outage-list">{"".join(items)}</ol>'
