"""The 90-day availability bars as HTML, built from plain values: a cell a day coloured by its
figure, the words a hover or a tap shows, the uptime windows, and their place on the page."""

from __future__ import annotations

import re
from datetime import date, timedelta

from lomsong.maps.availability_bars import LEVELS, MAINTENANCE, UNSEEN, Bars, Day, percent
from lomsong.maps.status_page import status_page
from tests.maps.test_status_page import T0, provinces

CALENDAR = [(date(2026, 8, 21) + timedelta(days=i)).isoformat() for i in range(90)]
DAY = 86_400.0


def day(i: int, down: float, **kw: float) -> Day:
    return Day(CALENDAR[i], kw.get("observed", DAY), down, kw.get("maint", 0.0), int(down > 0))


def cells_of(html: str, what: str, key: str) -> list[tuple[str, str]]:
    """(class, title) of each cell of one bar."""
    block = re.search(
        rf'<div class="avail" data-{what}="{key}">(.*?)</div><p class="uptime">', html
    )
    assert block, (what, key)
    return re.findall(r'<i class="(\w+)" tabindex="-1" title="([^"]*)"></i>', block.group(1))


def test_a_cell_a_day_coloured_by_its_figure_with_its_words() -> None:
    cells: list[Day | None] = [None] * 60 + [day(i, 0.0) for i in range(60, 90)]
    cells[80] = day(80, 43.2)  # 99.95 %
    cells[81] = day(81, 432.0)  # 99.5 %
    cells[82] = day(82, 2_592.0)  # 97 %
    cells[83] = day(83, 6_048.0)  # 93 %
    cells[84] = day(84, 43_200.0)  # 50 %
    cells[85] = Day(CALENDAR[85], 0.0, 0.0, DAY, 0)  # maintenance all day
    html = Bars(CALENDAR, {"cb-a": cells}, {}).centre("cb-a")
    found = cells_of(html, "probe", "cb-a")
    assert len(found) == 90
    classes = [c for c, _ in found]
    assert classes[:60] == [UNSEEN[0]] * 60
    assert classes[79:86] == ["a0", "a0", "a1", "a2", "a3", "a4", MAINTENANCE[0]]
    assert found[0][1] == "2026-08-21: chưa có số liệu / not observed"
    assert found[84][1] == (
        "2026-11-13: 50,00 % / 50.00 % · 1 sự cố / outages · mất 12 giờ 0 phút / down 12 h 0 min"
    ), found[84][1]
    assert found[80][1].startswith("2026-11-09: 99,95 % / 99.95 % · 1 sự cố")
    assert "bảo trì cả ngày / maintenance all day" in found[85][1]
    # every colour the legend names is in the page's style
    assert {c for _, c, _, _ in LEVELS} <= set(classes)
    # 24 h is the last day (observed, nothing down); 90 d sums the 30 observed days
    uptime = re.search(r'<p class="uptime">(.*?)</p>', html)
    assert uptime
    text = re.sub("<[^>]+>", "", uptime.group(1))
    down = 43.2 + 432 + 2_592 + 6_048 + 43_200
    ninety = percent(1 - down / (29 * DAY), "vi")
    # the week: days 83 to 89, day 85 all maintenance (not observed)
    week = percent(1 - (6_048 + 43_200) / (6 * DAY), "vi")
    assert week == "90,50 %"
    assert text == (
        f"Khả dụng / Uptime: 24 giờ / 24 h 100 % · 7 ngày / 7 d {week} · "
        f"30 ngày / 30 d {ninety} · 90 ngày / 90 d {ninety}"
    ), text


def test_a_percent_never_rounds_up_to_a_hundred() -> None:
    assert percent(1 - 60 / (90 * DAY), "en") == "99.99 %"
    assert percent(1.0, "vi") == "100 %"
    assert percent(0.12345, "vi") == "12,34 %"
    assert percent(None, "en") == "—"


def test_every_centre_and_each_province_has_its_bar_on_the_page() -> None:
    ps = provinces()
    probes = {m.id: [day(i, 0.0) for i in range(90)] for p in ps for m in p.probes}
    bars = Bars(CALENDAR, probes, {"04": [day(i, 60.0) for i in range(90)]})
    html = status_page(ps, [], [], now=T0, who="admin", expanded=True, availability=bars)
    shown = re.findall(r'<div class="avail" data-probe="([\w-]+)">', html)
    assert sorted(shown) == sorted(probes)
    assert re.findall(r'<div class="avail" data-province="(\d+)">', html) == ["04"]
    assert len(cells_of(html, "province", "04")) == 90
    # the healthy ones are folded, each with its bar, not a bare chip
    assert 'class="cards wide probes up-list"' in html and 'class="chips"' not in html
    assert ".bar .a0 { background: #1a7f43 }" in html
    # without bars, the page is as before
    plain = status_page(ps, [], [], now=T0, who="admin", expanded=True)
    assert 'class="avail"' not in plain and 'class="chips"' in plain


def test_a_folded_healthy_province_has_its_bar_but_not_its_centres() -> None:
    ps = provinces()
    probes = {m.id: [day(i, 0.0) for i in range(90)] for p in ps for m in p.probes}
    cells = [day(i, 0.0) for i in range(90)]
    bars = Bars(CALENDAR, probes, {"04": cells, "02": cells})
    html = status_page(ps, [], [], now=T0, who="admin", expanded=False, availability=bars)
    healthy = html[html.index('<details id="healthy">') :]
    assert '<div class="avail" data-province="02">' in healthy  # Tuyên Quang: all up
    assert 'data-probe="tq-a"' in healthy and '<div class="avail" data-probe' not in healthy
    shown = re.findall(r'<div class="avail" data-probe="([\w-]+)">', html)
    assert sorted(shown) == ["cb-a", "cb-b", "cb-c", "cb-d", "cb-e", "lc-a"]
