"""VN-2000 inputs are moved by the datum shift (about 220 m near Hà Nội), checked against an
independent numpy Helmert of Decision 05/2007/QĐ-BTNMT, for geographic, UTM and TM-3 inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pyproj import CRS, Transformer
from sqlalchemy import Engine, select

from lomsong.coverage.crs import VN2000_CODES, is_vn2000, parse_crs, to_wgs84
from lomsong.coverage.importing import import_file
from lomsong.coverage.validate import Options
from lomsong.errors import ValidationError
from lomsong.storage.schema import field_measurements, hamlets
from tests.coverage.geodata_helpers import DATA, metres_between, vn2000_to_wgs84

# VN-2000 control points: Hoàn Kiếm (Hà Nội), Thục Phán area and Bảo Lạc (Cao Bằng), Cà Mau
POINTS = np.array([[105.8542, 21.0285], [106.2490, 22.6870], [105.6371, 22.9387], [105.15, 9.18]])
TOLERANCE_DEG = 1e-8  # about 1 mm


def _projected(code: int, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """VN-2000 lon/lat → the CRS's easting/northing: the map projection alone, no datum."""
    crs = CRS.from_epsg(code)
    forward = Transformer.from_crs(crs.geodetic_crs, crs, always_xy=True)
    x, y = forward.transform(lon, lat)
    return np.asarray(x), np.asarray(y)


def test_the_hanoi_point_moves_about_220_m() -> None:
    lon, lat = POINTS[:1, 0], POINTS[:1, 1]
    got_lon, got_lat = to_wgs84(lon, lat, parse_crs("EPSG:4756"))
    want_lon, want_lat = vn2000_to_wgs84(lon, lat)
    assert abs(got_lon[0] - want_lon[0]) < TOLERANCE_DEG
    assert abs(got_lat[0] - want_lat[0]) < TOLERANCE_DEG
    shift = metres_between(lon, lat, got_lon, got_lat)[0]
    assert 215.0 < shift < 230.0, shift
    # east and south: WGS 84 coordinates of a VN-2000 point are larger in lon, smaller in lat
    assert got_lon[0] > lon[0] and got_lat[0] < lat[0]


@pytest.mark.parametrize("code", VN2000_CODES)
def test_every_vn2000_crs_gets_the_helmert_shift(code: int) -> None:
    crs = CRS.from_epsg(code)
    assert is_vn2000(crs)
    lon, lat = POINTS[:, 0], POINTS[:, 1]
    x, y = (lon, lat) if code == 4756 else _projected(code, lon, lat)
    got_lon, got_lat = to_wgs84(x, y, crs)
    want_lon, want_lat = vn2000_to_wgs84(lon, lat)
    np.testing.assert_allclose(got_lon, want_lon, atol=TOLERANCE_DEG, rtol=0)
    np.testing.assert_allclose(got_lat, want_lat, atol=TOLERANCE_DEG, rtol=0)
    shifts = metres_between(lon, lat, got_lon, got_lat)
    assert np.all((shifts > 150) & (shifts < 300)), shifts


def test_pyprojs_own_choice_agrees_where_it_has_the_transformation() -> None:
    """What PROJ does by itself: it picks EPSG:6960 (the same parameters), not a ballpark."""
    t = Transformer.from_crs("EPSG:4756", "EPSG:4326", always_xy=True)
    assert "ballpark" not in t.description.lower()
    lon, lat = POINTS[:, 0], POINTS[:, 1]
    their_lon, their_lat = t.transform(lon, lat)
    ours_lon, ours_lat = to_wgs84(lon, lat, parse_crs(4756))
    inland = POINTS[:, 1] > 12  # the Mekong delta blocks have a local (EPSG:5194) alternative
    np.testing.assert_allclose(np.asarray(their_lon)[inland], ours_lon[inland], atol=1e-8)
    np.testing.assert_allclose(np.asarray(their_lat)[inland], ours_lat[inland], atol=1e-8)


def test_wgs84_is_left_alone_and_a_datum_without_transformation_is_refused() -> None:
    lon, lat = POINTS[:, 0], POINTS[:, 1]
    same_lon, same_lat = to_wgs84(lon, lat, parse_crs("4326"))
    assert np.array_equal(same_lon, lon) and np.array_equal(same_lat, lat)
    with pytest.raises(ValidationError, match=r"--crs: PROJ knows no datum transformation"):
        to_wgs84(lon, lat, parse_crs("+proj=longlat +ellps=intl +no_defs +type=crs"))
    with pytest.raises(
        ValidationError, match=r"--crs: not a coordinate reference system .*'EPSG:0'"
    ):
        parse_crs("EPSG:0")


def _stored(engine: Engine, ids: list[str]) -> dict[str, tuple[float, float, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(hamlets.c.id, hamlets.c.lon, hamlets.c.lat, hamlets.c.commune_code).where(
                hamlets.c.id.in_(ids)
            )
        ).all()
    return {r.id: (r.lon, r.lat, r.commune_code) for r in rows}


def test_import_of_tm3_projected_hamlets(engine: Engine) -> None:
    report = import_file(
        engine, DATA / "vn2000_tm3_caobang.csv", Options(kind="hamlets", crs="EPSG:9210")
    )
    assert report.accepted == 2 and not report.rejected
    assert report.crs == "EPSG:9210"
    stored = _stored(engine, ["CB-TM3-1", "CB-TM3-2"])
    # the file's eastings/northings were projected from these VN-2000 coordinates
    vn_lon, vn_lat = np.array([106.2490, 105.6371]), np.array([22.6870, 22.9387])
    want_lon, want_lat = vn2000_to_wgs84(vn_lon, vn_lat)
    for i, hid in enumerate(["CB-TM3-1", "CB-TM3-2"]):
        lon, lat, _ = stored[hid]
        assert abs(lon - want_lon[i]) < 1e-7 and abs(lat - want_lat[i]) < 1e-7
    assert stored["CB-TM3-1"][2] == "01279" and stored["CB-TM3-2"][2] == "01321"


def test_import_of_utm_hamlet_near_hanoi_moves_220_m(engine: Engine) -> None:
    report = import_file(engine, DATA / "vn2000_utm_hanoi.csv", Options(kind="hamlets", crs="3405"))
    assert report.accepted == 1
    lon, lat, commune = _stored(engine, ["HN-UTM-1"])["HN-UTM-1"]
    want_lon, want_lat = vn2000_to_wgs84(np.array([105.8542]), np.array([21.0285]))
    assert abs(lon - want_lon[0]) < 1e-7 and abs(lat - want_lat[0]) < 1e-7
    shift = metres_between(
        np.array([105.8542]), np.array([21.0285]), np.array([lon]), np.array([lat])
    )
    assert 215.0 < shift[0] < 230.0
    assert commune == "00070"  # Phường Hoàn Kiếm, found from the shifted point


def test_import_of_geographic_vn2000_field_readings(engine: Engine) -> None:
    report = import_file(engine, DATA / "vn2000_field_hanoi.csv", Options(kind="field", crs="4756"))
    assert report.accepted == 2
    assert [(r.row, r.reason) for r in report.rejected] == [
        (4, "RSRP: must be ≤ -20 dBm (got '-5')")
    ]
    with engine.connect() as conn:
        rows = conn.execute(
            select(field_measurements.c.lon, field_measurements.c.lat).order_by(
                field_measurements.c.id
            )
        ).all()
    want_lon, want_lat = vn2000_to_wgs84(
        np.array([105.8542, 105.8550]), np.array([21.0285, 21.0290])
    )
    np.testing.assert_allclose([r.lon for r in rows], want_lon, atol=1e-7, rtol=0)
    np.testing.assert_allclose([r.lat for r in rows], want_lat, atol=1e-7, rtol=0)


def test_projected_numbers_without_crs_are_refused(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"--crs: the coordinates look projected"):
        import_file(engine, DATA / "vn2000_tm3_caobang.csv", Options(kind="hamlets"))
