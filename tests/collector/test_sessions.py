"""Browser sessions against a real collector: another site can neither sign a browser in nor
out, a link from another site asks first, a webmail's link still arrives signed in, and HEAD
answers wherever GET does."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from lomsong.collector.app import create_app
from lomsong.collector.auth import create_token
from lomsong.collector.enrolment_keys import create_key
from lomsong.collector.enrolments import record
from lomsong.collector.fleet_profiles import set_layer
from lomsong.enrolwire import EnrolRequest
from lomsong.storage.database import write_transaction
from lomsong.storage.schema import outages
from tests.conftest import ADMIN_SECRET, CollectorFactory, RunningCollector, make_settings

PUBLIC = "https://lomsong.caobang.gov.vn"
EVIL = "https://evil.example"
#: stands for the collector's own origin (``http://127.0.0.1:PORT``) in the tables
SELF = "{self}"


@pytest.fixture
def c(collector: RunningCollector) -> RunningCollector:
    return collector


@pytest.fixture
def proxied(collector_factory: CollectorFactory, sqlite_url: str) -> RunningCollector:
    """A collector whose people reach it through a TLS proxy at ``PUBLIC``."""
    return collector_factory(sqlite_url, public_url=PUBLIC)


def browser(c: RunningCollector, **headers: str) -> httpx.Client:
    """A client that keeps cookies and follows no redirect, as the tests read each step."""
    return httpx.Client(base_url=c.url, headers=headers, timeout=30)


def fill(headers: dict[str, str], c: RunningCollector) -> dict[str, str]:
    return {k: v.replace(SELF, c.url) for k, v in headers.items()}


def cookie_named(response: httpx.Response, name: str) -> str | None:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            return header
    return None


def assert_session_cookie(response: httpx.Response, token: str) -> None:
    cookie = cookie_named(response, "lomsong_token")
    assert cookie is not None and cookie.startswith(f"lomsong_token={token};"), cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie


# -- sign-in by form -------------------------------------------------------------------------

#: (case, headers of POST /login, signed in?)
LOGIN_ORIGINS: list[tuple[str, dict[str, str], bool]] = [
    ("this collector's Origin", {"Origin": SELF}, True),
    ("public_url's Origin", {"Origin": PUBLIC}, True),
    ("public_url's Origin with its default port", {"Origin": PUBLIC + ":443"}, True),
    ("another site's Origin", {"Origin": EVIL}, False),
    ("the same host on another port", {"Origin": "http://127.0.0.1:1"}, False),
    ("public_url's host over http", {"Origin": "http://lomsong.caobang.gov.vn"}, False),
    ('Origin "null"', {"Origin": "null"}, False),
    ("another site's Origin, this Referer", {"Origin": EVIL, "Referer": SELF + "/"}, False),
    ("no Origin, this collector's Referer", {"Referer": SELF + "/login?next=/"}, True),
    ("no Origin, public_url's Referer", {"Referer": PUBLIC + "/maps/"}, True),
    ("no Origin, another site's Referer", {"Referer": EVIL + "/lomsong"}, False),
    ("no Origin, a Referer that is no URL", {"Referer": "lomsong"}, False),
    ("neither Origin nor Referer", {}, False),
    (
        "behind a proxy: the forwarded scheme and the host",
        {
            "Host": "lomsong.tuyenquang.gov.vn",
            "X-Forwarded-Proto": "https",
            "Origin": "https://lomsong.tuyenquang.gov.vn",
        },
        True,
    ),
    (
        "behind a proxy: the host over the wrong scheme",
        {
            "Host": "lomsong.tuyenquang.gov.vn",
            "X-Forwarded-Proto": "https",
            "Origin": "http://lomsong.tuyenquang.gov.vn",
        },
        False,
    ),
]


def test_the_sign_in_form_is_taken_only_from_a_page_of_this_collector(
    proxied: RunningCollector,
) -> None:
    c = proxied
    viewer = c.viewer("04")
    for case, headers, signs_in in LOGIN_ORIGINS:
        with browser(c) as http:
            r = http.post(
                "/login", data={"token": viewer, "next": "/maps/"}, headers=fill(headers, c)
            )
            if signs_in:
                assert r.status_code == 303, case
                assert r.headers["location"] == "/maps/", case
                assert_session_cookie(r, viewer)
                # public_url is https: the cookie is Secure, so it is sent back here by hand
                assert "Secure" in str(cookie_named(r, "lomsong_token")), case
                again = {"Cookie": f"lomsong_token={viewer}"}
                assert http.get("/maps/", headers=again).status_code == 200, case
            else:
                assert r.status_code == 403, (case, r.status_code)
                assert "Bị từ chối / Refused" in r.text, case
                assert "This request was not sent from a lomsong page" in r.text, case
                assert r.headers["x-frame-options"] == "DENY", case
                assert cookie_named(r, "lomsong_token") is None, case
                assert http.get("/maps/").status_code == 401, case


def test_the_sign_in_form_itself(c: RunningCollector) -> None:
    with browser(c, Origin=c.url) as http:
        form = http.get("/login", params={"next": "/maps/province/04"})
        assert form.status_code == 200
        assert '<form method="post" action="/login">' in form.text
        assert 'name="next" value="/maps/province/04"' in form.text
        assert form.headers["content-security-policy"] == "frame-ancestors 'none'"
        assert 'value="/"' in http.get("/login", params={"next": "//evil.example/"}).text
        bad = http.post("/login", data={"token": "lst_nope", "next": "/maps/"})
        assert bad.status_code == 401 and "Unknown or revoked token" in bad.text
        good = http.post("/login", data={"token": c.viewer("04"), "next": "https://evil.example"})
        assert good.status_code == 303 and good.headers["location"] == "/"


# -- sign-in by link -------------------------------------------------------------------------

#: (Sec-Fetch-Site of the navigation to ``/?province=04&token=…``, signed in at once?)
LINK_SITES: list[tuple[str | None, bool]] = [
    ("none", True),  # typed, a bookmark, opened from a chat or mail application
    ("same-origin", True),
    ("same-site", False),
    ("cross-site", False),
    (None, False),  # a browser too old to say
]


@pytest.mark.parametrize(("site", "at_once"), LINK_SITES)
def test_a_token_link_signs_in_at_once_only_when_the_officer_opened_it(
    c: RunningCollector, site: str | None, at_once: bool
) -> None:
    token = create_token(
        c.engine, role="viewer", province_codes=("04", "08"), label="Trực ban Cao Bằng"
    ).token
    headers = {"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "navigate"} if site else {}
    with browser(c) as http:
        r = http.get("/", params={"province": "04", "token": token}, headers=headers)
        assert r.status_code == 303
        if at_once:
            assert r.headers["location"] == "/?province=04"
            assert_session_cookie(r, token)
            assert http.get("/?province=04").status_code == 200
            return
        # asked first: the token leaves the address, and waits for /login in a cookie
        assert r.headers["location"] == "/login?next=%2F%3Fprovince%3D04"
        assert cookie_named(r, "lomsong_token") is None
        pending = cookie_named(r, "lomsong_pending")
        assert pending is not None and pending.startswith(f"lomsong_pending={token};")
        assert "Path=/login" in pending and "Max-Age=600" in pending and "HttpOnly" in pending
        assert http.get("/").status_code == 401  # not signed in yet

        ask = http.get(r.headers["location"], headers=headers)
        assert ask.status_code == 200
        text = ask.text
        assert "Đăng nhập với mã này? / Sign in with this token?" in text
        assert "<dd>Xem tỉnh / Viewer</dd>" in text
        assert "<dd>Cao Bằng (04), Tuyên Quang (08)</dd>" in text
        assert "<dd>Trực ban Cao Bằng</dd>" in text
        assert token not in text  # the page never shows the token itself
        assert 'name="next" value="/?province=04"' in text
        assert ask.headers["x-frame-options"] == "DENY"
        assert ask.headers["cache-control"] == "no-store"

        # the button posts from this page; the same post from another site is refused
        form = {"next": "/?province=04", "pending": "1"}
        forged = http.post("/login", data=form, headers={"Origin": EVIL})
        assert forged.status_code == 403 and cookie_named(forged, "lomsong_token") is None
        yes = http.post("/login", data=form, headers={"Origin": c.url})
        assert yes.status_code == 303 and yes.headers["location"] == "/?province=04"
        assert_session_cookie(yes, token)
        dropped = cookie_named(yes, "lomsong_pending")
        assert dropped is not None and "Max-Age=0" in dropped
        page = http.get("/?province=04")
        assert page.status_code == 200 and "Xem tỉnh / Viewer of: 04, 08" in page.text
        # once used, the link's token waits no more: the button says it has expired
        again = http.post("/login", data=form, headers={"Origin": c.url})
        assert again.status_code == 401 and "The link has expired" in again.text


def test_a_bad_token_link_shows_the_form_from_any_site(c: RunningCollector) -> None:
    for site in ("none", "cross-site"):
        with browser(c, **{"Sec-Fetch-Site": site}) as http:
            r = http.get("/maps/", params={"token": "lst_revoked-or-wrong"})
            assert r.status_code == 401 and "Unknown or revoked token" in r.text, site
            assert cookie_named(r, "lomsong_pending") is None, site
            assert http.get("/login").text.count("Sign in with this token") == 0


def test_a_probe_token_link_is_described_as_a_probe(c: RunningCollector) -> None:
    probe = c.register("cb-thuc-phan", "01273")
    with browser(c, **{"Sec-Fetch-Site": "cross-site"}) as http:
        r = http.get("/", params={"token": probe})
        ask = http.get(r.headers["location"])
        assert "<dd>Trạm đo / Probe</dd>" in ask.text and "<dd>cb-thuc-phan</dd>" in ask.text


# -- sign-out --------------------------------------------------------------------------------

#: (case, method, headers, signed out?, status)
SIGN_OUTS: list[tuple[str, str, dict[str, str], bool, int]] = [
    ("a link (GET)", "GET", {}, False, 200),
    ("a link from another site", "GET", {"Sec-Fetch-Site": "cross-site"}, False, 200),
    ("another site's form", "POST", {"Origin": EVIL}, False, 403),
    ("a post with neither Origin nor Referer", "POST", {}, False, 403),
    ("the button on this collector's page", "POST", {"Origin": SELF}, True, 303),
    ("the button, Referer only", "POST", {"Referer": SELF + "/logout"}, True, 303),
]


def test_only_the_sign_out_button_on_this_collectors_pages_signs_out(
    c: RunningCollector,
) -> None:
    viewer = c.viewer("04")
    for case, method, headers, out, status in SIGN_OUTS:
        with browser(c, **{"Sec-Fetch-Site": "none"}) as http:
            assert http.get("/", params={"token": viewer}).status_code == 303, case
            r = http.request(method, "/logout", headers=fill(headers, c))
            assert r.status_code == status, (case, r.status_code)
            after = http.get("/")
            if out:
                assert r.headers["location"] == "/", case
                gone = cookie_named(r, "lomsong_token")
                assert gone is not None and 'lomsong_token=""' in gone, case
                assert "Max-Age=0" in gone and "SameSite=strict" in gone, case
                assert after.status_code == 401, case
            else:
                assert cookie_named(r, "lomsong_token") is None, case
                assert after.status_code == 200, case
            if method == "GET":
                assert '<form method="post" action="/logout">' in r.text, case
                assert "Đang đăng nhập / Signed in: Xem tỉnh / Viewer of: 04" in r.text, case
                assert r.headers["x-frame-options"] == "DENY", case


def test_every_page_header_signs_out_with_a_button(c: RunningCollector) -> None:
    with c.client(ADMIN_SECRET) as http:
        for path in ("/", "/maps/"):
            text = http.get(path).text
            assert '<form class="signout" method="post" action="/logout">' in text, path
            assert 'href="/logout"' not in text, path


# -- a link from another site with a SameSite=Strict cookie ----------------------------------

CROSS = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}

#: (case, path, request headers, signed in?, status, where to next: the reopen page's address,
#: a redirect's Location, or the sign-in form's next)
ARRIVALS: list[tuple[str, str, dict[str, str], bool, int, str]] = [
    ("a webmail's link, cookie held back", "/maps/", CROSS, False, 200, "/maps/?reopened=1"),
    (
        "with a query",
        "/?province=04",
        CROSS,
        False,
        200,
        "/?province=04&amp;reopened=1",
    ),
    ("reopened, still no cookie: the form", "/maps/?reopened=1", CROSS, False, 401, "/maps/"),
    ("reopened with the cookie", "/?province=04&reopened=1", CROSS, True, 303, "/?province=04"),
    ("a fetch from another site", "/maps/", {**CROSS, "Sec-Fetch-Mode": "cors"}, False, 401, ""),
    (
        "from this site, no cookie",
        "/maps/",
        {**CROSS, "Sec-Fetch-Site": "same-origin"},
        False,
        401,
        "",
    ),
    ("a browser that does not say", "/maps/", {}, False, 401, "/maps/"),
    ("with the cookie, from another site", "/maps/", CROSS, True, 200, ""),
]


def test_a_link_from_another_site_is_reopened_once_to_bring_the_strict_cookie(
    c: RunningCollector,
) -> None:
    viewer = c.viewer("04")
    for case, path, headers, signed, status, then in ARRIVALS:
        cookies = {"lomsong_token": viewer} if signed else {}
        with httpx.Client(base_url=c.url, cookies=cookies, timeout=30) as http:
            r = http.get(path, headers=headers)
        assert r.status_code == status, (case, r.status_code)
        if status == 200 and not signed:
            assert f'<meta http-equiv="refresh" content="0; url={then}">' in r.text, case
            assert r.headers["cache-control"] == "no-store", case
        elif status == 303:
            assert r.headers["location"] == then, case
        elif status == 401 and then:
            assert f'name="next" value="{then}"' in r.text, case
    # a revoked cookie is no reason to go round: the form at once
    with httpx.Client(base_url=c.url, cookies={"lomsong_token": "lst_gone"}) as http:
        assert http.get("/maps/", headers=CROSS).status_code == 401


# -- HEAD wherever GET is --------------------------------------------------------------------


@dataclass
class Raw:
    status: int
    headers: list[tuple[str, str]]
    rest: bytes


def raw_request(c: RunningCollector, method: str, target: str, headers: dict[str, str]) -> Raw:
    """One request on a fresh socket, read to the end: what the server put on the wire."""
    host, port = c.url.removeprefix("http://").split(":")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    pairs = [tuple(h.split(": ", 1)) for h in header_lines]
    return Raw(int(status_line.split()[1]), [(k.lower(), v) for k, v in pairs], rest)


def routes_of(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, set[str]]]:
    """Every route's path and methods, into included routers as well."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from routes_of(inner.routes, prefix + route.include_context.prefix)
        else:
            yield prefix + route.path, set(getattr(route, "methods", None) or ())


#: headers that may differ between two answers a moment apart
VOLATILE = {"date"}
#: routes whose body changes from one request to the next (it counts the requests)
CHANGING = {"/metrics"}


@pytest.mark.parametrize("auth", ["admin", "anonymous", "cookie"])
def test_head_answers_wherever_get_does_with_its_status_and_headers(
    c: RunningCollector, sqlite_url: str, auth: str
) -> None:
    c.register("cb-thuc-phan", "01273")
    c.ctx.live.reload(c.engine)
    start = time.time() - 600  # ended: nothing in its answers changes with the clock
    with write_transaction(c.engine) as conn:
        conn.execute(
            outages.insert().values(
                id="head-outage",
                probe_id="cb-thuc-phan",
                commune_code="01273",
                province_code="04",
                condition="probe_silent",
                started_at=start,
                detected_at=start,
                ended_at=start + 300,
                resolved_at=start + 300,
                updated_at=start + 300,
            )
        )
    box = {"machine_id": "0123456789abcdef", "hostname": "box", "agent_version": "1"}
    asked = EnrolRequest.model_validate({"commune": "01273", "description": box})
    record(c.engine, create_key(c.engine, "04").key, asked)  # enrolment 1
    layer = {"checks": [{"kind": "tcp", "target": "dichvucong.gov.vn:443"}]}
    set_layer(c.engine, "national", "", layer)
    set_layer(c.engine, "province", "04", layer)
    # the routes of an app like the running one (built, never started)
    app = create_app(make_settings(sqlite_url), engine=c.engine)
    gets = sorted({path for path, methods in routes_of(app.routes) if "GET" in methods})
    assert {"/", "/maps/", "/maps/province/{code}", "/metrics", "/healthz", "/readyz"} <= set(gets)
    assert {"/docs", "/openapi.json", "/api/v1/hamlets", "/logout", "/login"} <= set(gets)
    headers = {
        "admin": {"Authorization": f"Bearer {ADMIN_SECRET}"},
        "anonymous": {},
        "cookie": {"Cookie": f"lomsong_token={c.viewer('04')}"},
    }[auth]
    statuses = set()
    for template in gets:
        path = template.replace("{code}", "04").replace("{probe_id}", "cb-thuc-phan")
        path = path.replace("{asset}", "swagger-ui.css").replace("{outage_id}", "head-outage")
        path = path.replace("{enrolment_id}", "1")
        path = path.replace("{scope}", "province").replace("{key}", "04")
        target = path + ("?province=04" if path.startswith("/api/") else "")
        get = raw_request(c, "GET", target, headers)
        head = raw_request(c, "HEAD", target, headers)
        statuses.add(get.status)
        assert head.status == get.status, (target, head.status, get.status)
        assert head.rest == b"", (target, head.rest[:80])
        if template in CHANGING:
            skip = VOLATILE | {"content-length"}
            assert int(dict(head.headers)["content-length"]) > 0, target
        else:
            skip = VOLATILE
        assert [h for h in head.headers if h[0] not in skip] == [
            h for h in get.headers if h[0] not in skip
        ], target
    # each way in reached the routes: the admin reads everything; a viewer's cookie all but
    # the notifications (admin only); no token, only the open routes
    assert statuses == {"admin": {200}, "anonymous": {200, 401}, "cookie": {200, 403}}[auth]

    # a POST-only route answers HEAD as it answers GET: 405, with what it allows
    get = raw_request(c, "GET", "/api/v1/reports", headers)
    head = raw_request(c, "HEAD", "/api/v1/reports", headers)
    assert get.status == head.status == 405 and head.rest == b""
    assert dict(head.headers)["allow"] == dict(get.headers)["allow"] == "POST"


def test_head_of_a_token_link_signs_in_as_its_get_would(c: RunningCollector) -> None:
    viewer = c.viewer("04")
    r = raw_request(c, "HEAD", f"/maps/?token={viewer}", {"Sec-Fetch-Site": "none"})
    assert r.status == 303 and r.rest == b""
    cookie = dict(r.headers)["set-cookie"]
    assert cookie.startswith(f"lomsong_token={viewer};") and "SameSite=strict" in cookie
    assert re.search(r"^/maps/$", dict(r.headers)["location"])
