"""Dead-zone polygons on hand-checked geometry."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pytest
import shapely

from lomsong.coverage import propagation as prop
from lomsong.coverage.deadzones import dead_zones
from lomsong.coverage.model import METRIC_CRS, RURAL, CoverageSettings
from lomsong.errors import ValidationError
from tests.coverage import scene

# The hand-checked levels are the formulas' medians: no shadowing margin.
SETTINGS = CoverageSettings(shadow_margin_db=0.0)


def squares(*specs: tuple[float, float, float, str]) -> gpd.GeoDataFrame:
    """Square communes (centre east, centre north, side, type), metres from the scene origin."""
    polygons = []
    for east, north, side, _ in specs:
        x, y = scene.ORIGIN_X + east, scene.ORIGIN_Y + north
        box = shapely.box(x - side / 2, y - side / 2, x + side / 2, y + side / 2)
        polygons.append(shapely.segmentize(box, 100.0))
    frame = gpd.GeoDataFrame(
        {
            "code": [f"0{1000 + i}" for i in range(len(specs))],
            "province_code": ["04"] * len(specs),
            "type": [spec[3] for spec in specs],
        },
        geometry=polygons,
        crs=METRIC_CRS,
    )
    return frame.to_crs("EPSG:4326")


def radius_by_bisection(power: float, gain: float, freq: float = 1800.0) -> float:
    """Where the level by the propagation formulas falls to −110 dBm, found numerically."""
    lo, hi = 50.0, 60_000.0
    for _ in range(80):
        mid = (lo + hi) / 2
        loss = prop.path_loss_db(
            np.array([freq]), np.array([30.0]), np.array([mid / 1000]), np.array([RURAL], np.int8)
        )[0]
        level = power - prop.RE_OFFSET_DB[2] + gain - loss
        lo, hi = (mid, hi) if level > -110.0 else (lo, mid)
    return lo


def circle_72(radius_m: float) -> float:
    """Area (km²) of the 72-gon the footprint is drawn as."""
    return 0.5 * 72 * radius_m**2 * math.sin(math.radians(5)) / 1e6


def test_one_omni_site_with_a_range_in_a_square_commune() -> None:
    communes = squares((0, 0, 10_000, "Xã"))
    sectors = scene.sectors([{"at": (0, 0), "power_dbm": np.nan, "range_m": 3000.0}])
    zones = dead_zones(communes, sectors, SETTINGS)
    assert zones.columns.tolist() == ["code", "province_code", "area_km2", "geometry"]
    expected = 100.0 - circle_72(3000.0)
    assert zones["area_km2"].iloc[0] == pytest.approx(expected, abs=0.02)
    assert expected == pytest.approx(100.0 - math.pi * 9.0, abs=0.05)  # a circle, near enough
    assert zones.crs == "EPSG:4326"
    zone = zones.geometry.iloc[0]
    assert not zone.contains(shapely.Point(scene.lonlat(0, 2900)))
    assert zone.contains(shapely.Point(scene.lonlat(0, 3100)))
    assert zone.contains(shapely.Point(scene.lonlat(4900, 4900)))


def test_powered_omni_site_radius_matches_the_propagation_formulas() -> None:
    radius = radius_by_bisection(46.0, 11.0)
    assert 5_000 < radius < 9_000
    communes = squares((0, 0, 20_000, "Xã"))
    zones = dead_zones(communes, scene.sectors([{"at": (0, 0)}]), SETTINGS)
    assert zones["area_km2"].iloc[0] == pytest.approx(400.0 - circle_72(radius), rel=1e-3)


def test_a_sector_leaves_its_back_uncovered() -> None:
    communes = squares((0, 0, 20_000, "Xã"))
    sector = scene.sectors([{"at": (0, 0), "azimuth_deg": 0.0}])
    zone = dead_zones(communes, sector, SETTINGS).geometry.iloc[0]
    assert not zone.contains(shapely.Point(scene.lonlat(0, 6000)))
    assert zone.contains(shapely.Point(scene.lonlat(0, -3000)))
    assert zone.contains(shapely.Point(scene.lonlat(6000, 0)))


def test_wards_are_drawn_in_their_own_class_and_far_communes_are_untouched() -> None:
    communes = squares((0, 0, 20_000, "Xã"), (0, 0, 20_000, "Phường"), (100_000, 0, 10_000, "Xã"))
    zones = dead_zones(communes, scene.sectors([{"at": (0, 0)}]), SETTINGS)
    rural, ward, far = zones["area_km2"].tolist()
    assert ward > rural  # suburban loss is higher: a smaller footprint
    assert far == pytest.approx(100.0, rel=1e-3)
    nothing = dead_zones(communes, scene.sectors([]), SETTINGS)
    assert nothing["area_km2"].tolist() == pytest.approx([400.0, 400.0, 100.0], rel=1e-3)


def test_two_operators_together_cover_more_than_either() -> None:
    communes = squares((0, 0, 30_000, "Xã"))
    a = {"at": (-7000, 0)}
    b = {"at": (7000, 0), "operator": "mobifone"}
    one = dead_zones(communes, scene.sectors([a]), SETTINGS)["area_km2"].iloc[0]
    both = dead_zones(communes, scene.sectors([a, b]), SETTINGS)["area_km2"].iloc[0]
    assert both < one - 50


def test_communes_without_crs_or_columns_are_refused() -> None:
    communes = squares((0, 0, 1000, "Xã"))
    with pytest.raises(ValidationError, match="crs"):
        dead_zones(communes.set_crs(None, allow_override=True), scene.sectors([]), SETTINGS)
    with pytest.raises(ValidationError, match="type"):
        dead_zones(communes.drop(columns="type"), scene.sectors([]), SETTINGS)
