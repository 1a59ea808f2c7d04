"""The fleet page's HTML without a browser: the list on top is capped, names are escaped."""

from __future__ import annotations

import re

from lomsong.maps.fleet_model import Fleet, FleetProbe
from lomsong.maps.fleet_page import ATTENTION_LIMIT, fleet_page, sheet_header, sheet_rows

NOW = 1_796_000_000.0


def probe(i: int, province: str, version: str = "0.1.0") -> FleetProbe:
    p = FleetProbe(
        probe_id=f"p-{i:04d}",
        label="<b>box</b>" if i == 0 else None,
        commune_code=f"{i:05d}",
        commune_name="Xã Bảo Lạc",
        province_code=province,
        province_name="Cao Bằng" if province == "04" else "Lai Châu",
        agent_version=version,
        last_seen_at=NOW - 10,
        clock_skew_seconds=0.5,
        boot_id="b",
    )
    p.judge(NOW, 90.0, "0.2.0")
    return p


def test_after_an_upgrade_the_list_on_top_is_capped_and_the_rest_head_their_provinces() -> None:
    probes = sorted(
        [probe(i, "04" if i % 2 else "12") for i in range(ATTENTION_LIMIT + 50)],
        key=FleetProbe.sort_key,
    )
    html = fleet_page(Fleet(probes, "0.2.0", "0.2.0", 90.0, NOW), who="x")
    top = html.split('data-section="attention"')[1].split("</table>")[0]
    assert top.count("<tr id=") == ATTENTION_LIMIT
    assert f"{ATTENTION_LIMIT} / {ATTENTION_LIMIT + 50}" in html
    assert len(re.findall(r'<tr id="f-', html)) == ATTENTION_LIMIT + 50  # each probe once
    assert "&lt;b&gt;box&lt;/b&gt;" in html and "<b>box</b>" not in html


def test_sheet_rows_in_both_languages() -> None:
    p = probe(1, "04")
    fleet = Fleet([p], "0.2.0", "0.2.0", 90.0, NOW)
    (vi,) = list(sheet_rows(fleet, "vi"))
    (en,) = list(sheet_rows(fleet, "en"))
    assert len(vi) == len(sheet_header("vi")) == len(sheet_header("en"))
    assert vi[6] == "có" and en[6] == "yes" and en[-1] == "Outdated"
