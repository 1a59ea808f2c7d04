"""The status page's "probes waiting for approval" section in headless Chromium, at 1400 px and
390 px: an admin sees each pending box with its commune, the uplinks proposed and a reused
machine id flagged, nothing wider than the phone; a viewer's page has no such section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from lomsong.collector.enrolment_keys import create_key
from lomsong.collector.enrolments import record
from lomsong.enrolwire import EnrolRequest
from tests.conftest import ADMIN_SECRET, CollectorFactory
from tests.maps.conftest import keep

pytestmark = pytest.mark.xdist_group("chromium")

WIDE = {"width": 1400, "height": 900}
NARROW = {"width": 390, "height": 844}
BOX = {
    "machine_id": "5f1c0e7a9b2d4c8e8f0a1b2c3d4e5f60",
    "hostname": "ubnd-thuc-phan",
    "agent_version": "0.1.0",
    "interfaces": [{"name": "eth0", "kind": "ether", "up": True, "addresses": ["192.168.1.10/24"]}],
    "modems": [
        {
            "index": "0",
            "interface": "wwan0",
            "operator_code": "45204",
            "access_technologies": ["lte"],
        }
    ],
}


def test_pending_enrolments_on_the_status_page(
    browser: Any, collector_factory: CollectorFactory, sqlite_url: str, tmp_path: Path
) -> None:
    c = collector_factory(sqlite_url)
    key = create_key(c.engine, "04").key
    for commune in ("01273", "01290"):  # the second, the same box again: flagged
        record(c.engine, key, EnrolRequest.model_validate({"commune": commune, "description": BOX}))
    for viewport, name in ((WIDE, "enrolments-1400.png"), (NARROW, "enrolments-390.png")):
        context = browser.new_context(viewport=viewport, locale="vi-VN")
        page = context.new_page()
        page.goto(f"{c.url}/?token={ADMIN_SECRET}", wait_until="load")
        section = page.locator("#enrolments")
        assert section.is_visible()
        cards = section.locator("> li")
        assert cards.count() == 2
        first, second = cards.nth(0).inner_text(), cards.nth(1).inner_text()
        assert "#1" in first and "Phường Thục Phán (01273)" in first and "Cao Bằng" in first
        assert "viettel-4g:viettel@wwan0, fibre:fibre@eth0" in first
        assert "lomsong probe approve 1 --id" in first
        assert "machine id seen before" not in first
        assert "machine id seen before: enrolment 1 (pending)" in second
        page.locator("#enrolments").scroll_into_view_if_needed()
        box = section.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), name
        keep(section.screenshot(), name, tmp_path)
        context.close()
    viewer = httpx.get(f"{c.url}/", headers={"Authorization": f"Bearer {c.viewer('04')}"})
    assert viewer.status_code == 200 and 'id="enrolments"' not in viewer.text
