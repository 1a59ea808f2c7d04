"""The province map's HTML: its layers, legend, data, notices, and what it refuses."""

from __future__ import annotations

import dataclasses
import re

import geopandas as gpd
import numpy as np
import pytest
import shapely

from lomsong.coverage.model import NONE, OUTAGE, Classification, as_object
from lomsong.errors import ValidationError
from lomsong.maps.inputs import ProvinceCoverage, TileSource, commune_shares
from lomsong.maps.probes import OutageFact, ProbeMarker, UplinkState
from lomsong.maps.province import province_map, render_province
from tests.maps.conftest import layer_data, layers, page_data
from tests.maps.sample import SampleProvince

TILES = TileSource(url="http://127.0.0.1:9/{z}/{x}/{y}.png", attribution="test tiles")
NOW = 1_795_000_000.0


def probes() -> list[ProbeMarker]:
    return [
        ProbeMarker(
            id="cb-thuc-phan",
            label="UBND phường Thục Phán",
            commune_code="01273",
            commune_name="Phường Thục Phán",
            province_code="04",
            lon=106.2567,
            lat=22.6657,
            state="down",
            since=NOW - 3900,
            last_seen=NOW - 3950,
            uplinks=(
                UplinkState("fibre", "fibre", "up"),
                UplinkState("viettel-4g", "viettel", "down"),
            ),
            outages=(OutageFact("uplink_down", "viettel-4g", "viettel", NOW - 3900, "network"),),
        ),
        ProbeMarker(
            id="cb-bao-lac",
            label=None,
            commune_code="01321",
            commune_name="Xã Bảo Lạc",
            province_code="04",
            lon=105.6731,
            lat=22.9542,
            state="up",
            since=None,
            last_seen=NOW - 20,
            uplinks=(UplinkState("vnpt-4g", "vinaphone", "up"),),
        ),
    ]


def render(sample: SampleProvince, coverage: ProvinceCoverage | None = None, **kw: object) -> str:
    fmap = province_map(
        "04",
        "Cao Bằng",
        sample.communes,
        coverage if coverage is not None else sample.coverage,
        probes(),
        tiles=TILES,
        generated_at=NOW,
        **kw,  # type: ignore[arg-type]
    )
    return render_province(fmap, "Cao Bằng")


@pytest.fixture(scope="module")
def html(cao_bang: SampleProvince) -> str:
    return render(cao_bang)


def test_every_layer_is_in_the_layer_control_with_both_languages(html: str) -> None:
    names = list(layers(html))
    assert names == [
        "Ranh giới xã/phường / Commune boundaries",
        "Vùng trắng sóng / Dead zones",
        "Trạm BTS — Viettel / Sites — Viettel",
        "Trạm BTS — VinaPhone / Sites — VinaPhone",
        "Trạm BTS — MobiFone / Sites — MobiFone",
        "Thôn/bản — mọi nhà mạng / Hamlets — all operators",
        "Thôn/bản — Viettel / Hamlets — Viettel",
        "Thôn/bản — VinaPhone / Hamlets — VinaPhone",
        "Thôn/bản — MobiFone / Hamlets — MobiFone",
        "Trạm đo tại trung tâm xã / Probes at commune centres",
    ]


def test_the_legend_shows_statuses_power_sites_dead_zones_and_probes(html: str) -> None:
    for key in (
        "status-0",
        "status-1",
        "status-2",
        "status-3",
        "no-power",
        "dead-zone",
        "site-viettel",
        "site-mobifone",
        "site-down",
        "probe-up",
        "probe-degraded",
        "probe-partial",
        "probe-down",
    ):
        assert f'data-key=\\"{key}\\"' in html, key
    assert "Mất một phần kết nối / Partly down" in html
    assert "Trắng sóng / No signal" in html
    assert "Không có điện lưới / No grid power" in html


def test_hamlet_columns_and_layers_are_the_inputs(html: str, cao_bang: SampleProvince) -> None:
    h, c = cao_bang.coverage.hamlets, cao_bang.coverage.classification
    data = page_data(html)
    assert [o["key"] for o in data["ops"]] == ["viettel", "vinaphone", "mobifone"]
    assert data["H"]["name"] == h.names.tolist()
    # communes by their full names, as the status page and alerts name them
    assert data["communes"]["01290"] == "Xã Bảo Lâm"
    assert data["communes"]["01273"] == "Phường Thục Phán"
    assert data["H"]["pop"] == h.population.tolist()
    assert data["H"]["overall"] == c.overall.tolist()
    assert data["H"]["power"] == h.has_grid_power.astype(int).tolist()
    assert data["H"]["serving"] == c.serving.tolist()
    i = int(np.flatnonzero(~np.isnan(c.rsrp_dbm[:, 0]))[0])
    assert data["H"]["rsrp"][i][0] == round(float(c.rsrp_dbm[i, 0]))

    overlay = layers(html)
    everyone = layer_data(html, overlay["Thôn/bản — mọi nhà mạng / Hamlets — all operators"])
    feats = everyone["features"]
    assert len(feats) == len(h) == 1500
    assert [f["properties"]["s"] for f in feats] == c.overall.tolist()
    no_power = [f["id"] for f in feats if f["properties"].get("p") == 0]
    assert no_power == np.flatnonzero(~h.has_grid_power).tolist()
    assert feats[7]["geometry"]["coordinates"] == [round(h.lon[7], 5), round(h.lat[7], 5)]
    mobifone = layer_data(html, overlay["Thôn/bản — MobiFone / Hamlets — MobiFone"])
    assert [f["properties"]["s"] for f in mobifone["features"]] == c.status[:, 2].tolist()
    # every status appears, and the layers are drawn from an index, not repeated facts
    assert set(c.overall.tolist()) == {0, 1, NONE, OUTAGE}
    assert "Thôn" not in str(everyone)


def test_sites_are_grouped_from_sectors(html: str, cao_bang: SampleProvince) -> None:
    s = cao_bang.coverage.sectors
    data = page_data(html)
    assert len(data["T"]["site"]) == len(s) == 1000
    assert len(data["S"]["id"]) == len(set(zip(s.operator, s.site_id, strict=True)))
    overlay = layers(html)
    shown = sum(
        len(layer_data(html, overlay[f"Trạm BTS — {n} / Sites — {n}"])["features"])
        for n in ("Viettel", "VinaPhone", "MobiFone")
    )
    assert shown == len(data["S"]["id"])
    down_sites = {i for i, on in enumerate(data["S"]["on"]) if not on}
    assert down_sites == {int(k) for k in set(np.asarray(data["T"]["site"])[~s.active])} - {
        int(k) for k in set(np.asarray(data["T"]["site"])[s.active])
    }


def test_probes_carry_their_state_uplinks_and_outage(html: str) -> None:
    data = page_data(html)["P"]
    assert data["id"] == ["cb-thuc-phan", "cb-bao-lac"]
    assert data["state"] == ["down", "up"]
    # operators are named as alerts and the status page name them
    assert data["uplinks"][0] == [
        ["fibre", "cáp quang / fibre", "up"],
        ["viettel-4g", "Viettel", "down"],
    ]
    assert data["outages"][0] == [["uplink_down", "viettel-4g", NOW - 3900, "network"]]
    overlay = layers(html)
    markers = layer_data(html, overlay["Trạm đo tại trung tâm xã / Probes at commune centres"])
    assert [f["properties"]["s"] for f in markers["features"]] == ["down", "up"]
    assert "ls-probe-down" in html


def test_the_page_loads_nothing_from_outside_but_the_tiles(html: str) -> None:
    assert "<script src" not in html
    assert re.findall(r"<link[^>]*>", html) == ['<link rel="icon" href="data:,">']
    assert "Leaflet 1.9.4" in html and "var lomsong = (function" in html
    urls = set(re.findall(r"https?://[^\s\"'\\)]+", html))
    assert "http://127.0.0.1:9/{z}/{x}/{y}.png" in urls
    assert not any("cdn" in u or "jquery" in u or "bootstrap" in u for u in urls), urls


def test_communes_are_simplified_and_rounded(html: str, cao_bang: SampleProvince) -> None:
    overlay = layers(html)
    communes = layer_data(html, overlay["Ranh giới xã/phường / Commune boundaries"])
    assert len(communes["features"]) == 56
    drawn = shapely.from_geojson([orjson_dumps(f["geometry"]) for f in communes["features"]])
    assert (
        shapely.get_num_coordinates(drawn).sum()
        < shapely.get_num_coordinates(cao_bang.communes.geometry.to_numpy()).sum()
    )
    coords = shapely.get_coordinates(drawn)
    assert np.array_equal(coords, np.round(coords, 5))
    first = communes["features"][0]["properties"]
    shares = commune_shares(cao_bang.coverage.hamlets, cao_bang.coverage.classification)
    code = first["c"]
    assert first["h"] == shares.loc[code, "hamlets"]
    assert first["z"] == shares.loc[code, "none_population"]
    assert first["pop"] == int(cao_bang.communes.set_index("code").loc[code, "population"])


def orjson_dumps(value: object) -> str:
    import orjson

    return orjson.dumps(value).decode()


def test_synthetic_data_is_labelled_and_real_data_is_not(cao_bang: SampleProvince) -> None:
    assert "Dữ liệu mô phỏng: thôn/bản và trạm BTS không phải số liệu thật" in render(cao_bang)
    cov = cao_bang.coverage
    real = ProvinceCoverage(
        dataclasses.replace(cov.hamlets, synthetic=np.zeros(len(cov.hamlets), dtype=bool)),
        cov.sectors,
        cov.classification,
        cov.dead_zones,
        synthetic_sites=False,
    )
    page = render(cao_bang, real)
    assert "không phải số liệu thật" not in page
    assert '"ls-notice ls-synthetic"' not in page
    assert page_data(page)["synthetic"] == {"hamlets": False, "sites": False}


def test_without_coverage_the_map_has_communes_probes_and_says_so(
    cao_bang: SampleProvince,
) -> None:
    fmap = province_map("04", "Cao Bằng", cao_bang.communes, None, probes(), tiles=TILES)
    page = render_province(fmap, "Cao Bằng")
    assert list(layers(page)) == [
        "Ranh giới xã/phường / Commune boundaries",
        "Trạm đo tại trung tâm xã / Probes at commune centres",
    ]
    assert "Chưa có dữ liệu vùng phủ cho tỉnh này / No coverage data for this province yet" in page
    assert "H" not in page_data(page)


def test_names_cannot_break_out_of_the_script(cao_bang: SampleProvince) -> None:
    cov = cao_bang.coverage
    names = cov.hamlets.names.copy()
    names[0] = "Thôn </script><script>alert(1)</script>"
    evil = ProvinceCoverage(
        dataclasses.replace(cov.hamlets, names=as_object(names.tolist())),
        cov.sectors,
        cov.classification,
        cov.dead_zones,
    )
    page = render(cao_bang, evil)
    assert "</script><script>alert(1)" not in page
    assert page_data(page)["H"]["name"][0] == names[0]


def _shrunk(c: Classification, n: int) -> Classification:
    return dataclasses.replace(c, overall=c.overall[:n])


def test_inputs_that_do_not_fit_name_the_field(cao_bang: SampleProvince) -> None:
    cov = cao_bang.coverage
    with pytest.raises(ValidationError, match=r"^classification: has a row per hamlet"):
        ProvinceCoverage(cov.hamlets, cov.sectors, _shrunk(cov.classification, 10), cov.dead_zones)
    serving = cov.classification.serving.copy()
    serving[3, 1] = 5000
    with pytest.raises(ValidationError, match=r"classification.serving: indexes the sectors.*5000"):
        ProvinceCoverage(
            cov.hamlets,
            cov.sectors,
            dataclasses.replace(cov.classification, serving=serving),
            cov.dead_zones,
        )
    with pytest.raises(ValidationError, match=r"dead_zones: lacks the columns \['area_km2'\]"):
        ProvinceCoverage(
            cov.hamlets,
            cov.sectors,
            cov.classification,
            gpd.GeoDataFrame(cov.dead_zones.drop(columns="area_km2")),
        )


def test_commune_shares_count_people_without_signal(cao_bang: SampleProvince) -> None:
    h, c = cao_bang.coverage.hamlets, cao_bang.coverage.classification
    shares = commune_shares(h, c)
    code = str(h.commune_code[0])
    mine = h.commune_code == code
    none = mine & (c.overall == NONE)
    assert shares.loc[code, "hamlets"] == mine.sum()
    assert shares.loc[code, "none_hamlets"] == none.sum()
    assert shares.loc[code, "none_population"] == h.population[none].sum()
    assert shares.loc[code, "share"] == pytest.approx(
        h.population[none].sum() / h.population[mine].sum()
    )
    assert shares["hamlets"].sum() == len(h)
