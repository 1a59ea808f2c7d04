"""Check profiles at the collector (issue #16 §2): the layers over the API and the CLI, who may
set which, the effective configuration with its ETag, and what the agents' heartbeats say of
it, stored in ``probe_state`` and counted in ``lomsong_probe_config_errors_total``.

Everything runs once on a SQLite file and once on PostgreSQL.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from lomsong.collector.auth import create_token
from lomsong.collector.fleet_profiles import served_config_versions, set_layer
from lomsong.config.profiles import version_of
from lomsong.storage.schema import probe_state
from tests.collector.test_enrolment import cli
from tests.conftest import ADMIN_SECRET, CollectorFactory, RunningCollector
from tests.factories import T0, batch, body, result
from tests.waiting import wait_until

PROBE_04, PROBE_12 = "cb-thuc-phan", "hg-ha-giang"
NATIONAL_TOML = b"""
[defaults]
interval_seconds = 30.0
[[checks]]
kind = "tcp"
target = "dichvucong.gov.vn:443"
[[checks]]
kind = "dns"
target = "dichvucong.gov.vn"
server = "8.8.8.8"
"""
PROVINCE = {
    "defaults": {"interval_seconds": 60.0},
    "checks": [{"kind": "http", "target": "https://caobang.gov.vn/", "method": "HEAD"}],
    "remove": [{"kind": "dns", "target": "dichvucong.gov.vn"}],
}
TOML = {"Content-Type": "application/toml"}


@pytest.fixture
def fleet(any_collector: RunningCollector) -> tuple[RunningCollector, dict[str, str]]:
    c = any_collector
    tokens = {
        "probe04": c.register(PROBE_04, "01273"),
        "probe12": c.register(PROBE_12, "03388", ("mobifone-4g:mobifone",)),
        "admin04": create_token(c.engine, role="province_admin", province_codes=["04"]).token,
        "viewer04": c.viewer("04"),
        "admin": ADMIN_SECRET,
    }
    c.ctx.live.reload(c.engine)
    return c, tokens


def _http(c: RunningCollector, token: str) -> httpx.Client:
    return c.client(token)


def test_layers_are_set_read_and_deleted_by_whom_they_belong_to(
    fleet: tuple[RunningCollector, dict[str, str]],
) -> None:
    c, t = fleet
    with _http(c, t["admin"]) as admin, _http(c, t["admin04"]) as a04:
        r = admin.put("/api/v1/profiles/national", content=NATIONAL_TOML, headers=TOML)
        assert r.status_code == 200, r.text
        assert r.json()["toml"] == NATIONAL_TOML.decode() and r.json()["revision"] == 1
        # a province admin: its province, its communes, its probes; never the national layer
        # nor another province's
        assert a04.put("/api/v1/profiles/province/04", json=PROVINCE).status_code == 200
        assert a04.put("/api/v1/profiles/commune/01273", json={}).status_code == 200
        r = a04.put(f"/api/v1/profiles/probe/{PROBE_12}", json={})
        assert r.status_code == 403, r.text
        assert r.json()["detail"] == (
            f"profile: role 'province_admin' may not change probe:{PROBE_12}"
        )
        assert a04.put("/api/v1/profiles/national", json={}).status_code == 403
        assert a04.delete("/api/v1/profiles/national").status_code == 403
        assert admin.put("/api/v1/profiles/province/12", json=PROVINCE).status_code == 200
    with _http(c, t["viewer04"]) as v04:
        names = [p["name"] for p in v04.get("/api/v1/profiles").json()["profiles"]]
        assert names == ["national", "province:04", "commune:01273"]
        assert v04.get("/api/v1/profiles/province/12").status_code == 403
        assert v04.put("/api/v1/profiles/province/04", json={}).status_code == 403
        got = v04.get("/api/v1/profiles/province/04").json()
        assert got["profile"] == PROVINCE and got["toml"] is None
    with _http(c, t["probe04"]) as p04:
        assert p04.get("/api/v1/profiles").status_code == 403
    with _http(c, t["admin04"]) as a04:
        assert a04.delete("/api/v1/profiles/commune/01273").status_code == 204
        r = a04.delete("/api/v1/profiles/commune/01273")
        assert r.status_code == 404 and r.json()["detail"] == "commune:01273: no such profile"


BAD_REQUESTS = [
    # (path, body, headers, status, detail)
    ("province/04", b'{"checks": [{"kind": "tcp", "target": "x"}]}', {}, 422,
     "checks[0].tcp.target: Value error, expected host:port, e.g. dichvucong.gov.vn:443 (got 'x')"),
    ("province/04", b'[[checks]]\nkind = "icmp"\ntarget = "a"\ncount = 0\n', TOML, 422,
     "checks[0].icmp.count: Input should be greater than or equal to 1 (got 0)"),
    ("province/04", b"checks = [", TOML, 422,
     "body: not valid TOML: Invalid value (at end of document) (got 'checks = [')"),
    ("province/04", b'{"checks": ', {}, 400, None),
    ("province/04", b'{"chekcs": []}', {}, 422, "chekcs: unknown field (got [])"),
    ("province/04", b'{"checks": [{"kind": "icmp", "target": "a\\u0000b"}]}', {}, 422,
     "profile: text may not hold a NUL character (got None)"),
    ("province/99", b"{}", {}, 404, "province: '99' is not a province code"),
    ("province/4", b"{}", {}, 422, "province: expected a value matching ^[0-9]{2}$ (got '4')"),
    ("commune/99999", b"{}", {}, 404, "commune: '99999' is not a commune code"),
    ("probe/nobody", b"{}", {}, 404, "probe: 'nobody' is not registered"),
    ("hamlet/04", b"{}", {}, 422, None),
    ("province/04", b"{" + b" " * 300_000 + b"}", {}, 413, None),
    ("province/04", b'{"defaults": {"timeout_seconds": 0}}', {}, 422,
     "defaults.timeout_seconds: Input should be greater than 0 (got 0)"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "raw", "headers", "status", "detail"), BAD_REQUESTS)
def test_bad_layers_get_a_4xx_naming_the_field_and_nothing_changes(
    fleet: tuple[RunningCollector, dict[str, str]],
    path: str,
    raw: bytes,
    headers: dict[str, str],
    status: int,
    detail: str | None,
) -> None:
    c, t = fleet
    with _http(c, t["admin"]) as admin:
        assert admin.put("/api/v1/profiles/province/04", json=PROVINCE).status_code == 200
        r = admin.put(f"/api/v1/profiles/{path}", content=raw, headers=headers)
        assert r.status_code == status, r.text
        if detail is not None:
            assert r.json()["detail"] == detail
        # the layer set before is untouched
        assert admin.get("/api/v1/profiles/province/04").json()["profile"] == PROVINCE
        assert [p["name"] for p in admin.get("/api/v1/profiles").json()["profiles"]] == [
            "province:04"
        ]


def test_the_effective_configuration_with_its_etag(
    fleet: tuple[RunningCollector, dict[str, str]],
) -> None:
    c, t = fleet
    url = f"/api/v1/probes/{PROBE_04}/config"
    with _http(c, t["probe04"]) as probe, _http(c, t["admin"]) as admin:
        r = probe.get(url)
        assert r.status_code == 404
        assert r.json()["detail"] == (
            f"probe_id: no profile applies to {PROBE_04!r}: it runs its local checks"
        )
        admin.put("/api/v1/profiles/national", content=NATIONAL_TOML, headers=TOML)
        admin.put("/api/v1/profiles/province/04", json=PROVINCE)
        r = probe.get(url)
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["layers"] == ["national", "province:04"]
        assert [(ch["kind"], ch["target"], ch["interval_seconds"]) for ch in doc["checks"]] == [
            ("tcp", "dichvucong.gov.vn:443", 60.0),
            ("http", "https://caobang.gov.vn/", 60.0),
        ]
        etag = r.headers["etag"]
        assert etag == f'"{doc["version"]}"' and doc["version"] == version_of(doc["checks"])
        # not modified, named alone or beside a refused version
        assert probe.get(url, headers={"If-None-Match": etag}).status_code == 304
        both = f'"{"0" * 64}", {etag}'
        r = probe.get(url, headers={"If-None-Match": both})
        assert r.status_code == 304 and r.headers["etag"] == etag and r.content == b""
        # what fleet status compares with what the agent applied
        with c.engine.connect() as conn:
            assert served_config_versions(conn, [PROBE_04, PROBE_12, "nobody"]) == {
                PROBE_04: doc["version"],
                PROBE_12: version_of(
                    [
                        {
                            "kind": "tcp",
                            "target": "dichvucong.gov.vn:443",
                            "interval_seconds": 30.0,
                        },
                        {
                            "kind": "dns",
                            "target": "dichvucong.gov.vn",
                            "server": "8.8.8.8",
                            "interval_seconds": 30.0,
                        },
                    ]
                ),
            }
        # a change is served at once by the replica that made it
        gone = {"remove": [{"kind": "http", "target": "https://caobang.gov.vn/"}]}
        assert admin.put(f"/api/v1/profiles/probe/{PROBE_04}", json=gone).status_code == 200
        r = probe.get(url, headers={"If-None-Match": etag})
        assert r.status_code == 200 and r.headers["etag"] != etag
        assert [ch["kind"] for ch in r.json()["checks"]] == ["tcp"]
        # and by another replica within its refresh second
        other = c.ctx.profiles
        assert other is not None
        # another probe's token may not read it; a viewer of its province may
        with _http(c, t["probe12"]) as p12:
            assert p12.get(url).status_code == 403
        with _http(c, t["viewer04"]) as v04:
            assert v04.get(url).status_code == 200


def test_layers_that_clash_answer_409_naming_the_check(
    fleet: tuple[RunningCollector, dict[str, str]],
) -> None:
    c, t = fleet
    with _http(c, t["admin"]) as admin, _http(c, t["probe04"]) as probe:
        # a commune's short interval, then a national check whose timeout is longer
        assert admin.put("/api/v1/profiles/commune/01273", json={
            "defaults": {"interval_seconds": 5.0, "timeout_seconds": 2.0}
        }).status_code == 200  # fmt: skip
        slow = {"checks": [{"kind": "tcp", "target": "a.vn:443", "timeout_seconds": 8.0}]}
        assert admin.put("/api/v1/profiles/national", json=slow).status_code == 200
        r = probe.get(f"/api/v1/probes/{PROBE_04}/config")
        assert r.status_code == 409
        assert r.json()["detail"].startswith(
            "profile: the layers clash: national: checks[0].tcp: Value error, timeout_seconds "
            "(8) exceeds interval_seconds (5)"
        )
        # setting a layer under one that clashes with it is refused by name
        r = admin.put(f"/api/v1/profiles/probe/{PROBE_04}", json={})
        assert r.status_code == 422 and "timeout_seconds (8) exceeds" in r.json()["detail"]


def _heartbeat(seq: int, at: float, **config: Any) -> dict[str, Any]:
    return result(seq, kind="heartbeat", at=T0 + timedelta(seconds=at), **config)


def _post(c: RunningCollector, token: str, probe: str, *results: dict[str, Any]) -> None:
    doc = batch(probe, [])
    doc["results"] = list(results)
    raw, headers = body(doc)
    with c.client(token) as http:
        r = http.post("/api/v1/reports", content=raw, headers=headers)
    assert r.status_code == 200, r.text


def _errors(c: RunningCollector) -> dict[str, float]:
    with c.client() as http:
        text = http.get("/metrics").text
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(
            r'^lomsong_probe_config_errors_total\{province="(\d+)"\} (\S+)$', text, re.M
        )
    }


def test_heartbeats_say_what_runs_and_refusals_are_counted_once(
    fleet: tuple[RunningCollector, dict[str, str]], collector_factory: CollectorFactory, db_url: str
) -> None:
    c, t = fleet
    v1, v2 = "a" * 64, "b" * 64
    assert _errors(c) == {"04": 0.0, "12": 0.0}
    _post(c, t["probe04"], PROBE_04, _heartbeat(1, 1, config_version="local"))
    _post(
        c,
        t["probe04"],
        PROBE_04,
        _heartbeat(2, 10, config_version=v1),
        _heartbeat(
            3,
            20,
            config_version=v1,
            config_refused_version=v2,
            config_error="checks[0].uplinks[0]: unknown uplink 'vnpt-4g' (uplinks: 'viettel-4g')",
        ),
    )
    # an older heartbeat (a backlog) changes nothing; the same refusal again is not counted
    _post(c, t["probe04"], PROBE_04, _heartbeat(4, 5, config_version="local"))
    _post(
        c,
        t["probe04"],
        PROBE_04,
        _heartbeat(5, 30, config_version=v1, config_refused_version=v2, config_error="same"),
    )
    with c.engine.connect() as conn:
        row = conn.execute(select(probe_state).where(probe_state.c.probe_id == PROBE_04)).one()
    assert (row.config_version, row.config_refused_version, row.config_error) == (v1, v2, "same")
    assert _errors(c) == {"04": 1.0, "12": 0.0}
    with c.client(ADMIN_SECRET) as admin:
        view = admin.get(f"/api/v1/probes/{PROBE_04}").json()["config"]
    assert view["version"] == v1 and view["refused_version"] == v2 and view["error"] == "same"
    assert view["served_version"] is None  # no profile: the collector serves none

    # a heartbeat without the fields (an older agent) leaves them as they are
    _post(c, t["probe04"], PROBE_04, _heartbeat(6, 40))
    # a collector started afresh on the database does not count the stored refusal again,
    # but counts a new one
    again = collector_factory(db_url)
    _post(again, t["probe04"], PROBE_04, _heartbeat(7, 50, config_version=v1,
                                                     config_refused_version=v2))  # fmt: skip
    assert _errors(again) == {"04": 0.0, "12": 0.0}
    _post(again, t["probe12"], PROBE_12, _heartbeat(1, 1, config_version="local",
                                                    config_refused_version=v1, config_error="x"))  # fmt: skip
    assert _errors(again) == {"04": 0.0, "12": 1.0}
    with c.engine.connect() as conn:
        row = conn.execute(select(probe_state).where(probe_state.c.probe_id == PROBE_04)).one()
    assert (row.config_version, row.config_refused_version, row.config_error) == (v1, v2, None)

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed; run `make system-deps`")
    with again.client() as http:
        text = http.get("/metrics").text
    check = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
    assert check.returncode == 0 and (check.stdout + check.stderr).strip() == b"", check


def test_the_cli_sets_shows_lists_and_merges(
    fleet: tuple[RunningCollector, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    db_url: str,
    tmp_path: Any,
) -> None:
    c, _ = fleet
    path = tmp_path / "national.toml"
    path.write_bytes(NATIONAL_TOML)
    code, out, err = cli(monkeypatch, capsys, db_url, "fleet", "profile", "set", "--national",
                         "--file", str(path))  # fmt: skip
    assert code == 0, err
    assert out.strip() == (
        "profile national set (revision 1): 2 checks, 0 removed; 2 checks with the layers above"
    )
    set_layer(c.engine, "province", "04", PROVINCE)
    code, out, err = cli(monkeypatch, capsys, db_url, "fleet", "profile", "show", "--national")
    assert code == 0 and out.strip() == NATIONAL_TOML.decode().strip(), (out, err)
    code, out, _ = cli(monkeypatch, capsys, db_url, "fleet", "profile", "list")
    assert code == 0 and max(len(line) for line in out.splitlines()) <= 80, out
    assert "national" in out and "province:04" in out and "https://caobang.gov.vn/" in out
    code, out, _ = cli(monkeypatch, capsys, db_url, "fleet", "profile", "effective",
                       "--probe", PROBE_04)  # fmt: skip
    assert code == 0 and '"layers": [\n    "national",\n    "province:04"\n  ]' in out
    with c.client(ADMIN_SECRET) as admin:
        served = admin.get(f"/api/v1/probes/{PROBE_04}/config").json()["version"]
    assert f'"version": "{served}"' in out
    # mistakes: one line, no traceback
    for argv, message in [
        (["set", "--province", "04", "--commune", "01273", "--file", str(path)],
         "layer: give exactly one of --national, --province CODE, --commune CODE, --probe ID"),
        (["set", "--province", "04", "--file", str(tmp_path / "none.toml")], "does not exist"),
        (["delete", "--probe", PROBE_12], f"probe:{PROBE_12}: no such profile"),
        (["effective", "--probe", "nobody"], "probe 'nobody' is not registered"),
    ]:  # fmt: skip
        code, out, err = cli(monkeypatch, capsys, db_url, "fleet", "profile", *argv)
        assert code == 1 and len(err.splitlines()) == 1 and message in err, (argv, err)
        assert "Traceback" not in err


def test_another_replica_serves_a_change_within_its_refresh_second(
    fleet: tuple[RunningCollector, dict[str, str]], collector_factory: CollectorFactory, db_url: str
) -> None:
    """Two collectors on one database: B learns of A's change, and of a deletion, by the
    revision (a deleted layer keeps its row and takes the next one)."""
    a, t = fleet
    b = collector_factory(db_url)
    url = f"/api/v1/probes/{PROBE_04}/config"
    with _http(a, t["admin"]) as admin, _http(b, t["probe04"]) as probe:
        admin.put("/api/v1/profiles/national", content=NATIONAL_TOML, headers=TOML)
        etag = wait_until(
            lambda: probe.get(url).headers.get("etag"), timeout=5, what="B serves the national"
        )
        admin.put("/api/v1/profiles/province/04", json=PROVINCE)
        changed = wait_until(
            lambda: probe.get(url, headers={"If-None-Match": etag}).status_code == 200,
            timeout=3,
            what="B serves the province's change",
        )
        assert changed
        assert admin.delete("/api/v1/profiles/province/04").status_code == 204
        wait_until(
            lambda: probe.get(url).headers.get("etag") == etag,
            timeout=3,
            what="B serves the national alone again",
        )
        assert admin.delete("/api/v1/profiles/national").status_code == 204
        wait_until(lambda: probe.get(url).status_code == 404, timeout=3, what="B serves none")
