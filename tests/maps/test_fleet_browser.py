"""The fleet page ``/fleet`` in headless Chromium at 1400 px and 390 px: reached from the status
page, the probes that need someone first and marked, each probe a table row on a desk and a
card on a phone, nothing wider than the screen. Screenshots go to ``test-artifacts/maps/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lomsong.collector.fleet_profiles import served_config_versions, set_layer
from tests.collector.test_fleet import heartbeat_batch, seed, send
from tests.conftest import ADMIN_SECRET, CollectorFactory
from tests.maps.conftest import keep

pytestmark = pytest.mark.xdist_group("chromium")

WIDE = {"width": 1400, "height": 900}
NARROW = {"width": 390, "height": 844}


def test_fleet_page_on_a_desk_and_a_phone(
    browser: Any, collector_factory: CollectorFactory, sqlite_url: str, tmp_path: Path
) -> None:
    c = collector_factory(sqlite_url, report_interval_seconds=30.0)
    tokens = seed(c)
    # a national profile: fl-new applies it, fl-old refuses it
    set_layer(c.engine, "national", "", {"checks": [{"kind": "tcp", "target": "dvc.gov.vn:443"}]})
    with c.engine.connect() as conn:
        served = served_config_versions(conn, ["fl-old"])["fl-old"]
    send(c, tokens["fl-new"], heartbeat_batch("fl-new", 4, "0.10.0", config_version=served))
    refusal = "checks[0].uplinks: no uplink 'viettel-4g' on this box"
    beat = {"config_refused_version": served, "config_error": refusal}
    send(c, tokens["fl-old"], heartbeat_batch("fl-old", 4, "0.1.0", **beat, spool_dropped=3))
    for viewport, name in ((WIDE, "fleet-1400.png"), (NARROW, "fleet-390.png")):
        context = browser.new_context(viewport=viewport, locale="vi-VN")
        page = context.new_page()
        page.goto(f"{c.url}/?token={ADMIN_SECRET}", wait_until="load")
        page.get_by_role("link", name="Đội trạm đo / Probe fleet").click()
        page.wait_for_url(f"{c.url}/fleet")
        summary = page.locator("p.summary").inner_text()
        assert "4 trạm / probes" in summary and "2 mất liên lạc / silent" in summary
        assert "1 phiên bản cũ / outdated" in summary and "0.10.0" in summary
        attention = page.locator('table[data-section="attention"] tbody tr')
        assert attention.count() == 3
        ids = [attention.nth(i).get_attribute("id") for i in range(3)]
        assert ids == ["f-fl-never", "f-fl-quiet", "f-fl-old"]
        first = attention.nth(0)
        assert first.is_visible()
        text = first.inner_text()
        assert "Chưa từng liên lạc / Never heard" in text and "Xã Bảo Lạc (01321)" in text
        old = attention.nth(2).inner_text()
        assert "Phiên bản cũ / Outdated" in old and "Mất kết quả / Results dropped" in old
        assert "0.1.0" in old and "3 / 0" in old
        assert "Cấu hình bị từ chối / Config refused" in old and "Bị từ chối / Refused" in old
        assert "no uplink 'viettel-4g' on this box" in old
        assert "1 cấu hình bị từ chối / configuration refused" in summary
        box = first.bounding_box()
        assert box is not None and box["y"] < viewport["height"]  # above the fold
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), name
        header_shown = page.locator('table[data-section="attention"] thead').is_visible()
        if viewport is NARROW:
            # a card: each value under its own header, the empty ones left out
            assert not header_shown
            assert box["width"] < 390 and box["height"] > 150
            label = (
                first.locator("td")
                .nth(2)
                .evaluate("td => getComputedStyle(td, '::before').content")
            )
            assert "Phiên bản / Version" in label
        else:
            assert header_shown and box["height"] < 120
        # the calm probe is listed under its province, Lai Châu: open, as there are few
        # provinces (the status page's rule); a click folds it
        province = page.locator("#p-12")
        assert "Lai Châu (12)" in province.locator("summary").inner_text()
        assert page.locator("#f-fl-new").is_visible()
        assert f"Đã áp dụng / Applied\nv{served[:12]}" in page.locator("#f-fl-new").inner_text()
        province.locator("summary").click()
        assert not page.locator("#f-fl-new").is_visible()
        province.locator("summary").click()
        keep(page.screenshot(full_page=True), name, tmp_path)
        context.close()
    viewer = browser.new_context(viewport=NARROW)
    page = viewer.new_page()
    page.goto(f"{c.url}/fleet?token={c.viewer('12')}", wait_until="load")
    assert page.locator("tr[id^=f-]").count() == 1
    assert page.locator("#f-fl-new").count() == 1
    viewer.close()
