"""A centre's page in Debian's headless Chromium at 1400 and 390 px: its latency bands and
signal drawn from the rollups of results sent through the collector's own API (paths with a
shape, not blank), the range tabs as links, its outages linking to their pages, nothing wider
than a phone. The screenshot goes to ``test-artifacts/maps/probe-390.png``."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lomsong.collector.availability_keeper import AvailabilityKeeper
from lomsong.storage.database import write_transaction
from lomsong.storage.schema import outages
from tests.conftest import ADMIN_SECRET, CollectorFactory
from tests.factories import iso, result
from tests.maps.conftest import keep
from tests.maps.test_status_browser import NARROW, WIDE, no_sideways_scroll, outage
from tests.rollup_checks import marked
from tests.waiting import wait_until

pytestmark = pytest.mark.xdist_group("chromium")

PROBE = "cb-01290"
#: a result of each check every minute over the last 25 hours (five in each 5-minute bucket of
#: the 24-hour chart), every 10 minutes for the week before (six in each hour of the 7-day one)
RECENT, OLDER = 25 * 3600, 8 * 86_400

SHAPES = """() => [...document.querySelectorAll('svg.chart')].map(svg => ({
  kind: svg.dataset.chart,
  width: svg.getBoundingClientRect().width,
  right: svg.getBoundingClientRect().right,
  paths: [...svg.querySelectorAll('path')].map(p => ({
    cls: p.getAttribute('class'), d: (p.getAttribute('d') || '').length,
    w: p.getBBox().width, h: p.getBBox().height})),
}))"""


def history(now: float) -> list[dict[str, Any]]:
    """icmp on both links (the 4G one slower, spread wider and losing a packet now and then)
    and the modem's signal on the 4G link. The 4G link loses a packet of five in every other
    two hours: whole buckets at 5 minutes and at an hour, so its median has two colours."""
    out: list[dict[str, Any]] = []
    seq = 0
    times = [
        *range(int(now - OLDER), int(now - RECENT), 600),
        *range(int(now - RECENT), int(now - 30), 60),
    ]
    for k, t in enumerate(times):
        at = datetime.fromtimestamp(t, UTC)
        wave = (k % 7) / 7
        for uplink, base, spread, lost in (
            ("fibre", 0.008, 0.004, 0),
            ("viettel-4g", 0.045, 0.03, t // 7200 % 2 == 0),
        ):
            seq += 1
            out.append(
                result(
                    seq,
                    at=at,
                    uplink=uplink,
                    duration_seconds=base + spread * wave,
                    packets_received=5 - int(lost),
                )
            )
        seq += 1
        signal = {"rsrp_dbm": -100.0 + 8 * wave, "mcc": "452", "mnc": "04", "tac": 7, "cid": 90}
        out.append(
            result(seq, at=at, kind="modem", uplink="viettel-4g", target="modem0", signal=signal)
        )
    return out


def test_a_centres_page_draws_its_history_on_a_desk_and_a_phone(
    browser: Any, collector_factory: CollectorFactory, sqlite_url: str, tmp_path: Path
) -> None:
    c = collector_factory(sqlite_url, rollups={"derive_every_seconds": 1})
    token = c.register(PROBE, "01290", ("fibre:fibre", "viettel-4g:viettel"))
    now = time.time()
    results = history(now)
    with c.client(token) as client:
        for i in range(0, len(results), 1000):
            doc = {
                "probe_id": PROBE,
                "boot_id": "b",
                "agent_version": "0.1.0",
                "sent_at": iso(datetime.now(UTC)),
                "results": results[i : i + 1000],
            }
            response = client.post("/api/v1/reports", json=doc)
            assert response.status_code == 200, response.text
    old = outage(
        "ob-old-01290",
        "01290",
        "uplink_down",
        "network",
        probe_id=PROBE,
        uplink="viettel-4g",
        operator="viettel",
        started_at=now - 3 * 86_400,
        ended_at=now - 3 * 86_400 + 2700,
        resolved_at=now - 3 * 86_400 + 2700,
    )
    with write_transaction(c.engine) as conn:
        conn.execute(outages.insert(), [old])
    # the hourly and daily rollups (30 d, 1 y) are derived by the leader, every second here
    wait_until(lambda: not marked(c.engine), timeout=20, what="hourly and daily rollups derived")
    AvailabilityKeeper(c.engine, clock=time.time).refresh()
    for viewport, name in ((WIDE, "probe-1400.png"), (NARROW, "probe-390.png")):
        context = browser.new_context(viewport=viewport, locale="vi-VN")
        page = context.new_page()
        page.goto(f"{c.url}/probes/{PROBE}?token={ADMIN_SECRET}", wait_until="load")
        assert page.get_attribute("#probe", "data-probe") == PROBE
        for key in ("24h", "7d"):
            if key != "24h":
                page.click(f"#ranges a[href='?range={key}']")
                page.wait_for_url(f"{c.url}/probes/{PROBE}?range={key}")
            assert page.get_attribute("#ranges a[aria-current]", "href") == f"?range={key}"
            charts = page.evaluate(SHAPES)
            assert [ch["kind"] for ch in charts] == ["band", "band", "lines"], (name, key)
            for ch in charts:
                assert ch["width"] > 300 and ch["right"] <= viewport["width"], (name, key, ch)
                drawn = [p for p in ch["paths"] if p["d"] > 0]
                assert drawn, (name, key, ch["kind"])
            fibre, mobile, signal = charts
            for band in (fibre, mobile):
                shade = [p for p in band["paths"] if p["cls"] == "band"]
                median = [p for p in band["paths"] if p["cls"] == "median"]
                assert shade and max(p["h"] for p in shade) > 3, (name, key, shade)
                # the median spans most of the plot: the history covers the whole range
                assert median and max(p["w"] for p in median) > 250, (name, key, median)
            # the 4G link lost packets: its median has more than one colour
            assert len([p for p in mobile["paths"] if p["cls"] == "median"]) >= 2
            [line] = [p for p in signal["paths"] if p["cls"] == "line"]
            assert line["w"] > 250 and line["h"] > 5, (name, key, line)
            assert no_sideways_scroll(page), (name, key)
        cells = page.locator(f".avail[data-probe='{PROBE}'] .bar i")
        assert cells.count() == 90
        # heard for 8 days, the 8 days before today observed (the first one in part)
        assert page.locator(f".avail[data-probe='{PROBE}'] .bar i.a0").count() >= 8
        assert "viettel-4g (Viettel) · icmp" in page.inner_text(
            "section[data-uplink='viettel-4g'] h3"
        )
        [item] = page.locator("#outage-list > li").all()
        assert "45 phút / 45 min" in item.inner_text()
        keep(page.screenshot(full_page=True), name, tmp_path)
        if viewport is NARROW:
            # a month (hourly points) and a year (daily ones): eight days drawn at the right
            for key in ("30d", "1y"):
                page.goto(f"{c.url}/probes/{PROBE}?range={key}", wait_until="load")
                charts = page.evaluate(SHAPES)
                assert [ch["kind"] for ch in charts] == ["band", "band", "lines"], key
                for ch in charts:
                    widths = [p["w"] for p in ch["paths"] if p["d"] > 0 and p["cls"] != "grid"]
                    assert widths and max(widths) > 5, (key, ch["kind"], widths)
                assert no_sideways_scroll(page), key
            page.click("#outage-list a")
            page.wait_for_url(f"{c.url}/outages/ob-old-01290")
        context.close()
