"""The coverage API answering from the engine on a real collector (SQLite and PostgreSQL):
hamlets filtered by status and operator, summaries, what-if equal to the CLI's, field readings
reaching the classification, the live outage overlay from the real detector, dead zones."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import shapely

from lomsong.coverage import boundaries
from lomsong.coverage.compute import generate_and_store
from lomsong.coverage.model import CoverageSettings
from tests.conftest import ADMIN_SECRET, CollectorFactory, RunningCollector
from tests.factories import body, iso
from tests.waiting import wait_until

LOMSONG = str(Path(sys.executable).with_name("lomsong"))
OPERATORS = CoverageSettings().operator_keys()
SEED = 5


@pytest.fixture
def seeded(collector_factory: CollectorFactory, db_url: str) -> RunningCollector:
    c = collector_factory(db_url, report_interval_seconds=1.0, detector={"tick_seconds": 0.2})
    generate_and_store(c.engine, province="04", seed=SEED)
    return c


def hamlets_of(c: RunningCollector, **params: str) -> list[dict[str, Any]]:
    with c.client(ADMIN_SECRET) as http:
        r = http.get("/api/v1/hamlets", params={"province": "04", "limit": "100000", **params})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["count"] == len(doc["hamlets"])
    return list(doc["hamlets"])


def test_hamlets_filtered_by_status_and_operator(seeded: RunningCollector) -> None:
    c = seeded
    every = hamlets_of(c)
    assert 1_300 <= len(every) <= 1_700 and all(h["synthetic"] for h in every)
    dark = hamlets_of(c, status="none", operator="viettel")
    expected = sorted(h["id"] for h in every if h["operators"]["viettel"]["status"] == "none")
    assert sorted(h["id"] for h in dark) == expected and 0 < len(expected) < len(every)
    overall = hamlets_of(c, status="none")
    assert sorted(h["id"] for h in overall) == sorted(
        h["id"] for h in every if h["status"] == "none"
    )
    # no signal from anyone means no signal from Viettel
    assert {h["id"] for h in overall} <= set(expected)
    commune = dark[0]["commune"]["code"]
    mine = hamlets_of(c, status="none", operator="viettel", commune=commune)
    assert mine and all(h["commune"]["code"] == commune for h in mine)
    assert len(mine) == sum(1 for h in dark if h["commune"]["code"] == commune)
    with c.client(c.viewer("08")) as http:
        r = http.get("/api/v1/hamlets", params={"province": "04", "status": "none"})
        assert r.status_code == 403
    with c.client(c.viewer("04")) as http:
        r = http.get("/api/v1/hamlets", params={"status": "none", "operator": "viettel"})
        assert r.status_code == 200 and r.json()["count"] == len(expected)


def test_summary_counts_the_hamlets_the_api_lists(seeded: RunningCollector) -> None:
    c = seeded
    every = hamlets_of(c)
    with c.client(ADMIN_SECRET) as http:
        r = http.get("/api/v1/coverage/summary", params={"province": "04"})
        assert r.status_code == 200, r.text
        by_province = http.get(
            "/api/v1/coverage/summary", params={"province": "04", "by": "province"}
        ).json()
    doc = r.json()
    assert doc["by"] == "commune" and doc["count"] == len(doc["rows"])
    rows = pd.DataFrame(doc["rows"])
    for scope in ("overall", "viettel"):
        mine = rows[rows["operator"] == scope].set_index("commune_code")
        for status in ("covered", "weak", "none"):

            def status_of(h: dict[str, Any], scope: str = scope) -> str:
                return str(h["status"] if scope == "overall" else h["operators"][scope]["status"])

            chosen = [h for h in every if status_of(h) == status]
            counts = Counter(h["commune"]["code"] for h in chosen)
            people: Counter[str] = Counter()
            for h in chosen:
                people[h["commune"]["code"]] += h["population"] or 0
            got = mine[f"hamlets_{status}"]
            assert got.to_dict() == {k: counts.get(k, 0) for k in mine.index}, (scope, status)
            assert mine[f"population_{status}"].to_dict() == {
                k: people.get(k, 0) for k in mine.index
            }
    names = {h["commune"]["code"]: h["commune"]["name"] for h in every}
    assert rows["commune_name"].tolist() == rows["commune_code"].map(names).tolist()
    [total] = [r for r in by_province["rows"] if r["operator"] == "overall"]
    assert total["province_code"] == "04" and total["province_name"] == "Cao Bằng"
    assert total["hamlets"] == len(every) and total["synthetic"] is True


def test_whatif_answer_equals_the_cli(
    seeded: RunningCollector, db_url: str, tmp_path: Path
) -> None:
    c = seeded
    dark = hamlets_of(c, status="none", operator="viettel")[0]
    site = {"lat": dark["lat"], "lon": dark["lon"], "operator": "viettel", "height_m": 30}
    with c.client(ADMIN_SECRET) as http:
        r = http.post("/api/v1/coverage/whatif", json={"sites": [site]})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["province"] == "04" and doc["synthetic"] is True
    assert dark["id"] in {ch["hamlet_id"] for ch in doc["changes"]}

    env = {k: v for k, v in os.environ.items() if not k.startswith("LOMSONG_")}
    env["LOMSONG_DATABASE_URL"] = db_url
    out_file = tmp_path / "whatif.csv"
    cli = subprocess.run(
        [
            LOMSONG,
            "coverage",
            "whatif",
            "--site",
            f"{dark['lat']},{dark['lon']}",
            "--operator",
            "viettel",
            "--height",
            "30",
            "-o",
            str(out_file),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    table = pd.read_csv(out_file, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    api = sorted(
        (ch["hamlet_id"], ch["operator"], ch["before"], ch["after"]) for ch in doc["changes"]
    )
    mine = sorted(
        zip(table["hamlet_id"], table["operator"], table["before"], table["after"], strict=True)
    )
    assert api == mine
    noun = "hamlet" if doc["hamlets_changed"] == 1 else "hamlets"
    said = f"{doc['hamlets_changed']:,} {noun} ({doc['population_changed']:,} people)"
    assert said in cli.stdout


def test_a_field_reading_changes_the_hamlet_it_was_taken_at(seeded: RunningCollector) -> None:
    c = seeded
    dark = hamlets_of(c, status="none", operator="viettel")[0]
    assert dark["operators"]["viettel"]["measured"] is False
    reading = {
        "lat": dark["lat"],
        "lon": dark["lon"],
        "operator": "viettel",
        "radio": "lte",
        "rsrp_dbm": -85.0,
        "measured_at": time.time() - 600,
    }
    with c.client(ADMIN_SECRET) as http:
        r = http.post("/api/v1/field-measurements", json={"readings": [reading]})
        assert r.status_code == 200 and r.json() == {"accepted": 1}
    [now] = [h for h in hamlets_of(c, commune=dark["commune"]["code"]) if h["id"] == dark["id"]]
    assert now["operators"]["viettel"] == {"status": "covered", "rsrp_dbm": -85.0, "measured": True}
    assert now["status"] == "covered"
    assert dark["id"] not in {h["id"] for h in hamlets_of(c, status="none", operator="viettel")}


def _round(seq: int, at: datetime, viettel_ok: bool) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for i, (uplink, ok) in enumerate((("viettel-4g", viettel_ok), ("fibre", True))):
        out.append(
            {
                "seq": seq + i,
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
    out.append(
        {
            "seq": seq + 2,
            "measured_at": iso(at),
            "kind": "heartbeat",
            "target": "self",
            "uplink": None,
            "ok": True,
            "uptime_seconds": 3600.0 + seq,
        }
    )
    return out


def test_an_uplink_outage_cuts_off_the_communes_hamlets_until_it_ends(
    seeded: RunningCollector,
) -> None:
    c = seeded
    every = hamlets_of(c)
    served = Counter(
        h["commune"]["code"]
        for h in every
        if h["operators"]["viettel"]["status"] in ("covered", "weak")
    )
    commune = served.most_common(1)[0][0]
    token = c.register("cb-probe", commune, ("viettel-4g:viettel", "fibre:fibre"))
    seq = 1

    def send(viettel_ok: bool) -> None:
        nonlocal seq
        doc = {
            "probe_id": "cb-probe",
            "boot_id": "boot-1",
            "agent_version": "0.1.0",
            "sent_at": iso(datetime.now(UTC)),
            "results": _round(seq, datetime.now(UTC), viettel_ok),
        }
        seq += 3
        raw, headers = body(doc)
        with c.client(token) as http:
            assert http.post("/api/v1/reports", content=raw, headers=headers).status_code == 200

    def open_uplink_outages() -> list[dict[str, Any]]:
        with c.client(ADMIN_SECRET) as http:
            r = http.get("/api/v1/outages", params={"active": "true"})
        return [o for o in r.json()["outages"] if o["condition"] == "uplink_down"]

    def until(done: Any, viettel_ok: bool) -> None:
        def reported_until_done() -> bool:  # the probe keeps reporting while the detector acts
            if done():
                return True
            send(viettel_ok)
            return False

        wait_until(reported_until_done, timeout=20, what="the detector acted", interval=0.4)

    before = {h["id"]: h for h in every if h["commune"]["code"] == commune}
    until(lambda: len(open_uplink_outages()) == 1, viettel_ok=False)
    [outage] = open_uplink_outages()
    assert outage["operator"] == "viettel"
    during = {h["id"]: h for h in hamlets_of(c, commune=commune)}
    for hid, was in before.items():
        v = was["operators"]["viettel"]["status"]
        assert during[hid]["operators"]["viettel"]["status"] == (
            "outage" if v in ("covered", "weak") else v
        )
        for op in OPERATORS[1:]:
            assert during[hid]["operators"][op] == was["operators"][op]
    cut = hamlets_of(c, status="outage", operator="viettel")
    assert {h["id"] for h in cut} == {
        hid
        for hid, h in before.items()
        if h["operators"]["viettel"]["status"] in ("covered", "weak")
    }
    # elsewhere nothing changed
    other = next(h for h in every if h["commune"]["code"] != commune)
    [same] = [h for h in hamlets_of(c, commune=other["commune"]["code"]) if h["id"] == other["id"]]
    assert same == other

    until(lambda: not open_uplink_outages(), viettel_ok=True)
    after = {h["id"]: h for h in hamlets_of(c, commune=commune)}
    assert after == before


def test_dead_zones_endpoint(seeded: RunningCollector) -> None:
    c = seeded
    with c.client(ADMIN_SECRET) as http:
        r = http.get("/api/v1/coverage/deadzones", params={"province": "04"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/geo+json")
        again = http.get("/api/v1/coverage/deadzones", params={"province": "04"}).json()
        missing = http.get("/api/v1/coverage/deadzones")
        assert missing.status_code == 422 and "province" in missing.json()["detail"]
    doc = r.json()
    assert doc["type"] == "FeatureCollection" and doc == again
    props = [f["properties"] for f in doc["features"]]
    assert sorted(p["commune_code"] for p in props) == sorted(
        boundaries.communes(province="04")["code"]
    )
    assert all(p["synthetic"] is True and p["area_km2"] >= 0 for p in props)
    assert any(p["area_km2"] > 0 for p in props)
    with_zone = [f for f in doc["features"] if f["properties"]["area_km2"] > 0]
    assert all(f["geometry"]["type"] in ("Polygon", "MultiPolygon") for f in with_zone)
    # a hamlet nobody reaches is in the dead zone of its commune
    zones = {
        f["properties"]["commune_code"]: shapely.geometry.shape(f["geometry"]) for f in with_zone
    }
    for h in hamlets_of(c, status="none"):
        point = shapely.Point(h["lon"], h["lat"])
        assert shapely.dwithin(zones[h["commune"]["code"]], point, 1e-4), h["id"]
    with c.client(c.viewer("08")) as http:
        assert http.get("/api/v1/coverage/deadzones", params={"province": "04"}).status_code == 403
