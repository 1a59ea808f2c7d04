"""In Debian's headless Chromium: the status page's CSV link downloads a file, and ``/docs`` and
``/redoc`` work with every request off the loopback refused (an office without Internet);
``HEAD /metrics`` answers as ``GET`` does. Screenshots go to ``test-artifacts/maps/``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_SECRET, RunningCollector
from tests.maps.conftest import browser, keep

pytestmark = pytest.mark.xdist_group("chromium")
__all__ = ["browser"]  # the maps' module-scoped Chromium, shared here

WIDE = {"width": 1400, "height": 900}
NARROW = {"width": 390, "height": 844}


def offline(context: Any) -> list[str]:
    """Refuse every request that leaves 127.0.0.1; the list fills with what was refused."""
    refused: list[str] = []

    def route(r: Any) -> None:
        if re.match(r"^https?://127\.0\.0\.1[:/]", r.request.url):
            r.continue_()
        else:
            refused.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    return refused


def test_the_status_pages_csv_link_downloads_a_file(
    browser: Any, collector: RunningCollector, tmp_path: Path
) -> None:
    c = collector
    context = browser.new_context(viewport=WIDE, locale="vi-VN", accept_downloads=True)
    try:
        page = context.new_page()
        page.goto(f"{c.url}/?token={ADMIN_SECRET}", wait_until="load")
        # the province may sit folded among the healthy ones: unfold every section
        page.evaluate("document.querySelectorAll('details').forEach((d) => { d.open = true; })")
        link = page.locator('details[data-province="04"] p.links a', has_text="CSV").first
        assert link.get_attribute("href") == "/api/v1/hamlets?province=04&format=csv"
        with page.expect_download() as info:
            link.click()
        download = info.value
        assert download.suggested_filename == "thôn-bản_04.csv"
        content = Path(download.path()).read_bytes()
        assert content.startswith("\ufeffMã thôn,Tên thôn,Mã xã".encode())
        assert page.url == f"{c.url}/"  # a download: the page stays
        keep(
            page.locator('details[data-province="04"]').screenshot(), "status-exports.png", tmp_path
        )
    finally:
        context.close()


def test_the_api_docs_work_offline(
    browser: Any, collector: RunningCollector, tmp_path: Path
) -> None:
    c = collector
    spec = httpx.get(c.url + "/openapi.json").json()
    operations = sum(len(methods) for methods in spec["paths"].values())
    for path in ("/docs", "/redoc"):
        html = httpx.get(c.url + path).text
        assert "cdn" not in html.lower() and not re.search(r"(src|href)=\S*https?://", html), html
    context = browser.new_context(viewport=WIDE)
    refused = offline(context)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{c.url}/docs", wait_until="load")
        operation = page.locator(".opblock-summary-path", has_text="/api/v1/outages").first
        operation.wait_for(state="visible")
        assert page.locator(".opblock").count() == operations > 10
        operation.click()  # the operation opens: its format parameter and file types show
        page.get_by_text("json (the default), or a file", exact=False).first.wait_for()
        keep(page.screenshot(), "docs-offline.png", tmp_path)
        page.set_viewport_size(NARROW)
        assert page.locator(".opblock-summary-path", has_text="/api/v1/hamlets").is_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        keep(page.screenshot(), "docs-offline-390.png", tmp_path)

        assert refused == [] and errors == []

        page.set_viewport_size(WIDE)
        page.goto(f"{c.url}/redoc", wait_until="load")
        page.locator("h2", has_text="Outage history, newest first").first.wait_for()
        # ReDoc's script itself asks for its maker's logo (an image in the side bar): refused,
        # it is left out and nothing else is missing
        assert all(url.endswith(".svg") for url in refused) and errors == [], refused
    finally:
        context.close()


def test_head_of_metrics_answers_like_get(collector: RunningCollector) -> None:
    with httpx.Client(base_url=collector.url) as http:
        get = http.get("/metrics")
        head = http.head("/metrics")
    assert get.status_code == head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert int(head.headers["content-length"]) > 0
