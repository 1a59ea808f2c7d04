"""The coverage API on a real collector (SQLite and PostgreSQL): field readings posted whole or
not at all, role and province scoping, input checks, the outage overlay's inputs, the readings
the engine gets. Classification itself (GET /hamlets, /coverage/summary, POST /whatif with
answers) needs lomsong.coverage.engine and is tested where it lands."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine, func, select

from lomsong.collector.coverage_service import CoverageService
from lomsong.coverage import store
from lomsong.coverage.importing import import_file
from lomsong.coverage.overlay import down_links
from lomsong.coverage.validate import Options
from lomsong.storage.database import write_transaction
from lomsong.storage.outages import open_outages
from lomsong.storage.schema import field_measurements, outages
from tests.conftest import ADMIN_SECRET, RunningCollector
from tests.coverage.geodata_helpers import DATA
from tests.factories import batch, body, result

READING = {
    "lat": 22.9455,
    "lon": 105.6335,
    "operator": "viettel",
    "radio": "lte",
    "rsrp_dbm": -104.5,
    "measured_at": "2026-03-02T08:00:00Z",
}


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(field_measurements)).scalar_one())


def test_field_measurements_are_stored_whole(any_collector: RunningCollector) -> None:
    c = any_collector
    probe_token = c.register("cb-bao-lac", "01321", ("viettel-4g:viettel",))
    with c.client(ADMIN_SECRET) as http:
        r = http.post(
            "/api/v1/field-measurements",
            json={"readings": [READING, {**READING, "operator": "VNPT", "rsrp_dbm": -117}]},
        )
        assert r.status_code == 200, r.text
        assert r.json() == {"accepted": 2}
    with c.client(probe_token) as http:
        r = http.post("/api/v1/field-measurements", json={"readings": [READING]})
        assert r.status_code == 200, r.text
    with c.engine.connect() as conn:
        rows = conn.execute(
            select(
                field_measurements.c.operator,
                field_measurements.c.source,
                field_measurements.c.rsrp_dbm,
                field_measurements.c.measured_at,
                field_measurements.c.import_id,
            ).order_by(field_measurements.c.id)
        ).all()
    assert [(r.operator, r.source, r.rsrp_dbm) for r in rows] == [
        ("viettel", "admin", -104.5),
        ("vinaphone", "admin", -117.0),
        ("viettel", "probe:cb-bao-lac", -104.5),
    ]
    when = datetime(2026, 3, 2, 8, 0, tzinfo=UTC).timestamp()
    assert rows[0].measured_at == when and rows[0].import_id is None


def test_a_bad_reading_rejects_the_batch_naming_each_field(any_collector: RunningCollector) -> None:
    c = any_collector
    bad = [
        READING,
        {**READING, "rsrp_dbm": -5},
        {**READING, "lat": "abc"},
        {**READING, "lat": 13.0, "lon": 101.0},
        {**READING, "operator": "unitel"},
        {**READING, "measured_at": "yesterday"},
        {k: v for k, v in READING.items() if k != "rsrp_dbm"},
    ]
    with c.client(ADMIN_SECRET) as http:
        r = http.post("/api/v1/field-measurements", json={"readings": bad})
    assert r.status_code == 422
    assert r.json()["detail"].split("; ") == [
        "readings[1].rsrp_dbm: must be ≤ -20 dBm (got -5)",
        "readings[2].lat: not a number (got 'abc')",
        "readings[3].geometry: outside Vietnam (lon 101.00000, lat 13.00000)",
        "readings[4].operator: expected one of {viettel, vinaphone, mobifone, vietnamobile, "
        "gmobile} (got 'unitel')",
        "readings[5].measured_at: expected an ISO 8601 time or epoch seconds (got 'yesterday')",
        "readings[6].rsrp_dbm: empty",
    ]
    assert _count(c.engine) == 0
    with c.client(ADMIN_SECRET) as http:
        empty = http.post("/api/v1/field-measurements", json={"readings": []})
        assert empty.status_code == 422 and "readings" in empty.json()["detail"]
        extra = http.post("/api/v1/field-measurements", json={"readings": [READING], "x": 1})
        assert extra.status_code == 422 and "x: Extra inputs" in extra.json()["detail"]


def test_roles_and_provinces(any_collector: RunningCollector) -> None:
    c = any_collector
    probe = c.register("cb-bao-lac", "01321", ("viettel-4g:viettel",))
    with c.client(c.viewer("08")) as http:
        r = http.post("/api/v1/field-measurements", json={"readings": [READING]})
        assert r.status_code == 403 and "probe or admin" in r.json()["detail"]
        r = http.get("/api/v1/hamlets", params={"province": "04"})
        assert (r.status_code, r.json()["detail"]) == (
            403,
            "province: token may not read province '04'",
        )
        r = http.get("/api/v1/coverage/summary", params={"province": "04"})
        assert r.status_code == 403
        r = http.post(
            "/api/v1/coverage/whatif",
            json={
                "province": "04",
                "sites": [{"lat": 22.94, "lon": 105.63, "operator": "viettel"}],
            },
        )
        assert r.status_code == 403
    with c.client(probe) as http:
        r = http.get("/api/v1/hamlets")
        assert (r.status_code, r.json()["detail"]) == (
            403,
            "Authorization: a probe token cannot read coverage",
        )
    with c.client() as http:
        assert http.get("/api/v1/hamlets").status_code == 401
        assert (
            http.post("/api/v1/field-measurements", json={"readings": [READING]}).status_code == 401
        )


def test_query_and_body_checks_name_field_and_value(any_collector: RunningCollector) -> None:
    c = any_collector
    with c.client(ADMIN_SECRET) as http:
        r = http.get("/api/v1/hamlets", params={"province": "04", "status": "dark"})
        assert r.status_code == 422
        assert r.json()["detail"] == (
            "status: expected one of {covered, weak, none, outage} (got 'dark')"
        )
        r = http.get("/api/v1/hamlets", params={"province": "04", "operator": "unitel"})
        assert r.status_code == 422 and "operator: expected one of" in r.json()["detail"]
        r = http.get("/api/v1/hamlets", params={"province": "4"})
        assert r.status_code == 422 and "province" in r.json()["detail"]
        site = {"lat": 22.94, "lon": 105.63, "operator": "viettel"}
        r = http.post("/api/v1/coverage/whatif", json={"sites": [{**site, "azimuth_deg": 360}]})
        assert r.status_code == 422
        assert r.json()["detail"] == "sites[0].azimuth_deg: Input should be less than 360 (got 360)"
        r = http.post("/api/v1/coverage/whatif", json={"sites": [{**site, "operator": "unitel"}]})
        assert r.status_code == 422
        assert r.json()["detail"].startswith("sites[0].operator: expected one of {viettel")
        r = http.post(
            "/api/v1/coverage/whatif", json={"sites": [{**site, "lat": 13.0, "lon": 103.0}]}
        )
        assert (r.status_code, r.json()["detail"]) == (
            422,
            "sites[0]: outside Vietnam (got lat 13.0, lon 103.0)",
        )


def _outage(
    oid: str,
    commune: str,
    condition: str,
    cause: str | None,
    operator: str | None,
    *,
    ended: float | None = None,
) -> dict[str, Any]:
    return {
        "id": oid,
        "probe_id": f"p-{oid}",
        "commune_code": commune,
        "province_code": "04",
        "condition": condition,
        "cause": cause,
        "uplink": None,
        "operator": operator,
        "started_at": 1.0,
        "ended_at": ended,
        "detected_at": 1.0,
        "resolved_at": None,
        "updated_at": 1.0,
    }


def test_open_outages_become_down_links(engine: Engine) -> None:
    rows = [
        _outage("a", "01321", "uplink_down", None, "viettel"),
        _outage("b", "01290", "probe_silent", "power", None),
        _outage("c", "01324", "probe_silent", "unknown", None),
        _outage("d", "01273", "degraded", None, "mobifone"),
        _outage("e", "01279", "uplink_down", None, "fibre"),
        _outage("f", "01288", "uplink_down", None, "vinaphone", ended=5.0),
    ]
    with write_transaction(engine) as conn:
        conn.execute(outages.insert(), rows)
    open_now = open_outages(engine, "04")
    assert sorted(o["commune_code"] for o in open_now) == [
        "01273",
        "01279",
        "01290",
        "01321",
        "01324",
    ]
    assert open_outages(engine, "08") == []
    ops = ("viettel", "vinaphone", "mobifone")
    assert down_links(open_now, ops) == {
        ("01321", "viettel"),
        ("01290", "viettel"),
        ("01290", "vinaphone"),
        ("01290", "mobifone"),
    }


def test_readings_for_the_engine_include_probe_modems(any_collector: RunningCollector) -> None:
    c = any_collector
    token = c.register("cb-thuc-phan", "01273", ("viettel-4g:viettel", "vnpt-4g:vinaphone"))
    doc = batch("cb-thuc-phan", [])
    doc["results"] = [
        result(
            1, kind="modem", signal={"rat": "lte", "rsrp_dbm": -104.0, "mcc": "452", "mnc": "04"}
        ),
        result(2, kind="modem", uplink="vnpt-4g", signal={"rat": "lte", "rsrp_dbm": -121.0}),
        result(3),
    ]
    raw, headers = body(doc)
    with c.client(token) as http:
        assert http.post("/api/v1/reports", content=raw, headers=headers).status_code == 200
    recent = {**READING, "measured_at": time.time() - 3600}
    stale = {**READING, "measured_at": time.time() - 3 * 86_400}
    with c.client(ADMIN_SECRET) as http:
        r = http.post("/api/v1/field-measurements", json={"readings": [recent, stale]})
        assert r.status_code == 200
    since = time.time() - 86_400
    readings = store.load_readings(c.engine, since)
    got = sorted(zip(readings.source, readings.operator, readings.rsrp_dbm, strict=True))
    assert got == [
        ("admin", "viettel", -104.5),
        ("probe:cb-thuc-phan", "viettel", -104.0),
        ("probe:cb-thuc-phan", "vinaphone", -121.0),
    ]
    # a probe's reading stands at its commune's centre (Phường Thục Phán)
    i = list(readings.source).index("probe:cb-thuc-phan")
    assert (readings.lat[i], readings.lon[i]) == (22.6777, 106.189)
    assert len(store.load_readings(c.engine, since, province="08")) == 0
    assert len(store.load_readings(c.engine, time.time() + 60)) == 0
    assert np.all(np.isfinite(readings.measured_at))


def test_service_reloads_geography_when_data_changes(engine: Engine, tmp_path: Any) -> None:
    service = CoverageService(engine)
    first = service.geography()
    assert service.geography() is first
    import_file(engine, DATA / "operator_sites.csv", Options(kind="sites"))
    second = service.geography()
    assert second is not first and service.geography() is second


def test_a_probe_writes_readings_only_in_its_own_province(any_collector: RunningCollector) -> None:
    """A Cao Bằng probe's reading in Hồ Chí Minh City, or one that names its own source, is
    refused whole; the source is always who wrote it."""
    c = any_collector
    probe = c.register("cb-bao-lac", "01321", ("viettel-4g:viettel",))
    saigon = {**READING, "lat": 10.7769, "lon": 106.7009}
    with c.client(probe) as http:
        r = http.post("/api/v1/field-measurements", json={"readings": [READING, saigon]})
        assert r.status_code == 422, r.text
        assert r.json()["detail"].startswith("readings[1].geometry: outside province 04 Cao Bằng")
        r = http.post(
            "/api/v1/field-measurements", json={"readings": [{**READING, "source": "api"}]}
        )
        assert r.status_code == 422
        assert r.json()["detail"] == (
            "readings[0].source: set by the collector from the token that writes (got 'api')"
        )
        r = http.post("/api/v1/field-measurements", json={"readings": [READING], "source": "x"})
        assert r.status_code == 422 and "source: Extra inputs" in r.json()["detail"]
    assert _count(c.engine) == 0
    with c.client(ADMIN_SECRET) as http:  # the admin writes anywhere in Vietnam
        assert http.post("/api/v1/field-measurements", json={"readings": [saigon]}).is_success
    with c.engine.connect() as conn:
        assert conn.execute(select(field_measurements.c.source)).scalars().all() == ["admin"]


def test_hostile_reading_values_get_a_4xx_naming_them(any_collector: RunningCollector) -> None:
    """What once answered 500: a time of 1e400, text PostgreSQL cannot store."""
    c = any_collector
    cases = [
        ({**READING, "measured_at": 1e400}, "readings[0].measured_at: not a time between"),
        ({**READING, "measured_at": "0001-01-01T00:00:00+14:00"}, "readings[0].measured_at"),
        ({**READING, "id": "a\x00b"}, "readings[0].id: holds a NUL character"),
    ]
    surrogate = (
        b'{"readings": [{"lat": 22.9455, "lon": 105.6335, "operator": "viettel", '
        b'"rsrp_dbm": -104.5, "measured_at": "2026-03-02T08:00:00Z", "id": "a\\ud800b"}]}'
    )
    raw_inf = (
        b'{"readings": [{"lat": 22.9455, "lon": 105.6335, "operator": "viettel", '
        b'"rsrp_dbm": -104.5, "measured_at": 1e400}]}'
    )
    with c.client(ADMIN_SECRET) as http:
        for reading, expected in cases[1:]:
            r = http.post("/api/v1/field-measurements", json={"readings": [reading]})
            assert r.status_code == 422, (reading, r.text)
            assert r.json()["detail"].startswith(expected), r.text
        r = http.post(
            "/api/v1/field-measurements",
            content=raw_inf,
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 422, r.text
        assert r.json()["detail"].startswith(cases[0][1]), r.text
        r = http.post(
            "/api/v1/field-measurements",
            content=surrogate,
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 422, r.text
        assert r.json()["detail"].startswith("readings[0].id: holds a NUL character or a lone")
    assert _count(c.engine) == 0
