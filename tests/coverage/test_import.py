"""``geodata import``: every format, every kind, the report's reasons, upserts, versions,
retirement, and one transaction per import; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import orjson
import pytest
import shapely
from pyproj import CRS, Transformer
from sqlalchemy import Engine, func, select

from lomsong.coverage import boundaries as boundary_layers
from lomsong.coverage import store
from lomsong.coverage.importing import NothingAccepted, import_file
from lomsong.coverage.readers import read_table
from lomsong.coverage.validate import Options
from lomsong.errors import ConflictError, GeodataError, ValidationError
from lomsong.storage.schema import (
    boundaries,
    field_measurements,
    geodata_imports,
    hamlet_versions,
    hamlets,
    sites,
)
from tests.coverage.geodata_helpers import DATA, vn2000_to_wgs84

HAMLETS = DATA / "hamlets_caobang.geojson"


class Clock:
    def __init__(self, t: float = 1_780_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _rows(engine: Engine, table: object, *where: object) -> list[dict[str, object]]:
    with engine.connect() as conn:
        query = select(table).where(*where)  # type: ignore[call-overload]
        return [dict(r) for r in conn.execute(query).mappings()]


def _count(engine: Engine, table: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_hamlets_geojson_report_names_each_rejected_row(engine: Engine) -> None:
    report = import_file(engine, HAMLETS, Options(kind="hamlets", province="04"), clock=Clock())
    assert report.total == 11 and report.accepted == 3
    got = {(r.row, r.id): r.reason for r in report.rejected}
    assert got == {
        (4, "CB-004"): "population: must be ≥ 0 (got -5)",
        (5, "CB-005"): "geometry: outside Vietnam (lon 108.00000, lat 24.50000)",
        (6, "CB-001"): "id: duplicate in this file (got 'CB-001')",
        (7, "CB-006"): "commune_code: unknown 2025 commune code (got '09999')",
        (8, "CB-007"): "geometry: missing or unreadable",
        (9, "CB-008"): "geometry: outside province 04 Cao Bằng (lon 105.85000, lat 21.03000)",
        (10, "CB-009"): "geometry: invalid or empty (Self-intersection[105.635 22.945])",
        (11, "CB-010"): "commune_code: the point lies outside this commune "
        "(got '01273', Phường Thục Phán: 61.6 km away)",
    }
    assert report.reasons["population: must be ≥ 0"] == 1
    rows = {r["id"]: r for r in _rows(engine, hamlets)}
    assert set(rows) == {"CB-001", "CB-002", "CB-003"}
    assert rows["CB-001"]["name"] == "Bản Nà Rị" and rows["CB-001"]["population"] == 350
    # no commune code in the file: found by point in polygon
    assert rows["CB-002"]["commune_code"] == "01321" and rows["CB-002"]["has_grid_power"] is False
    assert "1 hamlets got their commune code from their point" in report.notes
    # a polygon hamlet: its representative point inside, the polygon kept
    poly = shapely.from_wkb(bytes(rows["CB-003"]["geometry"]))  # type: ignore[arg-type]
    assert poly.geom_type == "Polygon"
    assert poly.contains(shapely.Point(rows["CB-003"]["lon"], rows["CB-003"]["lat"]))
    assert rows["CB-003"]["has_grid_power"] is None
    assert all(r["province_code"] == "04" and r["version"] == 1 for r in rows.values())
    (imp,) = _rows(engine, geodata_imports)
    assert (imp["kind"], imp["rows_total"], imp["rows_accepted"], imp["rows_rejected"]) == (
        "hamlets",
        11,
        3,
        8,
    )
    stored = orjson.loads(str(imp["report"]))
    assert len(stored["rejected"]) == 8 and stored["rejected"][0] == {
        "row": 4,
        "id": "CB-004",
        "reason": "population: must be ≥ 0 (got -5)",
    }
    assert all(r["import_id"] == imp["id"] for r in rows.values())


def _edited(tmp_path: Path, edit: Callable[[list[dict[str, object]]], None]) -> Path:
    doc = json.loads(HAMLETS.read_text(encoding="utf-8"))
    edit(doc["features"])
    out = tmp_path / "hamlets_v2.geojson"
    out.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return out


def test_reimport_upserts_and_versions_changed_hamlets(engine: Engine, tmp_path: Path) -> None:
    clock = Clock()
    first = import_file(engine, HAMLETS, Options(kind="hamlets", province="04"), clock=clock)
    assert first.changes.inserted == 3

    def grow(features: list[dict[str, object]]) -> None:
        props = features[0]["properties"]
        assert isinstance(props, dict)
        props["population"] = 375
        props["name"] = "Bản Nà Rị Mới"

    clock.t += 86_400
    second = import_file(
        engine, _edited(tmp_path, grow), Options(kind="hamlets", province="04"), clock=clock
    )
    assert (second.changes.updated, second.changes.unchanged) == (1, 2)
    (now,) = _rows(engine, hamlets, hamlets.c.id == "CB-001")
    assert (now["version"], now["population"], now["name"]) == (2, 375, "Bản Nà Rị Mới")
    assert now["import_id"] == second.import_id and now["updated_at"] == clock.t
    (old,) = _rows(engine, hamlet_versions)
    assert (old["hamlet_id"], old["version"], old["import_id"]) == ("CB-001", 1, first.import_id)
    assert (old["valid_from"], old["valid_to"]) == (clock.t - 86_400, clock.t)
    assert json.loads(str(old["data"]))["population"] == 350
    history = store.hamlet_history(engine, "CB-001")
    assert [(h["version"], h["population"], h["valid_to"]) for h in history] == [
        (1, 350, clock.t),
        (2, 375, None),
    ]
    # the same file again changes nothing
    third = import_file(
        engine, _edited(tmp_path, grow), Options(kind="hamlets", province="04"), clock=clock
    )
    assert third.changes.unchanged == 3 and _count(engine, hamlet_versions) == 1


def test_replace_retires_the_provinces_missing_hamlets(engine: Engine, tmp_path: Path) -> None:
    clock = Clock()
    import_file(engine, HAMLETS, Options(kind="hamlets", province="04"), clock=clock)

    def only_first(features: list[dict[str, object]]) -> None:
        # CB-003 stays in the file but with a bad value: rejected, yet not retired
        bad = features[2]
        props = bad["properties"]
        assert isinstance(props, dict) and props["id"] == "CB-003"
        props["population"] = -1
        features[:] = [features[0], bad]

    clock.t += 3600
    report = import_file(
        engine,
        _edited(tmp_path, only_first),
        Options(kind="hamlets", province="04"),
        replace=True,
        clock=clock,
    )
    assert (report.changes.unchanged, report.changes.retired) == (1, 1)
    assert [r.reason for r in report.rejected] == ["population: must be ≥ 0 (got -1)"]
    rows = {r["id"]: r for r in _rows(engine, hamlets)}
    assert len(rows) == 3  # retired, not deleted
    assert rows["CB-002"]["retired_at"] == clock.t and rows["CB-002"]["version"] == 2
    assert rows["CB-001"]["retired_at"] is None and rows["CB-003"]["retired_at"] is None
    assert sorted(store.load_hamlets(engine, "04").ids) == ["CB-001", "CB-003"]
    assert {v["hamlet_id"] for v in _rows(engine, hamlet_versions)} == {"CB-002"}
    # the full set again brings them back as a new version
    clock.t += 3600
    back = import_file(
        engine, HAMLETS, Options(kind="hamlets", province="04"), replace=True, clock=clock
    )
    assert (back.changes.updated, back.changes.unchanged, back.changes.retired) == (1, 2, 0)
    assert sorted(store.load_hamlets(engine, "04").ids) == ["CB-001", "CB-002", "CB-003"]
    assert [h["version"] for h in store.hamlet_history(engine, "CB-002")] == [1, 2, 3]


def test_replace_needs_hamlets_and_a_province(engine: Engine) -> None:
    with pytest.raises(ValidationError, match=r"--replace: only for hamlets, with --province"):
        import_file(engine, HAMLETS, Options(kind="hamlets"), replace=True)


def _many_hamlets(path: Path, n: int) -> Path:
    # points spread over Xã Bảo Lạc (01321)
    rng = np.random.default_rng(5)
    lines = ["id,name,commune_code,population,lat,lon"]
    for i in range(n):
        lat = 22.94 + rng.uniform(-0.01, 0.01)
        lon = 105.635 + rng.uniform(-0.01, 0.01)
        lines.append(f"BL-{i:05d},Thôn số {i},01321,{100 + i % 50},{lat:.6f},{lon:.6f}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_failure_half_way_stores_nothing(engine: Engine, tmp_path: Path) -> None:
    source = _many_hamlets(tmp_path / "many.csv", 2 * store.CHUNK + 10)
    written: list[int] = []

    def progress(_what: str, _total: int) -> Callable[[int], None]:
        def advance(n: int) -> None:
            written.append(n)
            if len(written) == 2:
                raise KeyboardInterrupt

        return advance

    with pytest.raises(KeyboardInterrupt):
        import_file(engine, source, Options(kind="hamlets"), progress=progress)
    assert written == [store.CHUNK, store.CHUNK]  # two chunks were sent before the failure
    assert _count(engine, hamlets) == 0 and _count(engine, geodata_imports) == 0
    report = import_file(engine, source, Options(kind="hamlets"))
    assert report.accepted == _count(engine, hamlets) == 2 * store.CHUNK + 10


def test_shapefile_in_vn2000_utm_with_its_prj(engine: Engine, tmp_path: Path) -> None:
    vn_lon, vn_lat = np.array([105.544, 105.6335]), np.array([22.8215, 22.9455])
    utm = CRS.from_epsg(3405)
    x, y = Transformer.from_crs(utm.geodetic_crs, utm, always_xy=True).transform(vn_lon, vn_lat)
    frame = gpd.GeoDataFrame(
        {
            "id": ["SHP-1", "SHP-2"],
            "name": ["Bản Phja Bó", "Thôn Nặm Thỉn"],
            # a Shapefile's field names have at most 10 characters, as QGIS writes them
            "commune_co": ["01290", "01321"],
            "population": [410, 95],
            "has_grid_p": [1, 0],
        },
        geometry=gpd.points_from_xy(x, y),
        crs="EPSG:3405",
    )
    path = tmp_path / "thon.shp"
    frame.to_file(path, engine="pyogrio")
    report = import_file(engine, path, Options(kind="hamlets", province="04"))
    assert report.format == "shapefile" and report.accepted == 2, report.rejected
    rows = {r["id"]: r for r in _rows(engine, hamlets)}
    want_lon, want_lat = vn2000_to_wgs84(vn_lon, vn_lat)
    assert abs(rows["SHP-1"]["lon"] - want_lon[0]) < 1e-7  # type: ignore[operator]
    assert abs(rows["SHP-2"]["lat"] - want_lat[1]) < 1e-7  # type: ignore[operator]
    assert rows["SHP-1"]["name"] == "Bản Phja Bó" and rows["SHP-2"]["has_grid_power"] is False
    assert rows["SHP-1"]["commune_code"] == "01290"


def test_geopackage_layers(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "two.gpkg"
    points = gpd.GeoDataFrame(
        {"id": ["G-1"], "name": ["Xóm Pác Bó"], "population": [77]},
        geometry=[shapely.Point(105.6335, 22.9455)],
        crs="EPSG:4326",
    )
    points.to_file(path, layer="thon", engine="pyogrio")
    points.assign(id=["G-2"]).to_file(path, layer="khac", engine="pyogrio")
    with pytest.raises(GeodataError, match=r"holds several layers \['thon', 'khac'\]"):
        import_file(engine, path, Options(kind="hamlets"))
    with pytest.raises(ValidationError, match=r"--layer: two.gpkg has layers"):
        import_file(engine, path, Options(kind="hamlets"), layer="nope")
    report = import_file(engine, path, Options(kind="hamlets"), layer="thon")
    assert report.format == "gpkg" and report.accepted == 1
    assert [r["id"] for r in _rows(engine, hamlets)] == ["G-1"]


@pytest.mark.parametrize("name", ["opencellid_452.csv", "opencellid_452_noheader.csv"])
def test_opencellid_with_and_without_header(engine: Engine, name: str) -> None:
    report = import_file(engine, DATA / name, Options(kind="sites"))
    header = name == "opencellid_452.csv"
    first = 2 if header else 1  # the first data row's line
    assert report.format == "opencellid"
    assert report.skipped == {"mcc: not 452 (Vietnam)": 1}
    assert {(r.row - first, r.reason) for r in report.rejected} == {
        (5, "radio: expected one of {gsm, umts, lte, nr} (got 'CDMA')"),
        (7, "net: no known operator has this MNC in MCC 452 (got '99')"),
        (8, "geometry: outside Vietnam (lon -74.00000, lat 40.70000)"),
        (9, "range: must be ≥ 0 m (got '-10')"),
        (10, "id: duplicate in this file (got 'viettel:enb-10918:lte-13021-2795021')"),
    }
    rows = {r["id"]: r for r in _rows(engine, sites)}
    assert set(rows) == {
        "viettel:enb-10918:lte-13021-2795021",
        "viettel:enb-10918:lte-13021-2795022",
        "mobifone:umts-2011-34567:umts-2011-34567",
        "vinaphone:gsm-401-12345:gsm-401-12345",
        "viettel:nr-13021-68719476:nr-13021-68719476",
    }
    lte = rows["viettel:enb-10918:lte-13021-2795021"]
    # lon comes before lat in OpenCelliD
    assert (lte["lon"], lte["lat"], lte["range_m"]) == (106.2475, 22.6862, 1500.0)
    assert (lte["radio"], lte["band_mhz"], lte["source"], lte["status"]) == (
        "lte",
        1800.0,
        "opencellid",
        "active",
    )
    assert lte["azimuth_deg"] is None and lte["power_dbm"] is None
    assert (lte["province_code"], lte["commune_code"]) == ("04", "01279")
    assert rows["vinaphone:gsm-401-12345:gsm-401-12345"]["band_mhz"] == 900.0


def test_operator_site_csv_with_vietnamese_headers(engine: Engine) -> None:
    report = import_file(engine, DATA / "operator_sites.csv", Options(kind="sites"))
    assert {(r.row, r.reason) for r in report.rejected} == {
        (7, "Góc phương vị: must be < 360° (got '360')"),
        (8, "Băng tần: must be > 0 MHz (got '0')"),
        (9, "Công nghệ: expected one of {gsm, umts, lte, nr} (got '6G')"),
        (
            10,
            "Nhà mạng: expected one of {viettel, vinaphone, mobifone, vietnamobile, gmobile} "
            "(got 'Unitel')",
        ),
    }
    rows = {r["id"]: r for r in _rows(engine, sites)}
    assert rows["viettel:CBG001:2"]["azimuth_deg"] == 120.0
    assert rows["viettel:CBG001:3"]["status"] == "down"
    assert rows["mobifone:CBG003:1"]["status"] == "planned"
    omni = rows["vinaphone:CBG002:1"]  # "VNPT", "3G", no azimuth
    assert (omni["radio"], omni["azimuth_deg"], omni["power_dbm"]) == ("umts", None, 40.0)
    assert rows["viettel:CBG001:1"]["height_m"] == 30.0
    sectors = store.load_sectors(engine, "04")
    # planned sectors are not loaded; a sector that is down is, but inactive
    assert sorted(sectors.ids) == sorted(i for i in rows if i != "mobifone:CBG003:1")
    down = dict(zip(sectors.ids, sectors.active, strict=True))
    assert down["viettel:CBG001:3"] is np.False_ and down["viettel:CBG001:1"] is np.True_
    assert sectors.beamwidth_deg[list(sectors.ids).index("vinaphone:CBG002:1")] == 360.0


def test_sites_reimport_upserts(engine: Engine, tmp_path: Path) -> None:
    clock = Clock()
    import_file(engine, DATA / "operator_sites.csv", Options(kind="sites"), clock=clock)
    text = (DATA / "operator_sites.csv").read_text(encoding="utf-8")
    edited = tmp_path / "sites2.csv"
    edited.write_text(text.replace("Sự cố", "Hoạt động"), encoding="utf-8")
    clock.t += 60
    report = import_file(engine, edited, Options(kind="sites"), clock=clock)
    assert (report.changes.updated, report.changes.unchanged, report.changes.inserted) == (1, 4, 0)
    (row,) = _rows(engine, sites, sites.c.id == "viettel:CBG001:3")
    assert row["status"] == "active" and row["updated_at"] == clock.t


def test_field_readings_once_only(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "do_song.csv"
    path.write_text(
        "lat,lon,mcc,mnc,radio,rsrp_dbm,measured_at,source\n"
        "22.9455,105.6335,452,04,4G,-104.5,2026-03-02T08:00:00Z,khảo sát\n"
        "22.9455,105.6335,452,02,LTE,-118,2026-03-02T08:01:00Z,\n"
        "22.9455,105.6335,452,04,LTE,-170,2026-03-02T08:02:00Z,\n"
        "abc,105.6335,452,04,LTE,-90,2026-03-02T08:03:00Z,\n"
        "22.9455,105.6335,452,04,LTE,-90,hôm qua,\n",
        encoding="utf-8",
    )
    report = import_file(engine, path, Options(kind="field"))
    assert report.accepted == 2
    assert [(r.row, r.reason) for r in report.rejected] == [
        (4, "rsrp_dbm: must be ≥ -160 dBm (got '-170')"),
        (5, "lat: not a number (got 'abc')"),
        (6, "measured_at: expected an ISO 8601 time or epoch seconds (got 'hôm qua')"),
    ]
    rows = _rows(engine, field_measurements)
    assert {(r["operator"], r["radio"], r["source"]) for r in rows} == {
        ("viettel", "lte", "khảo sát"),
        ("vinaphone", "lte", "do_song.csv"),
    }
    with pytest.raises(ConflictError, match=r"imported already \(import \d+\)"):
        import_file(engine, path, Options(kind="field"))
    assert _count(engine, field_measurements) == 2


def _polygon_file(tmp_path: Path, rows: list[tuple[str, shapely.Geometry, int | None]]) -> Path:
    frame = gpd.GeoDataFrame(
        {"code": [r[0] for r in rows], "population": [r[2] for r in rows]},
        geometry=[r[1] for r in rows],
        crs="EPSG:4326",
    )
    path = tmp_path / "ranh_gioi.geojson"
    frame.to_file(path, driver="GeoJSON", engine="pyogrio")
    return path


def test_commune_boundaries_overlay_the_bundled_ones(engine: Engine, tmp_path: Path) -> None:
    square = shapely.box(106.18, 22.67, 106.20, 22.69)
    path = _polygon_file(
        tmp_path,
        [
            ("01273", square, 41_000),
            ("09999", shapely.box(106.0, 22.0, 106.1, 22.1), None),
            ("00769", shapely.box(105.40, 23.17, 105.42, 23.19), None),
            ("01279", shapely.Point(106.24, 22.69), None),
        ],
    )
    report = import_file(engine, path, Options(kind="communes", province="04"))
    assert report.accepted == 1
    assert [r.reason for r in report.rejected] == [
        "code: unknown 2025 commune code (got '09999')",
        "code: commune in another province than 04 Cao Bằng (got '00769', in 08 Tuyên Quang)",
        "geometry: expected a polygon (got Point)",
    ]
    (row,) = _rows(engine, boundaries)
    assert (row["level"], row["code"], row["population"]) == ("commune", "01273", 41_000)
    layer = boundary_layers.communes(engine, province="04")
    mine = layer.loc[layer["code"] == "01273"].iloc[0]
    assert mine.geometry.equals(square) and mine["population"] == 41_000


def test_province_boundary(engine: Engine, tmp_path: Path) -> None:
    bundled = boundary_layers.provinces().set_index("code").geometry
    path = _polygon_file(
        tmp_path, [("4", bundled["04"].buffer(0.001), 573_000), ("99", bundled["04"], None)]
    )
    report = import_file(engine, path, Options(kind="provinces"))
    assert report.accepted == 1
    assert [r.reason for r in report.rejected] == ["code: unknown 2025 province code (got '99')"]
    (row,) = _rows(engine, boundaries)
    assert (row["level"], row["code"]) == ("province", "04")  # "4" read as the code 04


def test_nothing_accepted_stores_nothing(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "sai.csv"
    path.write_text("id,name,lat,lon\nX-1,Thôn X,10.0,100.0\nX-2,,22.94,105.63\n", encoding="utf-8")
    with pytest.raises(
        NothingAccepted, match=r"none of 2 rows could be imported as hamlets"
    ) as exc:
        import_file(engine, path, Options(kind="hamlets"))
    assert [r.reason for r in exc.value.report.rejected] == [
        "geometry: outside Vietnam (lon 100.00000, lat 10.00000)",
        "name: empty",
    ]
    assert _count(engine, geodata_imports) == 0


def test_unreadable_inputs_say_why(engine: Engine, tmp_path: Path) -> None:
    no_coords = tmp_path / "thon.csv"
    no_coords.write_text("id,name\nA,Thôn A\n", encoding="utf-8")
    with pytest.raises(
        GeodataError, match=r"no coordinate columns: .* the file has \['id', 'name'\]"
    ):
        import_file(engine, no_coords, Options(kind="hamlets"))
    odd = tmp_path / "thon.kml"
    odd.write_text("<kml/>", encoding="utf-8")
    with pytest.raises(GeodataError, match=r"unknown file type '.kml'"):
        import_file(engine, odd, Options(kind="hamlets"))
    with pytest.raises(ValidationError, match=r"--lat-column: no such column"):
        import_file(engine, DATA / "operator_sites.csv", Options(kind="sites"), lat_column="vd")
    with pytest.raises(ValidationError, match=r"KIND: expected one of"):
        import_file(engine, HAMLETS, Options(kind="villages"))
    with pytest.raises(GeodataError, match=r"OpenCelliD export holds cells: import it as `sites`"):
        import_file(engine, DATA / "opencellid_452.csv", Options(kind="hamlets"))
    with pytest.raises(ValidationError, match=r"--province: unknown"):
        import_file(engine, HAMLETS, Options(kind="hamlets", province="03"))


def test_dry_run_and_column_overrides(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "thon.csv"
    path.write_text(
        "Mã,Tên gọi,Mã xã,Nhân khẩu,Vĩ độ,Kinh độ\nT-1,Thôn Nà Pồng,01321,300,22.9455,105.6335\n",
        encoding="utf-8",
    )
    options = Options(kind="hamlets", columns={"name": "Tên gọi"})
    report = import_file(engine, path, options, dry_run=True)
    assert report.accepted == 1 and report.import_id is None and _count(engine, hamlets) == 0
    import_file(engine, path, options)
    (row,) = _rows(engine, hamlets)
    assert (row["id"], row["name"], row["population"]) == ("T-1", "Thôn Nà Pồng", 300)


def test_excel_semicolon_csv_with_bom_and_decimal_commas(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    """Excel in a vi-VN locale saves "CSV UTF-8" with a byte-order mark, ';' between fields and
    decimal commas; hamlets and sites import from it as from a comma-separated file."""
    hamlets_csv = tmp_path / "thon.csv"
    hamlets_csv.write_text(
        "\ufeffid;name;commune_code;population;lat;lon\n"
        "CB-001;Bản Nà Rị;01290;360;22,8215;105,544\n"
        '"CB-002";"Thôn Nà Pàn; xóm trên";01290;125;22,8221;105,5447\n',
        encoding="utf-8",
    )
    report = import_file(sqlite_engine, hamlets_csv, Options(kind="hamlets", province="04"))
    assert (report.accepted, report.total, report.rejected) == (2, 2, [])
    stored = {r["id"]: r for r in _rows(sqlite_engine, hamlets)}
    assert stored["CB-002"]["name"] == "Thôn Nà Pàn; xóm trên"
    assert (stored["CB-001"]["lat"], stored["CB-001"]["lon"]) == (22.8215, 105.544)
    assert stored["CB-001"]["population"] == 360

    sites_csv = tmp_path / "tram.csv"
    text = (DATA / "operator_sites.csv").read_text(encoding="utf-8")
    sites_csv.write_text(
        "\ufeff" + "\n".join(line.replace(",", ";") for line in text.splitlines()) + "\n",
        encoding="utf-8",
    )
    semicolons = import_file(sqlite_engine, sites_csv, Options(kind="sites"))
    commas = import_file(
        sqlite_engine, DATA / "operator_sites.csv", Options(kind="sites"), dry_run=True
    )
    assert semicolons.total == commas.total > 0 and semicolons.accepted == commas.accepted


def test_a_csv_saved_in_the_windows_code_page_says_how_to_save_it(tmp_path: Path) -> None:
    path = tmp_path / "thon.csv"
    path.write_bytes("id;Tên thôn;lat;lon\nCB-1;Thôn Nà;22,8;105,5\n".encode("cp1258"))
    with pytest.raises(GeodataError, match=r"cannot read as UTF-8 text: .*save it as 'CSV UTF-8'"):
        read_table(path)
