"""The served pages in Debian's headless Chromium: they load clean, show their layers and legend,
and a click on a hamlet or a probe opens a popup with its facts; another site's links and forms
cannot sign the browser in or out. Screenshots are kept in ``test-artifacts/maps/``."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import ADMIN_SECRET, CollectorFactory, RunningCollector
from tests.maps.conftest import StaticCoverage, TileServer, keep
from tests.maps.sample import SampleProvince
from tests.maps.test_served import report

pytestmark = pytest.mark.xdist_group("chromium")

VIEWPORT = {"width": 1280, "height": 860}
FIND_MAP = "window.lsMap = Object.values(window).find((v) => v instanceof L.Map); true"
LAYERS_READY = (
    "() => document.querySelectorAll('.leaflet-control-layers-overlays label').length >= {n}"
)


class Console:
    """Every console message and page error of one page."""

    def __init__(self, page: Any) -> None:
        self.messages: list[tuple[str, str, str]] = []
        page.on("console", lambda m: self.messages.append((m.type, m.text, m.location["url"])))
        page.on("pageerror", lambda e: self.messages.append(("pageerror", str(e), "")))

    def errors(self, *, except_url: str = "") -> list[tuple[str, str, str]]:
        return [
            m
            for m in self.messages
            if m[0] in ("error", "pageerror") and not (except_url and except_url in m[2])
        ]


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT, locale="vi-VN")
    yield context.new_page()
    context.close()


def serve(
    factory: CollectorFactory, url: str, coverage: StaticCoverage, tiles: str
) -> tuple[RunningCollector, str]:
    c = factory(url, coverage=coverage, maps={"tile_url": tiles}, report_interval_seconds=5.0)
    token = c.register("cb-thuc-phan", "01273", ("fibre:fibre", "viettel-4g:viettel"))
    c.register("cb-bao-lac", "01321", ("fibre:fibre",))
    c.ctx.live.reload(c.engine)
    report(c, token, "cb-thuc-phan", 1)
    return c, c.viewer("04")


def lonely_hamlet(sample: SampleProvince) -> int:
    """The hamlet farthest from any other, so that a click on it hits only it."""
    h = sample.coverage.hamlets
    xy = np.column_stack([h.lon, h.lat * 1.0])
    d = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    np.fill_diagonal(d, np.inf)
    return int(d.min(axis=1).argmax())


def click_at(page: Any, lat: float, lon: float, zoom: int = 13) -> None:
    """Centre the map on a point, then click where it is drawn, as a person would."""
    page.evaluate(f"lsMap.setView([{lat}, {lon}], {zoom}, {{animate: false}}); true")
    page.wait_for_timeout(300)
    x, y = page.evaluate(
        f"(() => {{ const p = lsMap.latLngToContainerPoint([{lat}, {lon}]);"
        " const r = lsMap.getContainer().getBoundingClientRect();"
        " return [r.left + p.x, r.top + p.y]; })()"
    )
    page.mouse.click(x, y)


def test_the_served_province_map_in_chromium(
    browser: Any,
    page: Any,
    collector_factory: CollectorFactory,
    sqlite_url: str,
    static_coverage: StaticCoverage,
    cao_bang: SampleProvince,
    tile_server: TileServer,
    tmp_path: Path,
) -> None:
    c, viewer = serve(collector_factory, sqlite_url, static_coverage, tile_server.url)
    console = Console(page)
    page.set_viewport_size(WIDE)
    # a link with the token signs the browser in, then drops the token from the address
    page.goto(f"{c.url}/maps/province/04?token={viewer}", wait_until="load")
    assert page.url == f"{c.url}/maps/province/04"
    page.wait_for_function(LAYERS_READY.format(n=10))
    page.evaluate(FIND_MAP)
    page.wait_for_timeout(400)

    # a wide screen: the layer list and the legend are open
    assert page.locator(".leaflet-control-layers-expanded").count() == 1
    assert page.locator(".ls-legend-box.ls-folded").count() == 0
    overlays = page.inner_text(".leaflet-control-layers-overlays")
    for name in (
        "Ranh giới xã/phường / Commune boundaries",
        "Vùng trắng sóng / Dead zones",
        "Thôn/bản — mọi nhà mạng / Hamlets — all operators",
        "Thôn/bản — Viettel / Hamlets — Viettel",
        "Trạm BTS — MobiFone / Sites — MobiFone",
        "Trạm đo tại trung tâm xã / Probes at commune centres",
    ):
        assert name in overlays
    legend = page.inner_text(".ls-legend")
    for text in ("Phủ sóng / Covered", "Trắng sóng / No signal", "Mất kết nối / Down"):
        assert text in legend
    assert "Dữ liệu mô phỏng" in page.inner_text(".ls-synthetic")
    drawn = page.evaluate(
        "Object.values(lsMap._layers).filter((l) => l instanceof L.CircleMarker).length"
    )
    assert drawn == 1500  # the all-operators layer; the others are off until ticked
    assert page.locator(".ls-probe-up").count() == 1
    assert page.locator(".ls-probe-unknown").count() == 1
    assert any(re.fullmatch(r"/\d+/\d+/\d+\.png", p) for p in tile_server.requests)
    full = keep(page.screenshot(), "province-04.png", tmp_path)
    assert full.stat().st_size > 50_000

    i = lonely_hamlet(cao_bang)
    h, cl = cao_bang.coverage.hamlets, cao_bang.coverage.classification
    click_at(page, float(h.lat[i]), float(h.lon[i]))
    popup = page.locator(".leaflet-popup-content .ls-popup[data-kind=hamlet]")
    popup.wait_for(timeout=5000)
    assert popup.get_attribute("data-id") == h.ids[i]
    text = popup.inner_text()
    commune = cao_bang.communes.set_index("code").loc[h.commune_code[i], "full_name"]
    assert commune.split()[0] in ("Xã", "Phường")
    assert h.names[i] in text and f"{commune} ({h.commune_code[i]})" in text
    assert fits(page, "hamlet", WIDE["width"]) == [], "the popup is under a control"
    assert f"{int(h.population[i]):,}".replace(",", ".") in text
    status = ("Phủ sóng", "Lõm sóng", "Trắng sóng", "Mất sóng do sự cố")[int(cl.overall[i])]
    assert status in text
    best = int(cl.best_operator[i])
    if best >= 0:
        name = ("Viettel", "VinaPhone", "MobiFone")[best]
        assert f"{name}, {round(float(cl.rsrp_dbm[i, best]))} dBm" in text
        sector = int(cl.serving[i, best])
        assert str(cao_bang.coverage.sectors.site_id[sector]) in text
    page.wait_for_timeout(400)  # the popup fades in
    keep(page.screenshot(), "province-04-hamlet-popup.png", tmp_path)

    page.evaluate("lsMap.closePopup(); true")
    probe_lon, probe_lat = (
        c.engine.connect()
        .exec_driver_sql("SELECT lon, lat FROM communes WHERE code = '01273'")
        .one()
    )
    page.evaluate(f"lsMap.setView([{probe_lat}, {probe_lon}], 12, {{animate: false}}); true")
    page.wait_for_timeout(300)
    page.locator(".ls-probe-up").click()
    probe = page.locator(".leaflet-popup-content .ls-popup[data-kind=probe]")
    probe.wait_for(timeout=5000)
    text = probe.inner_text()
    assert "cb-thuc-phan" in text and "Phường Thục Phán (01273)" in text
    assert "Hoạt động / Up" in text and "viettel-4g" in text and "Lần cuối nhận tin" in text
    # heard from seconds ago: each language in its own order, not "0 phút / 0 min trước / ago"
    assert re.search(r"\((vừa xong / just now|\d+ phút trước / \d+ min ago)\)", text), text
    assert re.search(r"viettel-4g\s+Viettel\s", text), text
    assert fits(page, "probe", WIDE["width"]) == []
    assert console.errors() == []
    on_a_phone(browser, c, viewer, cao_bang, tmp_path)


def on_a_phone(
    browser: Any, c: RunningCollector, viewer: str, cao_bang: SampleProvince, tmp_path: Path
) -> None:
    """The province map at 390 px: controls folded, popups that fit and that nothing covers
    (run by the test above, on its collector)."""
    context = browser.new_context(viewport=NARROW, locale="vi-VN", device_scale_factor=1)
    page = context.new_page()
    console = Console(page)
    page.goto(f"{c.url}/maps/province/04?token={viewer}", wait_until="load")
    page.wait_for_function(LAYERS_READY.format(n=10))
    page.evaluate(FIND_MAP)

    # the layer list and the legend are folded, and the legend opens with a tap
    assert page.locator(".leaflet-control-layers-expanded").count() == 0
    assert page.locator(".leaflet-control-layers-toggle").is_visible()
    fold = page.locator(".ls-legend-box .ls-fold")
    assert fold.inner_text().startswith("Chú giải / Legend")
    assert fold.get_attribute("aria-expanded") == "false"
    row = page.locator('.ls-legend [data-key="probe-partial"]')
    assert not row.is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= NARROW["width"]
    page.wait_for_timeout(300)  # the tiles
    keep(page.screenshot(), "map-390.png", tmp_path)
    fold.click()
    assert row.is_visible() and fold.get_attribute("aria-expanded") == "true"
    assert "Mất một phần kết nối / Partly down" in row.inner_text()
    box = page.locator(".ls-legend-box").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= NARROW["width"]
    toggle = page.locator(".leaflet-control-layers-toggle").bounding_box()
    assert toggle is not None
    page.mouse.move(toggle["x"] + toggle["width"] / 2, toggle["y"] + toggle["height"] / 2)
    assert page.locator(".leaflet-control-layers-expanded").count() == 1

    # a hamlet's popup folds them again, fits the screen and nothing covers it
    i = lonely_hamlet(cao_bang)
    h = cao_bang.coverage.hamlets
    click_at(page, float(h.lat[i]), float(h.lon[i]))
    popup = page.locator(".leaflet-popup-content .ls-popup[data-kind=hamlet]")
    popup.wait_for(timeout=5000)
    assert fits(page, "hamlet", NARROW["width"]) == []
    assert not row.is_visible()
    assert page.locator(".leaflet-control-layers-expanded").count() == 0
    commune = cao_bang.communes.set_index("code").loc[h.commune_code[i], "full_name"]
    assert f"{commune} ({h.commune_code[i]})" in popup.inner_text()

    # a probe's popup: its table wraps inside the popup, operators named as everywhere else
    page.evaluate("lsMap.closePopup(); true")
    lon, lat = (
        c.engine.connect()
        .exec_driver_sql("SELECT lon, lat FROM communes WHERE code = '01273'")
        .one()
    )
    page.evaluate(f"lsMap.setView([{lat}, {lon}], 12, {{animate: false}}); true")
    page.wait_for_timeout(300)
    page.locator(".ls-probe-up").click()
    probe = page.locator(".leaflet-popup-content .ls-popup[data-kind=probe]")
    probe.wait_for(timeout=5000)
    assert fits(page, "probe", NARROW["width"]) == []
    text = probe.inner_text()
    assert "Phường Thục Phán (01273)" in text and re.search(r"viettel-4g\s+Viettel\s", text)
    assert page.evaluate("document.documentElement.scrollWidth") <= NARROW["width"]
    keep(page.screenshot(), "map-390-popup.png", tmp_path)
    assert console.errors() == []
    context.close()


#: why a popup of a kind does not fit: off the screen, spilling out of itself, overlapping a
#: control (controls are drawn over popups), or something else than the popup at its centre;
#: or still moving (the map pans to show it)
POPUP_FITS = """([kind, width]) => {
  const el = document.querySelector(`.leaflet-popup-content .ls-popup[data-kind=${kind}]`);
  if (!el) return ["no popup"];
  const popup = el.closest(".leaflet-popup"), r = popup.getBoundingClientRect(), out = [];
  const where = JSON.stringify([r.left, r.top, r.right, r.bottom]);
  if (window.lsLastPopup !== where) out.push(`moving: ${where}`);
  window.lsLastPopup = where;
  if (r.left < 0 || r.right > width || r.top < 0 || r.bottom > window.innerHeight)
    out.push(`off the screen: ${where}`);
  for (const e of popup.querySelectorAll("*")) {
    const b = e.getBoundingClientRect();
    if (b.width && (b.left < r.left - 1 || b.right > r.right + 1))
      out.push(`${e.tagName} spills: ${b.left}..${b.right} in ${r.left}..${r.right}`);
  }
  for (const c of document.querySelectorAll(".leaflet-control")) {
    const b = c.getBoundingClientRect();
    if (b.width && b.height && b.left < r.right && r.left < b.right && b.top < r.bottom
        && r.top < b.bottom)
      out.push(`under ${c.className}: ${JSON.stringify(b)}`);
  }
  const x = (r.left + r.right) / 2, y = (r.top + r.bottom) / 2;
  const hit = document.elementFromPoint(x, y);
  if (!popup.contains(hit)) out.push(`at its centre: ${hit && hit.className}`);
  return out;
}"""


def fits(page: Any, kind: str, width: int) -> list[str]:
    """What is wrong with the open popup of ``kind`` once the map has panned to show it: an
    empty list when it fits on the screen and nothing covers it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    check = f"(a) => ({POPUP_FITS})(a)"
    try:  # the map pans to the popup, animated (slowly on a busy machine)
        page.wait_for_function(
            f"(a) => ({check})(a).length === 0", arg=[kind, width], timeout=10_000
        )
    except PlaywrightTimeout:
        pass
    problems: list[str] = page.evaluate(check, [kind, width])
    return problems


def test_the_data_shows_when_tiles_cannot_load(
    page: Any,
    collector_factory: CollectorFactory,
    sqlite_url: str,
    static_coverage: StaticCoverage,
    tmp_path: Path,
) -> None:
    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    tiles = f"http://127.0.0.1:{dead}/{{z}}/{{x}}/{{y}}.png"
    c, viewer = serve(collector_factory, sqlite_url, static_coverage, tiles)
    console = Console(page)
    page.goto(f"{c.url}/maps/province/04?token={viewer}", wait_until="load")
    page.wait_for_function(LAYERS_READY.format(n=10))
    page.evaluate(FIND_MAP)
    notice = page.locator(".ls-tiles")
    notice.wait_for(timeout=5000)
    assert "Không tải được nền bản đồ / Base map tiles could not be loaded" in notice.inner_text()
    drawn = page.evaluate(
        "Object.values(lsMap._layers).filter((l) => l instanceof L.CircleMarker).length"
    )
    assert drawn == 1500
    keep(page.screenshot(), "province-04-no-tiles.png", tmp_path)
    failed = [m for m in console.messages if m[0] == "error"]
    assert failed and all(f"127.0.0.1:{dead}" in m[2] for m in failed)
    assert console.errors(except_url=f"127.0.0.1:{dead}") == []


def test_the_status_page_and_the_national_map_in_chromium(
    page: Any,
    collector_factory: CollectorFactory,
    sqlite_url: str,
    static_coverage: StaticCoverage,
    tile_server: TileServer,
    tmp_path: Path,
) -> None:
    c, viewer = serve(collector_factory, sqlite_url, static_coverage, tile_server.url)
    console = Console(page)
    page.goto(f"{c.url}/?token={ADMIN_SECRET}", wait_until="load")
    assert page.url == f"{c.url}/"
    assert page.locator("details[data-province]").count() == 34
    keep(page.screenshot(), "status-top.png", tmp_path)
    row = page.locator('li[data-probe="cb-thuc-phan"][data-state="up"]')
    assert not row.is_visible()  # a centre that is up is folded until opened
    page.click("#p-04 details.up > summary")
    assert row.is_visible() and "Phường Thục Phán" in row.inner_text()
    # a centre never heard from is a problem: shown open, as a card
    assert page.locator('li[data-probe="cb-bao-lac"][data-state="unknown"]').is_visible()
    assert "Không có sự cố / No open outage" in page.inner_text("main")
    keep(page.screenshot(full_page=True), "status.png", tmp_path)

    page.goto(f"{c.url}/maps/national", wait_until="load")
    page.wait_for_function("() => document.querySelectorAll('.ls-index a').length == 34")
    page.evaluate(FIND_MAP)
    polygons = page.evaluate(
        "Object.values(lsMap._layers).filter((l) => l instanceof L.Polygon).length"
    )
    assert polygons >= 3321
    assert "Chưa có dữ liệu / No data" in page.inner_text(".ls-legend")
    keep(page.screenshot(), "national.png", tmp_path)
    page.click('.ls-index a[data-province="04"]')
    page.wait_for_url(f"{c.url}/maps/province/04")
    page.wait_for_function(LAYERS_READY.format(n=10))
    assert console.errors() == []


# -- sessions: what another site can and cannot do -------------------------------------------

WIDE = {"width": 1400, "height": 900}
NARROW = {"width": 390, "height": 844}


class OtherSite:
    """Another site for the browser: 127.0.0.2 is not the same site as 127.0.0.1 (another port
    on the same address would be). Serves the pages a test puts in ``pages``."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                html = pages.get(self.path)
                if html is None:
                    self.send_error(404)
                    return
                raw = f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{html}'
                data = raw.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.2", 0), Handler)
        self.url = f"http://127.0.0.2:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def other_site() -> Iterator[OtherSite]:
    site = OtherSite()
    yield site
    site.close()


def session_cookie(context: Any) -> dict[str, Any] | None:
    found = [k for k in context.cookies() if k["name"] == "lomsong_token"]
    return found[0] if found else None


def test_other_sites_cannot_sign_in_or_out_and_their_links_arrive_signed_in(
    browser: Any,
    collector_factory: CollectorFactory,
    sqlite_url: str,
    static_coverage: StaticCoverage,
    tile_server: TileServer,
    other_site: OtherSite,
    tmp_path: Path,
) -> None:
    c, viewer = serve(collector_factory, sqlite_url, static_coverage, tile_server.url)
    intruder = c.viewer("08")
    other_site.pages["/mail"] = f'<a id="go" href="{c.url}/maps/province/04">Bản đồ</a>'
    other_site.pages["/login"] = (
        f'<form method="post" action="{c.url}/login">'
        f'<input type="hidden" name="token" value="{intruder}">'
        '<input type="hidden" name="next" value="/"><button id="go">Xem</button></form>'
    )
    other_site.pages["/logout"] = (
        f'<form method="post" action="{c.url}/logout"><button id="go">Xem</button></form>'
    )
    context = browser.new_context(viewport=WIDE, locale="vi-VN")
    page = context.new_page()
    answers: list[tuple[str, int]] = []
    page.on("response", lambda r: answers.append((r.url.removeprefix(c.url), r.status)))

    # a link the officer opens (typed, here) signs in at once, into a Strict cookie
    page.goto(f"{c.url}/?token={viewer}", wait_until="load")
    assert page.url == f"{c.url}/"
    assert "Xem tỉnh / Viewer of: 04" in page.inner_text("header")
    cookie = session_cookie(context)
    assert cookie is not None and cookie["sameSite"] == "Strict" and cookie["httpOnly"]

    # the header's sign-out is a button, wide and narrow
    button = page.locator("header form.signout button")
    assert button.inner_text() == "Đăng xuất / Sign out" and button.is_visible()
    keep(page.screenshot(), "signout-1400.png", tmp_path)
    page.set_viewport_size(NARROW)
    assert button.is_visible()
    box = button.bounding_box()
    assert box is not None and box["x"] + box["width"] <= NARROW["width"]
    keep(page.screenshot(), "signout-390.png", tmp_path)
    page.set_viewport_size(WIDE)

    # a webmail's link: the browser holds the cookie back, the page reopens itself, the map
    page.goto(f"{other_site.url}/mail", wait_until="load")
    answers.clear()
    page.click("#go")
    page.wait_for_url(f"{c.url}/maps/province/04")
    page.wait_for_function(LAYERS_READY.format(n=10))
    ours = [a for a in answers if a[0].startswith("/maps/province/04")]
    assert ours == [
        ("/maps/province/04", 200),  # the page that reopens
        ("/maps/province/04?reopened=1", 303),  # with the cookie now: to the clean address
        ("/maps/province/04", 200),  # the map
    ], ours
    assert page.locator("form[action='/login']").count() == 0
    keep(page.screenshot(), "province-04-from-another-site.png", tmp_path)

    # another site's forms are refused, and the session stays the officer's own
    for path in ("/login", "/logout"):
        page.goto(f"{other_site.url}{path}", wait_until="load")
        page.click("#go")
        page.wait_for_url(f"{c.url}{path}")
        assert "Bị từ chối / Refused" in page.inner_text("body"), path
    assert session_cookie(context) == cookie
    page.goto(f"{c.url}/", wait_until="load")
    assert "Xem tỉnh / Viewer of: 04" in page.inner_text("header")

    # the button signs out
    page.click("header form.signout button")
    page.wait_for_url(f"{c.url}/")
    assert page.locator("form[action='/login'] input[name=token]").is_visible()
    assert session_cookie(context) is None
    context.close()


def test_a_token_link_from_another_site_asks_before_it_signs_in(
    browser: Any,
    collector_factory: CollectorFactory,
    sqlite_url: str,
    static_coverage: StaticCoverage,
    tile_server: TileServer,
    other_site: OtherSite,
    tmp_path: Path,
) -> None:
    c, viewer = serve(collector_factory, sqlite_url, static_coverage, tile_server.url)
    other_site.pages["/chat"] = (
        f'<a id="go" href="{c.url}/maps/province/04?token={viewer}">Bản đồ Cao Bằng</a>'
    )
    context = browser.new_context(viewport=WIDE, locale="vi-VN")
    page = context.new_page()
    page.goto(f"{other_site.url}/chat", wait_until="load")
    page.click("#go")
    page.wait_for_url(f"{c.url}/login?next=%2Fmaps%2Fprovince%2F04")
    text = page.inner_text("#confirm")
    assert "Đăng nhập với mã này? / Sign in with this token?" in text
    assert "Xem tỉnh / Viewer" in text and "Cao Bằng (04)" in text
    assert viewer not in page.content()
    assert session_cookie(context) is None
    button = page.get_by_role("button", name="Đăng nhập / Sign in")
    assert button.is_visible()
    keep(page.screenshot(), "confirm-1400.png", tmp_path)
    page.set_viewport_size(NARROW)
    assert button.is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= NARROW["width"]
    keep(page.screenshot(full_page=True), "confirm-390.png", tmp_path)

    button.click()
    page.wait_for_url(f"{c.url}/maps/province/04")
    page.wait_for_function(LAYERS_READY.format(n=10))
    cookie = session_cookie(context)
    assert cookie is not None and cookie["value"] == viewer
    # no address the tab went through keeps the token
    page.go_back(wait_until="load")
    assert page.url == f"{c.url}/login?next=%2Fmaps%2Fprovince%2F04"
    assert "Sign in with this token" not in page.inner_text("body")  # used up
    page.go_back(wait_until="load")
    assert page.url == f"{other_site.url}/chat"
    context.close()
