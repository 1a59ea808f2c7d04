"""A centre's page and its SVG charts as HTML, built from plain values: the band's shape, the
median coloured by loss, gaps where nothing was measured, the range tabs, the outage list."""

from __future__ import annotations

import re

from lomsong.maps.charts import LOSS, BandPoint, band_chart, lines_chart, loss_colour, nice_ceiling
from lomsong.maps.probe_page import ProbeHistory, UplinkChart, probe_page
from tests.maps.test_status_page import T0, marker, outage

HOUR = 3600.0


def points(n: int, *, gap_at: int | None = None) -> list[BandPoint]:
    out = []
    for i in range(n):
        if i == gap_at:
            continue
        loss = 0.0 if i % 3 else 0.2
        out.append(BandPoint(T0 - (n - i) * HOUR, HOUR, 0.02, 0.03 + i / 1000, 0.05, loss))
    return out


def paths(svg: str, cls: str) -> list[str]:
    return re.findall(rf'<path class="{cls}"[^>]*? d="([^"]*)"', svg)


def test_the_band_is_one_shape_per_run_and_the_median_a_step_per_bucket() -> None:
    svg = band_chart(points(24, gap_at=10), T0 - 24 * HOUR, T0, label="viettel-4g")
    assert svg.startswith('<svg class="chart" data-chart="band"')
    bands = paths(svg, "band")
    assert len(bands) == 2 and all(d.startswith("M") and d.endswith("Z") for d in bands)
    medians = re.findall(r'<path class="median" d="([^"]*)" stroke="(#\w+)"', svg)
    # one path per loss colour: 0 % and ≤ 50 %, 23 steps between them
    assert {c for _d, c in medians} == {loss_colour(0.0), loss_colour(0.2)}
    assert sum(d.count("M") for d, _c in medians) == 23
    assert loss_colour(0.2) == LOSS[3][1]
    # the axis reaches the highest p95 (50 ms) and labels it
    assert nice_ceiling(50 * 1.05) == 100.0 and ">100 ms</text>" in svg


def test_a_bucket_that_lost_everything_is_marked_not_drawn_as_latency() -> None:
    lost = [BandPoint(T0 - HOUR, HOUR, None, None, None, 1.0)]
    svg = band_chart(points(3) + lost, T0 - 4 * HOUR, T0, label="x")
    assert len(paths(svg, "lost")) == 1
    assert band_chart([], T0 - HOUR, T0, label="x").count("No data") == 1


def test_lines_break_where_a_bucket_is_missing() -> None:
    pts = [(T0 - 5 * HOUR, HOUR, -95.0), (T0 - 4 * HOUR, HOUR, -97.0), (T0 - HOUR, HOUR, -90.0)]
    svg = lines_chart({"viettel": ("#00695c", pts)}, T0 - 6 * HOUR, T0, label="RSRP", unit="")
    [d] = paths(svg, "line")
    assert d.count("M") == 2 and d.count("L") == 1
    assert ">-105</text>" in svg and ">-85</text>" in svg


def test_the_page_has_its_facts_tabs_charts_and_outages_newest_first() -> None:
    m = marker("cb-c", "01290", "Xã Bảo Lâm", "down")
    history = ProbeHistory("7d", T0 - 7 * 86_400, T0)
    history.charts = [UplinkChart("viettel-4g", "viettel", "icmp", points(24))]
    history.rsrp = {"viettel-4g": ("viettel", [(T0 - HOUR, HOUR, -101.0)])}
    old = outage("o-old", "uplink_down", started_at=T0 - 5 * 86_400, ended_at=T0 - 4 * 86_400)
    new = outage("o-new", "probe_silent", cause="power")
    html = probe_page(
        m, "Cao Bằng", '<div class="avail"></div>', history, [old, new], now=T0, who="admin"
    )
    assert '<a href="?range=7d" aria-current=page>7 ngày / 7 d</a>' in html
    assert html.count('href="?range=') == 4
    assert 'data-uplink="viettel-4g"><h3>viettel-4g (Viettel) · icmp</h3><svg' in html
    assert '<path class="line" data-series="viettel-4g (Viettel)"' in html
    listed = re.findall(r'<li data-outage="([\w-]+)"', html)
    assert listed == ["o-new", "o-old"]
    assert '<a href="/outages/o-old">' in html and "đang diễn ra / ongoing" in html
    assert "1 ngày 0 phút / 1 d 0 min" in html  # the old one lasted a day
