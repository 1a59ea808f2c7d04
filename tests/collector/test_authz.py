"""Who may do what: every route of the collector against every kind of caller, as a table.

Each row is one sample request of a route and the status each caller gets. The callers: no
token, a wrong token, a revoked token, probe A (commune 01273, province 04), probe B (commune
03388, province 12), a viewer of province 04, a viewer of province 12, and the admin. The table
must name every route the app serves (read from the app), so a new route fails this test until
someone decides who may call it.

The pages (``/``, ``/maps/…``) answer a browser: the sign-in page with 401 to a caller without a
valid token, and an HTML 403 to a probe token (``collector/routes/pages.py``). ``POST /login``
takes its token from the form, not from a header, so its row sends each caller's token there.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from lomsong.collector.app import create_app
from lomsong.collector.auth import create_token, revoke_token
from lomsong.collector.deps import TOKEN_COOKIE
from lomsong.collector.enrolment_keys import create_key
from lomsong.collector.enrolments import record
from lomsong.collector.fleet_profiles import set_layer
from lomsong.enrolwire import EnrolRequest
from lomsong.storage.database import write_transaction
from lomsong.storage.schema import outages
from lomsong.timefmt import iso
from tests.app_routes import routes_of
from tests.conftest import ADMIN_SECRET, CollectorFactory, RunningCollector
from tests.factories import batch, body

PROBE_A, PROBE_B = "authz-a", "authz-b"
ROLES = ("none", "wrong", "revoked", "probe_a", "probe_b", "viewer04", "viewer12", "admin")

#: the caller's token, or None: (content, headers) of the request
Body = Callable[[str | None], tuple[bytes, dict[str, str]]]


def report(_token: str | None) -> tuple[bytes, dict[str, str]]:
    """A valid batch of probe A's: only probe A may send it."""
    return body(batch(PROBE_A, [1]))


def json_body(doc: dict[str, Any]) -> Body:
    return lambda _token: body(doc)


def login_form(token: str | None) -> tuple[bytes, dict[str, str]]:
    """Sign-in takes the token from the form."""
    form = httpx.QueryParams({"token": token or "", "next": "/"})
    return str(form).encode(), {"Content-Type": "application/x-www-form-urlencoded"}


#: a field reading in province 04, where probe A stands and probe B does not
READING = {"lat": 22.9455, "lon": 105.6335, "operator": "viettel", "rsrp_dbm": -104.5}
WHATIF_04 = {"province": "04", "sites": [{"lat": 22.94, "lon": 105.63, "operator": "viettel"}]}
#: a box asking to be enrolled in commune 01273 (province 04), and its approval
ENROL_04 = {
    "commune": "01273",
    "description": {"machine_id": "0123456789abcdef", "hostname": "box", "agent_version": "1"},
}
APPROVAL = {"probe_id": "authz-enrolled", "uplinks": ["fibre:fibre"]}
#: a layer of check profiles
LAYER = {"checks": [{"kind": "tcp", "target": "dichvucong.gov.vn:443"}]}


@dataclass(frozen=True)
class Case:
    method: str
    route: str  # the path template, as the app names the route
    path: str  # a sample path of it
    expected: tuple[int, ...]  # one status per role, in ROLES order
    body: Body | None = None

    def __post_init__(self) -> None:
        assert len(self.expected) == len(ROLES), self


A, B = f"/api/v1/probes/{PROBE_A}", f"/api/v1/probes/{PROBE_B}"
OUTAGE_04 = "authz-outage-04"  # an outage in province 04, stored by the fixture
PUBLIC = (200,) * 8

# fmt: off
MATRIX: list[Case] = [
    #    method  route / sample path                                  none wrng revk  pA   pB  v04  v12  admin
    Case("GET",  "/healthz", "/healthz",                              PUBLIC),
    Case("GET",  "/readyz", "/readyz",                                PUBLIC),
    Case("GET",  "/metrics", "/metrics",                              PUBLIC),
    Case("GET",  "/openapi.json", "/openapi.json",                    PUBLIC),
    Case("GET",  "/docs", "/docs",                                    PUBLIC),
    Case("GET",  "/docs/oauth2-redirect", "/docs/oauth2-redirect",    PUBLIC),
    Case("GET",  "/redoc", "/redoc",                                  PUBLIC),
    Case("GET",  "/static/docs/{asset}", "/static/docs/swagger-ui.css", PUBLIC),
    # ingest: only the probe the batch names
    Case("POST", "/api/v1/reports", "/api/v1/reports",               (401, 401, 401, 200, 403, 403, 403, 403), report),
    # probes: a probe reads itself, a viewer its provinces' probes, the admin all
    Case("GET",  "/api/v1/probes", "/api/v1/probes",                  (401, 401, 401, 200, 200, 200, 200, 200)),
    Case("GET",  "/api/v1/probes", "/api/v1/probes?province=12",      (401, 401, 401, 200, 200, 403, 200, 200)),
    Case("GET",  "/api/v1/probes/{probe_id}", A,                      (401, 401, 401, 200, 403, 200, 403, 200)),
    Case("GET",  "/api/v1/probes/{probe_id}", B,                      (401, 401, 401, 403, 200, 403, 200, 200)),
    Case("GET",  "/api/v1/probes/{probe_id}/results", A + "/results", (401, 401, 401, 200, 403, 200, 403, 200)),
    Case("GET",  "/api/v1/probes/{probe_id}/results", B + "/results", (401, 401, 401, 403, 200, 403, 200, 200)),
    # outages and coverage: viewers (their provinces) and the admin, never a probe
    Case("GET",  "/api/v1/outages", "/api/v1/outages",                (401, 401, 401, 403, 403, 200, 200, 200)),
    Case("GET",  "/api/v1/outages", "/api/v1/outages?province=12",    (401, 401, 401, 403, 403, 403, 200, 200)),
    Case("GET",  "/api/v1/outages", "/api/v1/outages?province=12&format=xlsx",
                                                                      (401, 401, 401, 403, 403, 403, 200, 200)),
    Case("GET",  "/api/v1/availability", "/api/v1/availability",      (401, 401, 401, 403, 403, 200, 200, 200)),
    Case("GET",  "/api/v1/availability", "/api/v1/availability?province=12&format=csv",
                                                                      (401, 401, 401, 403, 403, 403, 200, 200)),
    Case("GET",  "/api/v1/notifications", "/api/v1/notifications",    (401, 401, 401, 403, 403, 403, 403, 200)),
    Case("GET",  "/api/v1/hamlets", "/api/v1/hamlets",                (401, 401, 401, 403, 403, 200, 200, 200)),
    Case("GET",  "/api/v1/hamlets", "/api/v1/hamlets?province=12",    (401, 401, 401, 403, 403, 403, 200, 200)),
    Case("GET",  "/api/v1/hamlets", "/api/v1/hamlets?province=12&format=csv",
                                                                      (401, 401, 401, 403, 403, 403, 200, 200)),
    Case("GET",  "/api/v1/coverage/summary", "/api/v1/coverage/summary",
                                                                      (401, 401, 401, 403, 403, 200, 200, 200)),
    Case("GET",  "/api/v1/coverage/summary", "/api/v1/coverage/summary?province=04",
                                                                      (401, 401, 401, 403, 403, 200, 403, 200)),
    Case("GET",  "/api/v1/coverage/deadzones", "/api/v1/coverage/deadzones?province=04",
                                                                      (401, 401, 401, 403, 403, 200, 403, 200)),
    Case("POST", "/api/v1/coverage/whatif", "/api/v1/coverage/whatif",
                                                                      (401, 401, 401, 403, 403, 200, 403, 200), json_body(WHATIF_04)),
    # field readings: probes (in their own province only: B's reading in 04 is refused as
    # invalid, 422, not as forbidden) and the admin
    Case("POST", "/api/v1/field-measurements", "/api/v1/field-measurements",
                                                                      (401, 401, 401, 200, 422, 403, 403, 200), json_body({"readings": [READING]})),
    # pages: the sign-in page for no valid token, an HTML 403 for a probe token
    Case("GET",  "/", "/",                                            (401, 401, 401, 403, 403, 200, 200, 200)),
    Case("GET",  "/", "/?province=12",                                (401, 401, 401, 403, 403, 403, 200, 200)),
    # the sign-in form and the sign-out button are for anyone; the forms post from the pages
    Case("GET",  "/login", "/login",                                  PUBLIC),
    Case("POST", "/login", "/login",                                  (401, 401, 401, 303, 303, 303, 303, 303), login_form),
    Case("GET",  "/logout", "/logout",                                PUBLIC),
    Case("POST", "/logout", "/logout",                                (303,) * 8),
    Case("GET",  "/maps/", "/maps/",                                  (401, 401, 401, 403, 403, 200, 200, 200)),
    Case("GET",  "/maps/national", "/maps/national",                  (401, 401, 401, 403, 403, 200, 200, 200)),
    Case("GET",  "/maps/province/{code}", "/maps/province/04",        (401, 401, 401, 403, 403, 200, 403, 200)),
    Case("GET",  "/maps/province/{code}", "/maps/province/12",        (401, 401, 401, 403, 403, 403, 200, 200)),
    # an outage's page: as the read API, a viewer of its province and the admin; 404 when none
    Case("GET",  "/outages/{outage_id}", f"/outages/{OUTAGE_04}",     (401, 401, 401, 403, 403, 200, 403, 200)),
    Case("GET",  "/outages/{outage_id}", "/outages/no-such-outage",   (401, 401, 401, 403, 403, 404, 404, 404)),
    # a centre's page: as /api/v1/probes/{probe_id} for viewers and the admin, never a probe
    Case("GET",  "/probes/{probe_id}", f"/probes/{PROBE_A}",          (401, 401, 401, 403, 403, 200, 403, 200)),
    Case("GET",  "/probes/{probe_id}", f"/probes/{PROBE_B}?range=1y", (401, 401, 401, 403, 403, 403, 200, 200)),
    Case("GET",  "/probes/{probe_id}", "/probes/no-such-probe",       (401, 401, 401, 403, 403, 404, 404, 404)),
    # enrolment: only a provincial enrolment key asks (no token is one, the admin's neither);
    # only the admin (and a province admin of its province, test_enrolment.py) decides
    Case("POST", "/api/v1/enrolments", "/api/v1/enrolments",          (401,) * 8, json_body(ENROL_04)),
    Case("GET",  "/api/v1/enrolments", "/api/v1/enrolments",          (401, 401, 401, 403, 403, 403, 403, 200)),
    Case("GET",  "/api/v1/enrolments/{enrolment_id}", "/api/v1/enrolments/1",
                                                                      (401, 401, 401, 403, 403, 403, 403, 200)),
    Case("POST", "/api/v1/enrolments/{enrolment_id}/approve", "/api/v1/enrolments/1/approve",
                                                                      (401, 401, 401, 403, 403, 403, 403, 200), json_body(APPROVAL)),
    Case("POST", "/api/v1/enrolments/{enrolment_id}/reject", "/api/v1/enrolments/2/reject",
                                                                      (401, 401, 401, 403, 403, 403, 403, 200), json_body({})),
    # the fleet: as the outages, viewers (their provinces) and the admin, never a probe
    Case("GET",  "/api/v1/fleet", "/api/v1/fleet",                    (401, 401, 401, 403, 403, 200, 200, 200)),
    Case("GET",  "/api/v1/fleet", "/api/v1/fleet?province=12",        (401, 401, 401, 403, 403, 403, 200, 200)),
    Case("GET",  "/api/v1/fleet", "/api/v1/fleet?province=04&format=csv",
                                                                      (401, 401, 401, 403, 403, 200, 403, 200)),
    Case("GET",  "/fleet", "/fleet",                                  (401, 401, 401, 403, 403, 200, 200, 200)),
    Case("GET",  "/fleet", "/fleet?province=12",                      (401, 401, 401, 403, 403, 403, 200, 200)),
    # token rotation: the admin (and a province admin of its province, test_token_rotation.py)
    Case("POST", "/api/v1/probes/{probe_id}/token-rotation", B + "/token-rotation",
                                                                      (401, 401, 401, 403, 403, 403, 403, 201)),
    # check profiles: people read the national layer and their provinces'; the admin (and a
    # province admin of its provinces, test_profiles_api.py) writes; a probe reads only its
    # own effective configuration
    Case("GET",  "/api/v1/profiles", "/api/v1/profiles",              (401, 401, 401, 403, 403, 200, 200, 200)),
    Case("GET",  "/api/v1/profiles/national", "/api/v1/profiles/national",
                                                                      (401, 401, 401, 403, 403, 200, 200, 200)),
    Case("PUT",  "/api/v1/profiles/national", "/api/v1/profiles/national",
                                                                      (401, 401, 401, 403, 403, 403, 403, 200), json_body(LAYER)),
    Case("GET",  "/api/v1/profiles/{scope}/{key}", "/api/v1/profiles/province/04",
                                                                      (401, 401, 401, 403, 403, 200, 403, 200)),
    Case("GET",  "/api/v1/profiles/{scope}/{key}", f"/api/v1/profiles/probe/{PROBE_B}",
                                                                      (401, 401, 401, 403, 403, 403, 200, 200)),
    Case("PUT",  "/api/v1/profiles/{scope}/{key}", "/api/v1/profiles/province/12",
                                                                      (401, 401, 401, 403, 403, 403, 403, 200), json_body(LAYER)),
    Case("GET",  "/api/v1/probes/{probe_id}/config", A + "/config",   (401, 401, 401, 200, 403, 200, 403, 200)),
    Case("GET",  "/api/v1/probes/{probe_id}/config", B + "/config",   (401, 401, 401, 403, 200, 403, 200, 200)),
    Case("DELETE", "/api/v1/profiles/{scope}/{key}", "/api/v1/profiles/commune/01273",
                                                                      (401, 401, 401, 403, 403, 403, 403, 204)),
    Case("DELETE", "/api/v1/profiles/national", "/api/v1/profiles/national",
                                                                      (401, 401, 401, 403, 403, 403, 403, 204)),
]
# fmt: on


@pytest.fixture
def callers(collector_factory: CollectorFactory, db_url: str) -> tuple[RunningCollector, dict]:
    c = collector_factory(db_url)
    revoked = create_token(c.engine, role="viewer", province_codes=["04"])
    revoke_token(c.engine, revoked.id)
    tokens: dict[str, str | None] = {
        "none": None,
        "wrong": "lst_" + secrets.token_urlsafe(32),
        "revoked": revoked.token,
        "probe_a": c.register(PROBE_A, "01273", ("viettel-4g:viettel",)),
        "probe_b": c.register(PROBE_B, "03388", ("mobifone-4g:mobifone",)),
        "viewer04": c.viewer("04"),
        "viewer12": c.viewer("12"),
        "admin": ADMIN_SECRET,
    }
    with write_transaction(c.engine) as conn:
        conn.execute(
            outages.insert().values(
                id=OUTAGE_04,
                probe_id="authz-gone",
                commune_code="01273",
                province_code="04",
                condition="uplink_down",
                cause="network",
                uplink="viettel-4g",
                operator="viettel",
                started_at=time.time() - 7200,
                ended_at=time.time() - 3600,
                detected_at=time.time() - 7100,
                resolved_at=time.time() - 3600,
                updated_at=time.time() - 3600,
            )
        )
    # layers of check profiles: national, province 04, commune 01273, probe B
    for scope, key in (("national", ""), ("province", "04"), ("commune", "01273")):
        set_layer(c.engine, scope, key, LAYER)
    set_layer(c.engine, "probe", PROBE_B, LAYER)
    # two boxes waiting in province 04: enrolments 1 and 2, and what each side holds
    key = create_key(c.engine, "04").key
    enrol = EnrolRequest.model_validate(ENROL_04)
    tokens["enrolment_key"] = key
    tokens["poll_secret"] = record(c.engine, key, enrol)[1]
    record(c.engine, key, enrol)
    # The list answers from the live state, which learns of new probes within
    # live_state_refresh_seconds; load it now rather than wait.
    c.ctx.live.reload(c.engine)
    return c, tokens


def test_the_matrix_lists_every_route(callers: tuple[RunningCollector, dict]) -> None:
    c, _ = callers
    served = {(m, p) for m, p, _ in routes_of(create_app(c.ctx.settings, engine=c.engine))}
    listed = {(case.method, case.route) for case in MATRIX}
    assert served - listed == set(), "decide who may call the new route: add it to MATRIX"
    assert listed - served == set(), "MATRIX lists a route the app no longer serves"


def test_every_route_answers_every_role_as_the_matrix_says(
    callers: tuple[RunningCollector, dict],
) -> None:
    c, tokens = callers
    READING["measured_at"] = iso(time.time() - 60)
    got: list[str] = []
    with httpx.Client(base_url=c.url, timeout=30, follow_redirects=False) as http:
        for case in MATRIX:
            for role, expected in zip(ROLES, case.expected, strict=True):
                token = tokens[role]
                headers: dict[str, str] = {}
                content = b""
                if case.body is not None:
                    content, headers = case.body(token)
                if token is not None and case.route != "/login":
                    headers["Authorization"] = f"Bearer {token}"
                if case.method == "POST" and case.route in ("/login", "/logout"):
                    headers["Origin"] = c.url  # as the collector's own forms post
                r = http.request(case.method, case.path, headers=headers, content=content)
                if r.status_code != expected:
                    got.append(
                        f"{case.method} {case.path} as {role}: {r.status_code}, "
                        f"expected {expected} ({r.text[:160]!r})"
                    )
    assert not got, f"{len(got)} of {len(MATRIX) * len(ROLES)}:\n" + "\n".join(got)


def test_what_each_role_sees_in_the_probe_list(callers: tuple[RunningCollector, dict]) -> None:
    """A 200 is not enough for a list: it must hold only what the caller may read."""
    c, tokens = callers
    sees = {
        "probe_a": [PROBE_A],
        "probe_b": [PROBE_B],
        "viewer04": [PROBE_A],
        "viewer12": [PROBE_B],
        "admin": [PROBE_A, PROBE_B],
    }
    for role, expected in sees.items():
        with c.client(tokens[role]) as http:
            r = http.get("/api/v1/probes")
            assert r.status_code == 200, (role, r.text)
            assert sorted(p["id"] for p in r.json()["probes"]) == expected, role


def test_the_sign_in_cookie_reads_but_never_writes(callers: tuple[RunningCollector, dict]) -> None:
    """A browser's cookie is a token for GET and HEAD only: a page on another site that makes
    the browser post gets 401, never the signed-in caller's rights."""
    c, tokens = callers
    cookies = {TOKEN_COOKIE: str(tokens["admin"])}
    with httpx.Client(base_url=c.url, cookies=cookies, timeout=30) as http:
        assert http.get("/api/v1/notifications").status_code == 200
        assert http.get("/").status_code == 200
        READING["measured_at"] = iso(time.time() - 60)
        r = http.post("/api/v1/field-measurements", json={"readings": [READING]})
        assert r.status_code == 401, r.text
        r = http.post("/api/v1/coverage/whatif", json=WHATIF_04)
        assert r.status_code == 401, r.text
    probe_cookie = {TOKEN_COOKIE: str(tokens["probe_a"])}
    with httpx.Client(base_url=c.url, cookies=probe_cookie, timeout=30) as http:
        raw, headers = report(None)
        assert http.post("/api/v1/reports", content=raw, headers=headers).status_code == 401


def test_an_enrolment_key_or_poll_secret_is_worth_no_token(
    callers: tuple[RunningCollector, dict],
) -> None:
    """Every route answers a provincial enrolment key, and a box's poll secret, as it answers
    no token at all: neither writes a report nor reads anything. The two exceptions are their
    own: the key asks to enrol (201), the secret polls its own enrolment (200)."""
    c, tokens = callers
    READING["measured_at"] = iso(time.time() - 60)
    own = {
        ("enrolment_key", "POST", "/api/v1/enrolments"): 201,
        ("poll_secret", "GET", "/api/v1/enrolments/1"): 200,
    }
    got: list[str] = []
    with httpx.Client(base_url=c.url, timeout=30, follow_redirects=False) as http:
        for holder in ("enrolment_key", "poll_secret"):
            for case in MATRIX:
                if (case.method, case.route) == ("POST", "/login"):
                    continue  # its token is a form field, not a header
                expected = own.get((holder, case.method, case.path), case.expected[0])
                content, headers = case.body(None) if case.body else (b"", {})
                headers["Authorization"] = f"Bearer {tokens[holder]}"
                if case.method == "POST" and case.route == "/logout":
                    headers["Origin"] = c.url
                r = http.request(case.method, case.path, headers=headers, content=content)
                if r.status_code != expected:
                    got.append(f"{case.method} {case.path} as {holder}: {r.status_code}")
            # the batch of probe A, with the key or the secret instead of its token
            raw, headers = report(None)
            headers["Authorization"] = f"Bearer {tokens[holder]}"
            r = http.post("/api/v1/reports", content=raw, headers=headers)
            assert r.status_code == 401, r.text
    assert not got, "\n".join(got)
