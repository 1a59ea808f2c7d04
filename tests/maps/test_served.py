"""Maps and the status page served by a real collector: caching, ETags, roles, sign-in."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from lomsong.config.alerts import AlertsConfig, MaintenanceConfig, Match
from lomsong.timefmt import LOCAL_TZ
from tests.conftest import ADMIN_SECRET, CollectorFactory, RunningCollector
from tests.factories import body, iso
from tests.maps.conftest import StaticCoverage, layer_data, layers, page_data
from tests.waiting import wait_until

DEAD_TILES = {"tile_url": "http://127.0.0.1:9/{z}/{x}/{y}.png"}
SHARE_LAYER = "Tỷ lệ dân trong vùng trắng sóng / Share of population in dead zones"


def start(factory: CollectorFactory, url: str, coverage: StaticCoverage | None) -> RunningCollector:
    return factory(url, coverage=coverage, maps=DEAD_TILES, report_interval_seconds=5.0)


def client(c: RunningCollector, token: str | None = None) -> httpx.Client:
    """A client patient enough for a first build of the national map on a busy machine."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=c.url, headers=headers, timeout=120)


def report(
    c: RunningCollector,
    token: str,
    probe_id: str,
    seq0: int,
    *,
    failing: str | None = None,
    rounds: int = 1,
) -> int:
    """Rounds of icmp on each uplink (``failing`` fails) and a heartbeat; the next seq."""
    now = datetime.now(UTC)
    results: list[dict[str, Any]] = []
    seq = seq0
    for r in range(rounds):
        at = now - timedelta(seconds=3 * (rounds - r))
        for uplink in ("fibre", "viettel-4g"):
            ok = uplink != failing
            results.append(
                {
                    "seq": seq,
                    "measured_at": iso(at),
                    "kind": "icmp",
                    "target": "dichvucong.gov.vn",
                    "uplink": uplink,
                    "ok": ok,
                    "duration_seconds": 0.04 if ok else None,
                    "packets_sent": 5,
                    "packets_received": 5 if ok else 0,
                    "error": None if ok else "timeout",
                }
            )
            seq += 1
    results.append(
        {
            "seq": seq,
            "measured_at": iso(now),
            "kind": "heartbeat",
            "target": "self",
            "uplink": None,
            "ok": True,
            "uptime_seconds": 86_000,
        }
    )
    doc = {
        "probe_id": probe_id,
        "boot_id": "boot-1",
        "agent_version": "0.1.0",
        "sent_at": iso(now),
        "results": results,
    }
    raw, headers = body(doc)
    with c.client(token) as http:
        r = http.post("/api/v1/reports", content=raw, headers=headers)
        assert r.status_code == 200, r.text
    return seq + 1


def test_province_map_is_cached_and_rebuilt_when_its_data_changes(
    collector_factory: CollectorFactory, db_url: str, static_coverage: StaticCoverage
) -> None:
    c = start(collector_factory, db_url, static_coverage)
    token = c.register("cb-thuc-phan", "01273", ("fibre:fibre", "viettel-4g:viettel"))
    c.ctx.live.reload(c.engine)  # what the periodic refresh does after a registration
    with client(c, c.viewer("04")) as http:
        first = http.get("/maps/province/04")
        assert first.status_code == 200, first.text
        assert first.headers["content-type"] == "text/html; charset=utf-8"
        assert first.headers["cache-control"] == "private, no-cache"
        etag = first.headers["etag"]
        html = first.text
        assert "Thôn/bản — mọi nhà mạng / Hamlets — all operators" in layers(html)
        data = page_data(html)
        assert data["P"]["id"] == ["cb-thuc-phan"] and data["P"]["state"] == ["unknown"]
        assert len(data["H"]["id"]) == 1500
        assert 'href=\\"/maps/national\\"' in html
        assert 'href=\\"/api/v1/hamlets?province=04&amp;format=csv\\"' in html
        assert 'href=\\"/api/v1/coverage/summary?province=04&amp;format=xlsx\\"' in html

        again = http.get("/maps/province/04", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == etag
        assert http.get("/maps/province/04").content == first.content
        assert c.ctx.maps is not None and c.ctx.maps.builds == 1

        # the probe reports: its state changes, so does the page
        report(c, token, "cb-thuc-phan", 1)
        changed = http.get("/maps/province/04", headers={"If-None-Match": etag})
        assert changed.status_code == 200
        assert page_data(changed.text)["P"]["state"] == ["up"]
        etag2 = changed.headers["etag"]
        assert etag2 != etag and c.ctx.maps.builds == 2

        # new coverage (an import, a new classification): rebuilt once
        static_coverage.generation += 1
        rebuilt = http.get("/maps/province/04", headers={"If-None-Match": etag2})
        assert rebuilt.status_code == 200 and rebuilt.headers["etag"] != etag2
        assert c.ctx.maps.builds == 3
        assert (
            http.get(
                "/maps/province/04", headers={"If-None-Match": f"W/{rebuilt.headers['etag']}"}
            ).status_code
            == 304
        )


def test_viewers_see_only_their_provinces(
    collector_factory: CollectorFactory, sqlite_url: str, static_coverage: StaticCoverage
) -> None:
    c = start(collector_factory, sqlite_url, static_coverage)
    probe = c.register("cb-thuc-phan", "01273")
    with client(c, c.viewer("08")) as http:
        r = http.get("/maps/province/04")
        assert r.status_code == 403 and "không có quyền / not allowed" in r.text
        index = http.get("/maps/")
        assert index.status_code == 200
        assert re.findall(r'href="/maps/province/(\d+)"', index.text) == ["08"]
    with client(c, c.viewer("04")) as http:
        nat = http.get("/maps/national")
        assert nat.status_code == 200
        feats = layer_data(nat.text, layers(nat.text)[SHARE_LAYER])["features"]
        assert {f["properties"]["p"] for f in feats} == {"04"}
        assert "etag" in nat.headers
    with client(c, probe) as http:
        assert http.get("/maps/province/04").status_code == 403
        assert http.get("/").status_code == 403
    with client(c, ADMIN_SECRET) as http:
        assert http.get("/maps/province/99").status_code == 404
        assert http.get("/maps/province/4").status_code == 422
        nat = http.get("/maps/national")
        feats = layer_data(nat.text, layers(nat.text)[SHARE_LAYER])["features"]
        assert len(feats) == 3321
    with client(c) as http:
        r = http.get("/maps/province/04")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert '<form method="post" action="/login">' in r.text
        assert 'name="next" value="/maps/province/04"' in r.text


def test_a_browser_signs_in_with_a_link_or_the_form_and_the_cookie_only_reads(
    collector_factory: CollectorFactory, sqlite_url: str
) -> None:
    """The session as a browser opening its own link sees it; where other sites are kept out,
    ``tests/collector/test_sessions.py``."""
    c = start(collector_factory, sqlite_url, None)
    probe = c.register("cb-thuc-phan", "01273")
    c.ctx.live.reload(c.engine)
    viewer = c.viewer("04")
    # a link the officer opened (Sec-Fetch-Site: none), forms posted from this site (Origin)
    own = {"Sec-Fetch-Site": "none", "Origin": c.url}
    with httpx.Client(base_url=c.url, headers=own, timeout=120) as browser:
        r = browser.get(f"/?token={viewer}&province=04")
        assert r.status_code == 303 and r.headers["location"] == "/?province=04"
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f"lomsong_token={viewer};")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        page = browser.get("/?province=04")
        assert page.status_code == 200 and "Xem tỉnh / Viewer of: 04" in page.text
        assert page.headers["cache-control"] == "no-store"
        assert browser.get("/api/v1/probes").json()["count"] == 1
        # the cookie never writes: a page elsewhere cannot post reports with it
        raw, headers = body({"probe_id": "cb-thuc-phan", "results": []})
        assert browser.post("/api/v1/reports", content=raw, headers=headers).status_code == 401
        assert browser.get("/?province=08").status_code == 403
        out = browser.post("/logout")
        assert out.status_code == 303 and 'lomsong_token=""' in out.headers["set-cookie"]
        assert browser.get("/").status_code == 401

    with httpx.Client(base_url=c.url, headers=own, timeout=120) as browser:
        bad = browser.post("/login", data={"token": "lst_nope", "next": "/maps/"})
        assert bad.status_code == 401 and "Unknown or revoked token" in bad.text
        assert browser.get(f"/?token={probe}").status_code == 303  # a real token, any role
        assert browser.get("/").status_code == 403  # … but a probe's cannot read pages
        good = browser.post("/login", data={"token": viewer, "next": "//elsewhere.example/x"})
        assert good.status_code == 303 and good.headers["location"] == "/"
        good = browser.post("/login", data={"token": viewer, "next": "/maps/"})
        assert good.headers["location"] == "/maps/"
        assert browser.get("/maps/").status_code == 200
        assert browser.get("/?token=lst_revoked-or-wrong").status_code == 401


def test_status_page_lists_provinces_communes_probes_and_open_outages(
    collector_factory: CollectorFactory, sqlite_url: str, static_coverage: StaticCoverage
) -> None:
    local = datetime.now(LOCAL_TZ).replace(tzinfo=None, microsecond=0)
    works = MaintenanceConfig(
        name="Viettel works",
        match=Match(commune=["01273"], operator=["viettel"]),
        start=local - timedelta(hours=1),
        end=local + timedelta(hours=2),
    )
    c = collector_factory(
        sqlite_url,
        coverage=static_coverage,
        maps=DEAD_TILES,
        report_interval_seconds=5.0,
        alerts=AlertsConfig(maintenance=[works]),
    )
    # the detector's first tick takes what is stored as history: report after it
    wait_until(
        lambda: c.ctx.outages is not None and c.ctx.outages.detector is not None,
        timeout=15,
        what="the detector running",
    )
    cb = c.register("cb-thuc-phan", "01273", ("fibre:fibre", "viettel-4g:viettel"))
    tq = c.register("tq-minh-xuan", "02509", ("fibre:fibre", "viettel-4g:viettel"))
    c.register("cb-bao-lac", "01321", ("fibre:fibre",))
    c.ctx.live.reload(c.engine)
    report(c, cb, "cb-thuc-phan", 1, failing="viettel-4g", rounds=4)
    report(c, tq, "tq-minh-xuan", 1)

    def opened() -> bool:
        with client(c, ADMIN_SECRET) as http:
            return bool(http.get("/api/v1/outages", params={"active": "true"}).json()["count"] == 1)

    wait_until(opened, timeout=15, what="an outage opened")
    with client(c, ADMIN_SECRET) as http:
        page = http.get("/")
    assert page.status_code == 200
    html = page.text
    assert len(re.findall(r'data-province="\d\d"', html)) == 34
    assert '<meta http-equiv="refresh" content="60">' in html
    outages = re.search(r'<ol class="cards wide" id="outages">(.*?)</ol>', html, re.S)
    assert outages is not None
    row = outages.group(1)
    assert "Phường Thục Phán (01273)" in row and "Cao Bằng" in row
    assert "Mất kết nối / Link down" in row and "viettel-4g (Viettel)" in row
    # no hamlets on this collector (the maps' coverage is the test's own): said so, not guessed
    assert "this collector has no hamlet data for this commune" in row
    # the maintenance window covers it: named on the card and in force at the top
    assert "Viettel works" in row and "notifications muted" in row
    assert 'id="maintenance"' in html and "xã / commune 01273 · nhà mạng / operator viettel" in html
    assert "Resolved outages — 7 ngày qua / days (0)" in html
    [outage_id] = re.findall(r'href="/outages/([^"]+)"', row)
    assert 'data-probe="cb-thuc-phan" data-state="partial"' in html
    assert 'data-probe="tq-minh-xuan" data-state="up"' in html
    assert 'data-probe="cb-bao-lac" data-state="unknown"' in html
    assert 'href="/maps/province/04"' in html
    assert 'href="/api/v1/hamlets?province=04&amp;format=csv" download' in html
    assert 'href="/api/v1/coverage/summary?province=04&amp;format=xlsx" download' in html
    assert "54 xã/phường chưa có trạm đo / communes without a probe" in html

    with client(c, ADMIN_SECRET) as http:
        one = http.get(f"/outages/{outage_id}")
        assert one.status_code == 200, one.text
        steps = re.findall(r'<li data-step="(\w+)">', one.text)
        assert steps == ["started", "opened", "classified"], steps
        assert http.get("/outages/nothing-here").status_code == 404
    with client(c, c.viewer("12")) as http:
        assert http.get(f"/outages/{outage_id}").status_code == 403

    with client(c, c.viewer("04")) as http:
        mine = http.get("/").text
        assert len(re.findall(r'data-province="\d\d"', mine)) == 1
        assert "<title>Cao Bằng — " in mine
        assert http.get(f"/outages/{outage_id}").status_code == 200
        assert "tq-minh-xuan" not in mine and "cb-thuc-phan" in mine
        # the map shows the link down, and the coverage was asked with it
        data = page_data(http.get("/maps/province/04").text)
    assert data["P"]["state"][data["P"]["id"].index("cb-thuc-phan")] == "partial"
    assert static_coverage.asked[-1] == ("04", [("01273", "viettel")])


def test_without_an_engine_or_hamlets_the_map_says_there_is_no_coverage(
    collector_factory: CollectorFactory, sqlite_url: str
) -> None:
    c = start(collector_factory, sqlite_url, None)
    with client(c, ADMIN_SECRET) as http:
        r = http.get("/maps/province/04")
        assert r.status_code == 200
        assert "No coverage data for this province yet" in r.text
        assert list(layers(r.text)) == [
            "Ranh giới xã/phường / Commune boundaries",
            "Trạm đo tại trung tâm xã / Probes at commune centres",
        ]
        nat = http.get("/maps/national")
        assert nat.status_code == 200 and "No coverage data yet" in nat.text


@pytest.mark.parametrize("path", ["/", "/maps/", "/maps/national", "/maps/province/04"])
def test_pages_are_not_in_the_api_docs(
    collector_factory: CollectorFactory, sqlite_url: str, path: str
) -> None:
    c = start(collector_factory, sqlite_url, None)
    with client(c) as http:
        spec = http.get("/openapi.json").json()
    assert path not in spec["paths"]
