"""Dead-zone polygons: the part of each commune outside every operator's coverage footprint.

A sector's footprint is the area where its predicted level reaches ``none_dbm``: for each of
``BEARINGS`` directions the radius where the level (``links`` formula, with the horizontal
pattern toward that direction) falls to ``none_dbm``, joined into a star-shaped polygon around
the mast. It depends on the environment class, so footprints are drawn in the class of the
commune they are cut from (wards: urban or suburban; xã, đặc khu: rural). Footprints of every
sector, of every operator and whatever its status, are united per commune with shapely and
taken away from the commune's polygon; the area is measured in EPSG:32648 (UTM 48N: within
0.5 % of the true area over Vietnam). Measured readings do not enter: this is the predicted
picture, with no terrain (see ``propagation``).
"""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import shapely

from lomsong.coverage.links import LinkBudget, link_budget
from lomsong.coverage.model import (
    ENVIRONMENTS,
    METRIC_CRS,
    CoverageSettings,
    FloatArray,
    IntArray,
    Sectors,
    environment_codes,
)
from lomsong.coverage.propagation import FRONT_TO_BACK_DB, MIN_DISTANCE_M
from lomsong.errors import ValidationError

# Directions sampled per footprint (every 5°): a circle drawn so loses 0.13 % of its area.
BEARINGS = 72
# Footprint radius where a sector reaches nobody (keeps each footprint a simple polygon), m.
_MIN_RADIUS_M = 1.0
DEAD_ZONE_COLUMNS = ["code", "province_code", "area_km2", "geometry"]


def dead_zones(
    communes_gdf: gpd.GeoDataFrame, sectors: Sectors, settings: CoverageSettings
) -> gpd.GeoDataFrame:
    """The part of each commune that no sector of any operator reaches at ``none_dbm``.

    Parameters
    ----------
    communes_gdf
        Communes with code, province_code, type and polygon geometry, in any set CRS.
    sectors
        Every sector (lon/lat in WGS84); planned ones should not be loaded.
    settings
        Thresholds and the defaults for sectors lacking power, height or beamwidth.

    Returns
    -------
    GeoDataFrame
        One row per commune: code, province_code, area_km2 of the dead zone and its
        (multi)polygon in EPSG:4326 (empty where the commune is wholly covered).

    Examples
    --------
    >>> # zones = dead_zones(boundaries.communes(province="04"), sectors, CoverageSettings())
    >>> # zones.sort_values("area_km2", ascending=False).head()
    """
    missing = [c for c in ("code", "province_code", "type") if c not in communes_gdf.columns]
    if missing:
        raise ValidationError("communes_gdf", missing, "is missing these columns")
    if communes_gdf.crs is None:
        raise ValidationError("communes_gdf.crs", None, "must be set")
    communes = communes_gdf.reset_index(drop=True).to_crs(METRIC_CRS)
    polygons = communes.geometry.to_numpy()
    environment = environment_codes(
        communes["type"].to_numpy(dtype=object), communes["province_code"].to_numpy(dtype=object)
    )
    budget = link_budget(sectors, settings)
    masts = shapely.points(budget.x, budget.y)
    reach = budget.reach_m
    # (sector, commune) pairs whose reach touches the commune
    live = np.flatnonzero(reach > 0)
    tree = shapely.STRtree(polygons)
    pairs = tree.query(masts[live], predicate="dwithin", distance=reach[live])
    sector_of, commune_of = live[pairs[0]], pairs[1]

    footprints = np.empty((len(ENVIRONMENTS), len(budget)), dtype=object)
    for env in np.unique(environment[commune_of]).tolist():
        needed = np.unique(sector_of[environment[commune_of] == env])
        footprints[env, needed] = _footprints(budget, needed, env, settings)

    dead = polygons.copy()
    order = np.argsort(commune_of, kind="stable")
    commune_sorted = commune_of[order]
    bounds = np.searchsorted(commune_sorted, np.arange(len(communes) + 1))
    for i in range(len(communes)):
        mine = sector_of[order[bounds[i] : bounds[i + 1]]]
        if mine.size:
            covered = shapely.union_all(footprints[environment[i], mine])
            dead[i] = shapely.difference(polygons[i], covered)
    out = gpd.GeoDataFrame(
        {
            "code": communes["code"].to_numpy(),
            "province_code": communes["province_code"].to_numpy(),
            "area_km2": shapely.area(dead) / 1e6,
        },
        geometry=gpd.GeoSeries(dead, crs=METRIC_CRS).to_crs("EPSG:4326").to_numpy(),
        crs="EPSG:4326",
    )
    return out[DEAD_ZONE_COLUMNS]


def footprint_radii(
    budget_intercept: FloatArray,
    budget_free_space: FloatArray,
    slope: FloatArray,
    pattern: FloatArray,
    none_dbm: float,
    max_reach_m: float,
) -> FloatArray:
    """Distance (m) at which ``min(intercept − slope·ld, free_space − 20·ld) − pattern`` falls to
    ``none_dbm``; 0 where it is below ``none_dbm`` already at ``MIN_DISTANCE_M``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ld = np.minimum(
            (budget_intercept - pattern - none_dbm) / slope,
            (budget_free_space - pattern - none_dbm) / 20.0,
        )
    radius = np.where(ld >= math.log10(MIN_DISTANCE_M / 1000.0), 1000.0 * 10.0**ld, 0.0)
    return np.asarray(np.minimum(radius, max_reach_m))


def _footprints(
    budget: LinkBudget, sectors: IntArray, env: int, settings: CoverageSettings
) -> np.ndarray:
    """Footprint polygons of some sectors in one environment class (metric coordinates)."""
    bearing = np.arange(BEARINGS) * (360.0 / BEARINGS)
    az = budget.azimuth[sectors][:, None]
    off = np.abs((bearing[None, :] - az + 180.0) % 360.0 - 180.0)
    pattern = np.minimum(12.0 * (off / budget.beamwidth[sectors][:, None]) ** 2, FRONT_TO_BACK_DB)
    pattern = np.where(np.isnan(az), 0.0, pattern)
    radius = footprint_radii(
        budget.intercept[sectors, env][:, None],
        budget.free_space[sectors, env][:, None],
        budget.slope[sectors][:, None],
        pattern,
        settings.thresholds.none_dbm,
        settings.max_reach_m,
    )
    radius = np.maximum(radius, _MIN_RADIUS_M)
    theta = np.radians(bearing)[None, :]
    xs = budget.x[sectors][:, None] + radius * np.sin(theta)
    ys = budget.y[sectors][:, None] + radius * np.cos(theta)
    # clockwise bearings: reverse them into counter-clockwise rings
    rings = np.stack([xs[:, ::-1], ys[:, ::-1]], axis=-1)
    return np.asarray(shapely.polygons(rings))
