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
from sqlalchemy import delete

from lomsong.collector.availability_keeper import AvailabilityKeeper
from lomsong.coverage.compute import generate_and_store
from lomsong.storage.database import write_transaction
from lomsong.storage.schema import (
    availability_daily,
    availability_probes,
    notification_attempts,
    outages,
)
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


COMMUNES = ("01290", "01321", "01273", "01324", "01279", "01288")


def seven_outages(c: RunningCollector) -> None:
    """Open outages of several kinds in Cao Bằng, one resolved, and the message sent of one."""
    now = time.time()
    for commune in COMMUNES:
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


def ninety_days_of_history(c: RunningCollector) -> None:
    """The six centres heard since 80 days ago, two of them silent for hours weeks ago, and
    ``availability_daily`` computed from that by the keeper (from scratch: the table emptied,
    so the run backfills every day, whether or not the leader's own run came first)."""
    now = time.time()
    heard = [{"probe_id": f"cb-{p}", "first_heard_at": now - 80 * 86_400} for p in COMMUNES]
    old = [
        outage(
            f"ob-old-{p}-{k}",
            p,
            "probe_silent",
            "power",
            started_at=now - days * 86_400,
            ended_at=now - days * 86_400 + hours * 3600,
            resolved_at=now - days * 86_400 + hours * 3600,
        )
        for k, (p, days, hours) in enumerate(
            (("01288", 40, 3), ("01288", 20, 0.5), ("01273", 60, 10))
        )
    ]
    with write_transaction(c.engine) as conn:
        conn.execute(availability_probes.insert(), heard)
        conn.execute(outages.insert(), old)
        conn.execute(delete(availability_daily))
    assert AvailabilityKeeper(c.engine, clock=time.time).refresh() > 0


BARS = """() => [...document.querySelectorAll('.avail')].map(a => ({
  key: a.dataset.probe || 'province-' + a.dataset.province,
  widths: [...a.querySelectorAll('.bar i')].map(i => i.getBoundingClientRect().width),
  right: Math.max(...[...a.querySelectorAll('.bar i')].map(i => i.getBoundingClientRect().right)),
  colours: new Set([...a.querySelectorAll('.bar i')].map(i => getComputedStyle(i).backgroundColor)).size,
}))"""


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
    ninety_days_of_history(c)
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
        assert page.locator("#p-04 > .avail[data-province='04'] .bar i").count() == 90
        # each centre links to its own page
        assert page.locator("#p-04 .probe a[href='/probes/cb-01290']").count() == 1
        # the centres with problems show their bars unfolded
        assert page.locator("#p-04 ul.probes:not(.up-list) .avail .bar i").count() >= 90
        keep(page.screenshot(), name, tmp_path)
        # every centre's bar, the folded ones unfolded: 90 drawn cells each, inside the screen
        page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
        bars = {b["key"]: b for b in page.evaluate(BARS)}
        assert set(bars) == {"province-04", *(f"cb-{p}" for p in COMMUNES)}, sorted(bars)
        for key, b in bars.items():
            assert len(b["widths"]) == 90 and min(b["widths"]) > 0, (name, key)
            assert b["right"] <= viewport["width"], (name, key, b["right"])
        # the centre silent for 10 hours 60 days ago: green days, a red one, grey before
        assert bars["cb-01273"]["colours"] >= 3, bars["cb-01273"]
        assert no_sideways_scroll(page), name
        page.locator(".avail[data-probe='cb-01288'] .bar i").nth(69).click()
        tip = page.evaluate("getComputedStyle(document.activeElement, '::after').content")
        assert "sự cố / outages" in tip and "%" in tip, tip
        if viewport is NARROW:  # the bars on a phone, one day's figures tapped open
            page.evaluate("document.activeElement.closest('li').scrollIntoView({block: 'end'})")
            keep(page.screenshot(), "status-390-bars.png", tmp_path)
        page.evaluate("document.querySelectorAll('details').forEach(d => d.open = false)")
        page.evaluate(
            "document.querySelectorAll('details.province[data-problems]')"
            ".forEach(d => d.open = true)"
        )
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
