"""Seeded map inputs inside the real communes of a province, for the map tests and benchmark.

Until ``lomsong.coverage.synth`` and the engine land, this makes what they will: hamlets at
random points inside each real commune polygon (more in larger communes), three-sector sites
clustered around commune centres, a classification by a plain log-distance model (covered,
weak, none by the default RSRP thresholds; outage where the nearest sector is down) and the
dead zones, the part of each commune farther than the model's no-signal radius from every site.
Everything is marked synthetic. It is test data, not a coverage model: the engine's
``classify`` replaces the model and ``synth`` the points once they exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.spatial import cKDTree

from lomsong.coverage.boundaries import communes as load_communes
from lomsong.coverage.model import (
    COVERED,
    METRIC_CRS,
    NONE,
    OUTAGE,
    RURAL,
    WEAK,
    Classification,
    Hamlets,
    Sectors,
    Thresholds,
    as_object,
)
from lomsong.maps.inputs import ProvinceCoverage

OPERATORS = ("viettel", "vinaphone", "mobifone")
SHARES = (0.45, 0.30, 0.25)
#: RSRP = A - B·log10(distance in km): -100 dBm at 3.2 km, -110 dBm (no signal) at 4.6 km
MODEL_A, MODEL_B = -70.0, 60.0
NO_SIGNAL_RADIUS_M = 4_640.0
PREFIXES = ("Thôn", "Bản", "Xóm")
SYLLABLES = (
    "Nà",
    "Khuổi",
    "Pác",
    "Lũng",
    "Cốc",
    "Bó",
    "Phja",
    "Slam",
    "Kéo",
    "Thin",
    "Mạ",
    "Hoi",
    "Luông",
    "Đon",
    "Sộc",
    "Giàng",
    "Tổng",
    "Nặm",
    "Pò",
    "Vằng",
    "Lạn",
    "Khau",
    "Roỏng",
    "Chang",
)


@dataclass
class SampleProvince:
    code: str
    communes: gpd.GeoDataFrame
    coverage: ProvinceCoverage


def sample_province(
    code: str = "04", *, hamlets: int = 1500, sectors: int = 1000, seed: int = 2026
) -> SampleProvince:
    """A province's real communes with seeded hamlets, sectors, statuses and dead zones."""
    rng = np.random.default_rng(seed)
    communes = load_communes(province=code)
    h = _hamlets(communes, hamlets, rng)
    s = _sectors(communes, sectors, rng)
    c = _classify(h, s, rng)
    zones = _dead_zones(communes, s)
    return SampleProvince(code, communes, ProvinceCoverage(h, s, c, zones, synthetic_sites=True))


def _points_in(polygon: shapely.Geometry, n: int, rng: np.random.Generator) -> np.ndarray:
    x0, y0, x1, y1 = polygon.bounds
    out: list[np.ndarray] = []
    have = 0
    while have < n:
        xy = rng.uniform((x0, y0), (x1, y1), size=(4 * n + 16, 2))
        inside = xy[shapely.contains_xy(polygon, xy[:, 0], xy[:, 1])]
        out.append(inside)
        have += len(inside)
    return np.concatenate(out)[:n]


def _hamlets(communes: gpd.GeoDataFrame, n: int, rng: np.random.Generator) -> Hamlets:
    area = communes["area_km2"].to_numpy(dtype=float)
    counts = 1 + rng.multinomial(n - len(communes), area / area.sum())
    points, codes, names = [], [], []
    for code, geom, k in zip(communes["code"], communes.geometry, counts, strict=True):
        points.append(_points_in(geom, int(k), rng))
        codes += [code] * int(k)
        for j in range(int(k)):
            a, b = rng.choice(len(SYLLABLES), 2, replace=False)
            prefix = PREFIXES[int(rng.integers(len(PREFIXES)))]
            names.append(f"{prefix} {SYLLABLES[a]} {SYLLABLES[b]} {j + 1}")
    xy = np.concatenate(points)
    province = str(communes["province_code"].iloc[0])
    ids = [f"SYN-{province}-{c}-{i:03d}" for i, c in enumerate(codes)]
    return Hamlets(
        ids=as_object(ids),
        names=as_object(names),
        commune_code=as_object(codes),
        province_code=as_object([province] * n),
        lon=xy[:, 0].copy(),
        lat=xy[:, 1].copy(),
        population=rng.integers(60, 900, n).astype(np.int64),
        has_grid_power=rng.random(n) > 0.03,
        environment=np.full(n, RURAL, dtype=np.int8),
        synthetic=np.ones(n, dtype=bool),
    )


def _sectors(communes: gpd.GeoDataFrame, n: int, rng: np.random.Generator) -> Sectors:
    n_sites = n // 3
    centres = communes.to_crs(METRIC_CRS).geometry.representative_point()
    cx, cy = centres.x.to_numpy(), centres.y.to_numpy()
    pick = rng.integers(len(communes), size=n_sites)
    sx = cx[pick] + rng.normal(0, 4_000, n_sites)
    sy = cy[pick] + rng.normal(0, 4_000, n_sites)
    lonlat = gpd.GeoSeries(gpd.points_from_xy(sx, sy), crs=METRIC_CRS).to_crs("EPSG:4326")
    op = rng.choice(len(OPERATORS), n_sites, p=SHARES)
    # three sectors per site, and the remainder as omni cells of the first sites
    site = np.concatenate([np.repeat(np.arange(n_sites), 3), np.arange(n - 3 * n_sites)])
    sector_no = np.concatenate([np.tile([1, 2, 3], n_sites), np.full(n - 3 * n_sites, 4)])
    offset = rng.uniform(0, 120, n_sites)
    azimuth = np.where(sector_no == 4, np.nan, (offset[site] + 120 * (sector_no - 1)) % 360)
    site_ids = [f"CB{i:04d}" for i in site]
    ops = [OPERATORS[op[i]] for i in site]
    band = np.where(rng.random(n) < 0.8, 1800.0, 900.0)
    return Sectors(
        ids=as_object([f"{o}:{s}:{c}" for o, s, c in zip(ops, site_ids, sector_no, strict=True)]),
        site_id=as_object(site_ids),
        operator=as_object(ops),
        radio=as_object(["lte"] * n),
        band_mhz=band,
        lon=lonlat.x.to_numpy()[site],
        lat=lonlat.y.to_numpy()[site],
        height_m=np.full(n, 30.0),
        azimuth_deg=azimuth,
        beamwidth_deg=np.where(np.isnan(azimuth), np.nan, 65.0),
        power_dbm=np.full(n, 43.0),
        range_m=np.full(n, np.nan),
        active=rng.random(n) > 0.03,
    )


def _metric(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    pts = gpd.GeoSeries(gpd.points_from_xy(lon, lat), crs="EPSG:4326").to_crs(METRIC_CRS)
    return np.column_stack([pts.x.to_numpy(), pts.y.to_numpy()])


def _classify(h: Hamlets, s: Sectors, rng: np.random.Generator) -> Classification:
    t = Thresholds()
    n, k = len(h), len(OPERATORS)
    hxy, sxy = _metric(h.lon, h.lat), _metric(s.lon, s.lat)
    rsrp = np.full((n, k), np.nan, dtype=np.float32)
    serving = np.full((n, k), -1, dtype=np.int64)
    status = np.full((n, k), NONE, dtype=np.int8)
    for j, op in enumerate(OPERATORS):
        idx = np.flatnonzero(s.operator == op)
        dist, nearest = cKDTree(sxy[idx]).query(hxy)
        value = MODEL_A - MODEL_B * np.log10(np.maximum(dist, 100.0) / 1000.0)
        value += rng.normal(0, 4, n)
        reach = value >= -125.0
        rsrp[reach, j] = value[reach]
        serving[reach, j] = idx[nearest[reach]]
        status[:, j] = np.where(
            value >= t.covered_dbm, COVERED, np.where(value >= t.none_dbm, WEAK, NONE)
        )
        down = reach & ~s.active[np.maximum(serving[:, j], 0)] & (status[:, j] != NONE)
        status[down, j] = OUTAGE
    # the best live status; outage when every operator that served the hamlet is down
    served = status != NONE
    live = np.where(served & (status != OUTAGE), status, 99).min(axis=1)
    overall = np.where(live < 99, live, np.where(served.any(axis=1), OUTAGE, NONE))
    # the best operator is the strongest one not in outage
    live_rsrp = np.where(status == OUTAGE, np.nan, rsrp)
    best = np.where(
        np.isnan(live_rsrp).all(axis=1), -1, np.nan_to_num(live_rsrp, nan=-999).argmax(axis=1)
    )
    return Classification(
        operators=OPERATORS,
        rsrp_dbm=rsrp,
        measured=rng.random((n, k)) < 0.02,
        serving=serving,
        status=status,
        overall=overall.astype(np.int8),
        best_operator=best.astype(np.int64),
    )


def _dead_zones(communes: gpd.GeoDataFrame, s: Sectors) -> gpd.GeoDataFrame:
    metric = communes.to_crs(METRIC_CRS)
    sites = gpd.GeoSeries(gpd.points_from_xy(*_metric(s.lon, s.lat).T), crs=METRIC_CRS)
    reach = shapely.union_all(sites[s.active].buffer(NO_SIGNAL_RADIUS_M, quad_segs=8).to_numpy())
    left = metric.geometry.difference(reach)
    keep = ~left.is_empty
    zones = gpd.GeoDataFrame(
        {
            "code": metric["code"][keep].to_numpy(),
            "province_code": metric["province_code"][keep].to_numpy(),
            "area_km2": (left[keep].area / 1e6).to_numpy(),
        },
        geometry=left[keep].to_numpy(),
        crs=METRIC_CRS,
    )
    return zones.to_crs("EPSG:4326").reset_index(drop=True)


def status_counts(c: Classification) -> pd.Series:
    """How many hamlets have each overall status (for printing)."""
    return pd.Series(c.overall).value_counts().sort_index()
