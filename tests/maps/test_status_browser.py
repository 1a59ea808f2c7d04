"""The status page and an outage's page in Debian's headless Chromium, on a desk (1400 px) and
on a phone (390 px): the worst outage first and above the fold, with since when and for how
long, nothing wider than the screen, a dark scheme when the system asks for one, and the
outage's timeline with the message that was sent. Screenshots go to ``test-artifacts/maps/``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from lomsong.coverage.compute import generate_and_store
from lomsong.storage.database import write_transaction
from lomsong.storage.schema import notification_attempts, outages
from tests.conftest import ADMIN_SECRET, CollectorFactory, RunningCollector
from tests.maps.conftest import keep
from tests.waiting import wait_until

pytestmark = pytest.mark.xdist_group("chromium")

WIDE = {"width": 1400, "height": 900}
NARROW = {"width": 390, "height": 844}

#: the centre cut off by a power cut: its hamlets are known, and it is the worst
POWER_CUT = "ob-power-01290"


def outage(oid: str, commune: str, condition: str, cause: str | None, **kw: Any) -> dict[str, Any]:
    now = time.time()
    row = {
        "id": oid,
        "probe_id": f"cb-{commune}",
        "commune_code": commune,
        "province_code": "04",
        "condition": condition,
        "cause": cause,
        "uplink": None,
        "operator": None,
        "started_at": now - 5400,
        "ended_at": None,
        "detected_at": now - 5340,
        "resolved_at": None,
        "updated_at": now - 5340,
    }
    row.update(kw)
    return row


def seven_outages(c: RunningCollector) -> None:
    """Open outages of several kinds in Cao Bằng, one resolved, and the message sent of one."""
    now = time.time()
    for commune in ("01290", "01321", "01273", "01324", "01279", "01288"):
        c.register(f"cb-{commune}", commune, ("fibre:fibre", "viettel-4g:viettel"))
    link = {"uplink": "viettel-4g", "operator": "viettel"}
    rows = [
        outage(POWER_CUT, "01290", "probe_silent", "power"),
        outage("ob-silent-01321", "01321", "probe_silent", None, started_at=now - 1800),
        outage("ob-link-01273", "01273", "uplink_down", "network", **link),
        outage("ob-slow-01324", "01324", "degraded", "network", started_at=now - 20, **link),
        outage(
            "ob-done-01279",
            "01279",
            "uplink_down",
            "network",
            started_at=now - 9000,
            ended_at=now - 7200,
            resolved_at=now - 7150,
            **link,
        ),
    ]
    sent = {
        "receiver": "so-tt-cao-bang",
        "route": "cao-bang",
        "group_key": "cao-bang:04",
        "status": "firing",
        "fingerprints": f'["{POWER_CUT}"]',
        "attempt": 1,
        "ok": True,
        "error": None,
        "at": now - 5300,
    }
    with write_transaction(c.engine) as conn:
        conn.execute(outages.insert(), rows)
        conn.execute(notification_attempts.insert(), [sent])
    c.ctx.live.reload(c.engine)


def within(page: Any, selector: str, viewport: dict[str, int]) -> bool:
    """Whether the element is drawn wholly inside the first screen."""
    box = page.locator(selector).first.bounding_box()
    return bool(
        box
        and box["x"] >= 0
        and box["y"] >= 0
        and box["x"] + box["width"] <= viewport["width"]
        and box["y"] + box["height"] <= viewport["height"]
    )


def no_sideways_scroll(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_the_status_page_on_a_desk_and_a_phone_and_an_outage_page(
    browser: Any, collector_factory: CollectorFactory, sqlite_url: str, tmp_path: Path
) -> None:
    c = collector_factory(sqlite_url)
    # the detector's first tick takes what is stored as history: store after it
    wait_until(
        lambda: c.ctx.outages is not None and c.ctx.outages.detector is not None,
        timeout=15,
        what="the detector running",
    )
    generate_and_store(c.engine, province="04", seed=2026)  # synthetic hamlets and sites
    seven_outages(c)
    first = "#outages > li:first-child"
    for viewport, name in ((WIDE, "status-1400.png"), (NARROW, "status-390.png")):
        context = browser.new_context(viewport=viewport, locale="vi-VN")
        page = context.new_page()
        page.goto(f"{c.url}/?token={ADMIN_SECRET}", wait_until="load")
        assert page.get_attribute(first, "data-outage") == POWER_CUT
        for part in (first, f"{first} .since", f"{first} .for", f"{first} .impact"):
            assert within(page, part, viewport), (name, part)
        assert "người / people" in page.inner_text(f"{first} .impact")
        assert no_sideways_scroll(page), name
        assert "dưới 1 phút / under a minute" in page.inner_text("#outages")
        assert "not known until it is back" in page.inner_text("#outages")
        assert page.locator("#resolved-list > li").count() == 1
        assert "30 phút / 30 min" in page.inner_text("#resolved-list")
        assert page.locator("#healthy").get_attribute("open") is None
        keep(page.screenshot(), name, tmp_path)
        light = page.evaluate("getComputedStyle(document.body).backgroundColor")
        page.emulate_media(color_scheme="dark")
        dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert light != dark, (light, dark)
        if viewport is NARROW:
            keep(page.screenshot(), "status-390-dark.png", tmp_path)
            page.emulate_media(color_scheme="light")
            page.click(f"{first} .title a")
            page.wait_for_url(f"{c.url}/outages/{POWER_CUT}")
            steps = page.locator("#timeline > li")
            kinds = [steps.nth(i).get_attribute("data-step") for i in range(steps.count())]
            assert kinds == ["started", "opened", "notified"], kinds
            assert "so-tt-cao-bang" in page.inner_text('#timeline > li[data-step="notified"]')
            assert within(page, "#outage .impact", viewport)
            assert no_sideways_scroll(page)
            keep(page.screenshot(full_page=True), "outage-390.png", tmp_path)
        context.close()
