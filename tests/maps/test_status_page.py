"""The status page and an outage's page as HTML, built from plain values (no server): the order
a duty officer reads them in, what is folded, the resolved list, the timeline, the durations."""

from __future__ import annotations

import re
from dataclasses import replace

from lomsong.maps import labels as lb
from lomsong.maps.outage_page import outage_page, timeline
from lomsong.maps.probes import ProbeMarker, UplinkState
from lomsong.maps.status_model import (
    Impact,
    MaintenanceView,
    NotificationView,
    OutageView,
    ProvinceStatus,
    state_rank,
    worst_first,
)
from lomsong.maps.status_page import status_page
from lomsong.words import duration

T0 = 1_795_000_000.0  # 2026-11-18 11:06:40 UTC, 18:06 in Vietnam


def marker(pid: str, commune: str, name: str, state: str, province: str = "04") -> ProbeMarker:
    since = T0 - 3900 if state != "up" else None
    links = (UplinkState("viettel-4g", "viettel", "down" if state == "down" else "up"),)
    return ProbeMarker(pid, None, commune, name, province, 105.0, 22.0, state, since, T0, links)


def outage(oid: str, condition: str, **kw: object) -> OutageView:
    values: dict[str, object] = {
        "id": oid,
        "probe_id": f"p-{oid}",
        "commune_code": "01321",
        "commune_name": "Xã Bảo Lạc",
        "province_code": "04",
        "province_name": "Cao Bằng",
        "condition": condition,
        "cause": "network",
        "uplink": "viettel-4g" if condition != "probe_silent" else None,
        "operator": "viettel" if condition != "probe_silent" else None,
        "started_at": T0 - 3930,
        "detected_at": T0 - 3900,
    }
    values.update(kw)
    return OutageView(**values)  # type: ignore[arg-type]


def provinces() -> list[ProvinceStatus]:
    cb = ProvinceStatus("04", "Cao Bằng", 56, open_outages=2)
    cb.probes = [
        marker("cb-a", "01273", "Phường Thục Phán", "up"),
        marker("cb-b", "01321", "Xã Bảo Lạc", "degraded"),
        marker("cb-c", "01290", "Xã Bảo Lâm", "down"),
        marker("cb-d", "01279", "Xã Nguyên Bình", "partial"),
        marker("cb-e", "01280", "Xã Ba Bể", "unknown"),
    ]
    hg = ProvinceStatus("02", "Tuyên Quang", 124)
    hg.probes = [marker("tq-a", "02509", "Xã Minh Xuân", "up", "02")]
    empty = ProvinceStatus("01", "Hà Nội", 126)
    lc = ProvinceStatus("08", "Lào Cai", 99)
    lc.probes = [marker("lc-a", "02800", "Xã Bát Xát", "degraded", "08")]
    return [empty, hg, cb, lc]


def build(**kw: object) -> str:
    args: dict[str, object] = {
        "now": T0,
        "who": "Quản trị / Admin",
        "expanded": False,
    }
    args.update(kw)
    opened = [
        outage("deg", "degraded", started_at=T0 - 30),
        outage("up1", "uplink_down", impact=Impact("known", 3, 1234, 1, (("Nà Pồng", 700),))),
        outage(
            "sil",
            "probe_silent",
            cause=None,
            commune_name="Xã Bảo Lâm",
            commune_code="01290",
            impact=Impact("until_back"),
        ),
        outage("mnt", "probe_silent", cause="power", maintenance=("EVN cắt điện",)),
    ]
    resolved = [
        outage("old", "uplink_down", ended_at=T0 - 600, resolved_at=T0 - 590),
    ]
    windows = [MaintenanceView("EVN cắt điện", "xã / commune 01321", T0 + 7200)]
    return status_page(provinces(), opened, resolved, windows, **args)  # type: ignore[arg-type]


def order_of(html: str, attr: str) -> list[str]:
    return re.findall(rf'{attr}="([^"]+)"', html)


def test_open_outages_come_first_worst_first_with_where_when_why_and_whom() -> None:
    html = build()
    assert html.index('id="now"') < html.index("data-province=")
    top = html[html.index('id="now"') : html.index("<h2>Tỉnh")]
    # a silent centre before a muted one, then a link down, then a degraded link
    assert order_of(top, "data-outage") == ["sil", "mnt", "up1", "deg"]
    assert "Sự cố đang diễn ra / What is wrong now (4)" in top
    card = re.search(r'<li class="card outage" data-outage="up1".*?</li>', top)
    assert card is not None
    text = card.group(0)
    assert 'href="/outages/up1"' in text and "Xã Bảo Lạc (01321)" in text and "Cao Bằng" in text
    assert "viettel-4g (Viettel)" in text and "sự cố mạng / network failure" in text
    assert "Từ lúc / Since 17:01 18/11/2026" in text
    assert "1 giờ 5 phút / 1 h 5 min" in text
    assert "3 thôn/bản / hamlets, 1.234 / 1,234 người / people" in text and "Nà Pồng (700)" in text
    silent = re.search(r'data-outage="sil".*?</li>', top)
    assert silent is not None
    assert "chưa biết cho đến khi có lại kết nối / not known until it is back" in silent.group(0)
    assert "đang xác định / being determined" in silent.group(0)
    muted = re.search(r'data-outage="mnt".*?</li>', top)
    assert muted is not None and "EVN cắt điện" in muted.group(0)
    assert "không gửi thông báo / notifications muted" in muted.group(0)
    assert "dưới 1 phút / under a minute" in top  # the degraded link opened 30 s ago
    assert "0 phút" not in html and "0 min" not in html
    # the maintenance window in force, named with its scope and its end
    assert (
        'id="maintenance"' in html and "xã / commune 01321" in html and "20:06 18/11/2026" in html
    )


def test_provinces_with_problems_come_first_coloured_and_healthy_ones_fold() -> None:
    html = build()
    assert order_of(html, "data-province") == ["04", "08", "01", "02"]
    cb = re.search(r'<details class="province" id="p-04"[^>]*>', html)
    assert cb is not None and " open" in cb.group(0) and "--accent:#d62728" in cb.group(0)
    healthy = re.search(r'<details id="healthy">(.*?)</details></details>', html, re.S)
    assert healthy is not None and "2 tỉnh khác" in healthy.group(1)
    assert re.search(r'<details class="province" id="p-02"[^>]*open', html) is None
    # in a province: down, partial, degraded, unknown, then the healthy ones folded
    section = html[html.index('id="p-04"') : html.index('id="p-08"')]
    assert order_of(section, "data-probe") == ["cb-c", "cb-d", "cb-b", "cb-e", "cb-a"]
    assert '<details class="up"><summary>1 trung tâm hoạt động bình thường' in section
    assert "51 xã/phường chưa có trạm đo / communes without a probe" in section
    # a state the labels do not know yet still shows, by its key, with the unknown colour
    assert lb.both(lb.PROBE_TEXT.get("partial", ("partial", "partial"))) in section


def test_a_viewers_provinces_open_whole_and_the_title_names_one() -> None:
    html = build(expanded=True, title="Cao Bằng")
    assert "<title>Cao Bằng — Trạng thái kết nối" in html
    assert 'id="healthy"' not in html
    assert re.search(r'<details class="province" id="p-02"[^>]*open', html)


def test_resolved_outages_list_cause_and_duration() -> None:
    html = build()
    part = html[html.index('id="resolved"') :]
    assert "Sự cố đã kết thúc / Resolved outages — 7 ngày qua / days (1)" in part
    assert 'href="/outages/old"' in part and "sự cố mạng / network failure" in part
    assert "đến / until 17:56 18/11/2026" in part and "55 phút / 55 min" in part


def test_no_outage_no_maintenance() -> None:
    html = status_page(provinces(), [], [], [], now=T0, who="x", expanded=False)
    assert "Không có sự cố / No open outage" in html and 'id="maintenance"' not in html
    assert "Sự cố đã kết thúc / Resolved outages — 7 ngày qua / days (0)" in html


def test_a_dark_scheme_and_no_wide_table() -> None:
    html = build()
    assert "@media (prefers-color-scheme: dark)" in html
    assert "<table" not in html


def test_the_state_order_tolerates_a_state_it_does_not_know() -> None:
    states = ["up", "unknown", "weird", "degraded", "partial", "down"]
    assert sorted(states, key=state_rank) == [
        "down",
        "partial",
        "degraded",
        "unknown",
        "weird",
        "up",
    ]
    rows = [outage("b", "degraded"), outage("a", "probe_silent"), outage("c", "what")]
    assert [o.id for o in worst_first(rows)] == ["a", "b", "c"]


def test_durations_say_under_a_minute_not_zero() -> None:
    assert duration(0, "vi") == "dưới 1 phút" and duration(59.9, "en") == "under a minute"
    assert duration(60, "vi") == "1 phút" and duration(3930, "en") == "1 h 5 min"
    assert duration(90000, "vi") == "1 ngày 1 giờ 0 phút"


NOTES = [
    NotificationView(T0 - 3800, "so-tt-cao-bang", "cao-bang", "firing", 1, False, "HTTP 502"),
    NotificationView(T0 - 3790, "so-tt-cao-bang", "cao-bang", "firing", 2, True),
    NotificationView(T0 - 500, "so-tt-cao-bang", "cao-bang", "resolved", 1, True),
]


def test_an_outage_page_tells_its_story_in_order() -> None:
    o = outage(
        "sil",
        "probe_silent",
        cause="power",
        ended_at=T0 - 600,
        resolved_at=T0 - 590,
        impact=Impact("known", 12, 3450, 12, (("Nà Pồng", 700), ("Cốc Pàng", 520))),
    )
    # a silent centre's cause is known when it reports again: at resolution, after its end
    kinds = [s.kind for s in timeline(o, NOTES)]
    assert kinds == [
        "started",
        "opened",
        "notified",
        "notified",
        "ended",
        "classified",
        "resolved",
        "notified",
    ]
    html = outage_page(o, NOTES, now=T0, who="Xem tỉnh / Viewer of: 04")
    line = re.findall(r'<li data-step="(\w+)"><time>([^<]+)</time>(.*?)</li>', html)
    assert [k for k, _, _ in line][:3] == ["started", "opened", "notified"]
    first = [t for k, _, t in line if k == "notified"][0]
    assert "so-tt-cao-bang" in first and "không gửi được / failed: HTTP 502" in first
    assert "đã gửi / delivered (lần thử / attempt 2)" in html
    assert "Báo đã khắc phục / Resolution sent" in html
    assert "mất điện / power cut" in html and "Đã kết thúc / Resolved" in html
    assert "12 thôn/bản / hamlets, 3.450 / 3,450 người / people" in html
    assert "(12 không có điện lưới / without grid power)" in html
    assert "55 phút / 55 min" in html  # from its start to its end, not to now


def test_an_uplink_outage_is_classified_when_it_opens_and_may_have_no_message() -> None:
    o = replace(outage("up1", "uplink_down"), impact=Impact("no_geodata"))
    assert [s.kind for s in timeline(o, [])] == ["started", "opened", "classified"]
    html = outage_page(o, [], now=T0, who="x")
    assert "Chưa gửi thông báo nào / No notification sent" in html
    assert "this collector has no hamlet data for this commune" in html
    assert "Đang diễn ra / Open" in html
