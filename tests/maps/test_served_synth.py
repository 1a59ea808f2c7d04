"""A served province map drawn from synthetic data through the collector's CoverageService."""

from __future__ import annotations

import time

import numpy as np

from lomsong.collector.deps import coverage_of
from lomsong.coverage import boundaries, deadzones
from lomsong.coverage.compute import classify_area
from lomsong.coverage.model import COVERED, OUTAGE, WEAK
from tests.conftest import ADMIN_SECRET, CollectorFactory
from tests.factories import store_synth
from tests.maps.conftest import layer_data, layers, page_data
from tests.maps.test_served import DEAD_TILES, client, report
from tests.waiting import wait_until

BAO_LAC = "01321"
DEAD_ZONES = "Vùng trắng sóng / Dead zones"


def test_synthetic_hamlets_dead_zones_and_a_link_down_on_the_served_map(
    collector_factory: CollectorFactory, sqlite_url: str
) -> None:
    store_synth(sqlite_url)
    c = collector_factory(sqlite_url, maps=DEAD_TILES, report_interval_seconds=5.0)
    settings = coverage_of(c.ctx).settings
    area = classify_area(c.engine, "04", settings, now=time.time())
    base = area.base
    with client(c, c.viewer("04")) as http:
        html = http.get("/maps/province/04").text
    data = page_data(html)
    h = data["H"]
    # every synthetic hamlet with the engine's status
    assert h["id"] == area.hamlets.ids.tolist() and len(h["id"]) > 1000
    assert h["name"] == area.hamlets.names.tolist()
    assert h["overall"] == base.overall.astype(int).tolist()
    assert {0, 1, 2} <= set(h["overall"])  # covered, weak and none all occur
    # the dead zones are the engine's, one feature per commune with a dead zone
    zones = deadzones.dead_zones(boundaries.communes(c.engine, "04"), area.sectors, settings)
    areas = np.round(zones["area_km2"].astype(float), 2)
    expected = {c: a for c, a in zip(zones["code"], areas, strict=True) if a > 0}
    feats = layer_data(html, layers(html)[DEAD_ZONES])["features"]
    shown = {f["properties"]["c"]: f["properties"]["a"] for f in feats if f["properties"]["a"]}
    assert expected and shown == expected
    assert data["synthetic"] == {"hamlets": True, "sites": True}

    # Bảo Lạc's Viettel link goes down: its Viettel-served hamlets turn to outage on the map
    wait_until(
        lambda: c.ctx.outages is not None and c.ctx.outages.detector is not None,
        timeout=15,
        what="the detector built",
    )
    token = c.register("cb-bao-lac", BAO_LAC, ("fibre:fibre", "viettel-4g:viettel"))
    c.ctx.live.reload(c.engine)
    report(c, token, "cb-bao-lac", 1, failing="viettel-4g", rounds=4)

    def opened() -> bool:
        with client(c, ADMIN_SECRET) as http:
            return bool(http.get("/api/v1/outages", params={"active": "true"}).json()["count"])

    wait_until(opened, timeout=15, what="an outage opened")
    with client(c, c.viewer("04")) as http:
        live = page_data(http.get("/maps/province/04").text)["H"]
    v = base.operators.index("viettel")
    in_commune = area.hamlets.commune_code == BAO_LAC
    served = in_commune & np.isin(base.status[:, v], (COVERED, WEAK))
    assert served.any()
    # the per-operator columns follow the page's operators
    col = [o["key"] for o in data["ops"]].index("viettel")
    status = np.array(live["status"])
    assert (status[served, col] == OUTAGE).all()
    # hamlets elsewhere, and Bảo Lạc's hamlets Viettel does not serve, keep their status
    assert (status[~in_commune, col] == base.status[~in_commune, v]).all()
    assert (status[in_commune & ~served, col] == base.status[in_commune & ~served, v]).all()
    # a hamlet is outage overall when every operator serving it is down: Viettel alone
    only_viettel = served & (np.isin(base.status, (COVERED, WEAK)).sum(axis=1) == 1)
    assert (np.array(live["overall"])[only_viettel] == OUTAGE).all()
