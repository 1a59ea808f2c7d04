"""Synthetic hamlets and sites on the real commune polygons, where no open data exists.

Nothing here is real but the communes: their 2025 polygons, type and, for the 567 communes of
the seven northern mountain provinces that have it, their population. Every row says so twice:
ids start with ``SYN-`` and the ``synthetic`` column is True (names are left clean, "Xóm Nà
Lìn", since exports and maps carry the column). The same seed always gives the same rows, and a
commune's rows depend only on the seed and its code, so a province cut from ``national(seed)``
equals ``hamlets(province_communes, seed=seed)``.

Hamlets
    One per ~380 people where population is real (Cao Bằng: ~1,500 hamlets). Elsewhere the
    population is estimated from area and type (``DENSITY_BY_TYPE``: xã 250, phường 1,500,
    đặc khu 150 people/km², so wards are denser) and lowland hamlets are bigger, one per ~2,500
    people; together about 64,000 hamlets nationally, the DESIGN §1 figure. A third are
    clustered round the commune's centre, the rest spread over its polygon. Populations are
    log-normal shares that add up exactly to the commune's. Grid power is missing more often in
    sparse communes and far from the centre, never in wards.
Sites
    About one site per 2,900 people (2,400 in wards) plus one per 60 km² (coverage), split
    between operators by market share (``SITE_SHARE``: Viettel most); so towns and wards are
    dense and high, empty communes sparse. Sites sit round the commune centre or anywhere in it.
    92 % have three sectors (azimuths 0/120/240° turned together by up to ±15°, 65° beamwidth),
    the rest one omnidirectional cell. Radios are mostly LTE (1800, 900, 2100, 2600 MHz), some
    UMTS 2100, NR 2600 (Vietnam's 5G band below 2.7 GHz) and a little GSM 900/1800 (2G is being
    switched off). About 850 sectors for Cao Bằng, 120,000 nationally. With the engine's 8 dB
    shadowing margin about 3 % of Cao Bằng's hamlets are then without signal and 20 % weak, near
    what Tuyên Quang reports (2.4 % and 4.8 % of its hamlets; its weak share is lower). Heights
    30–45 m in xã, 25–35 m in wards: with the engine's model a hamlet within 500 m of a site is
    then covered in the rural and suburban classes (all of Cao Bằng), though not always in a
    city's urban wards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely

from lomsong.coverage import boundaries
from lomsong.coverage.model import DEFAULT_OPERATORS, Operator, commune_kind
from lomsong.errors import ValidationError
from lomsong.storage.schema import hamlets as hamlets_table
from lomsong.storage.schema import sites as sites_table

PEOPLE_PER_HAMLET = 380.0
PEOPLE_PER_HAMLET_ESTIMATED = 2_500.0
DENSITY_BY_TYPE = {"xã": 250.0, "phường": 1_500.0, "đặc khu": 150.0}
PEOPLE_PER_SITE = 2_900.0
# Towns are built out for capacity, and their wards' loss is the suburban or urban class's, far
# above the quasi-open land of a xã: a ward gets a site per this many people instead.
PEOPLE_PER_SITE_WARD = 2_400.0
KM2_PER_SITE = 60.0
SITE_SHARE = {
    "viettel": 0.45,
    "vinaphone": 0.27,
    "mobifone": 0.21,
    "vietnamobile": 0.05,
    "gmobile": 0.02,
}
OTHER_OPERATOR_SHARE = 0.02
OMNI_SHARE = 0.08
# radio, band MHz, probability, total power dBm
LAYERS = (
    ("lte", 1800.0, 0.48, 46.0),
    ("lte", 900.0, 0.14, 46.0),
    ("lte", 2100.0, 0.13, 46.0),
    ("lte", 2600.0, 0.09, 46.0),
    ("gsm", 900.0, 0.015, 43.0),
    ("gsm", 1800.0, 0.005, 43.0),
    ("umts", 2100.0, 0.08, 43.0),
    ("nr", 2600.0, 0.05, 53.0),
)
SYNTH_SOURCE = "synthetic"

HAMLET_COLUMNS = [c.name for c in hamlets_table.columns]
SITE_COLUMNS = [c.name for c in sites_table.columns]
_NEEDED = ("code", "province_code", "type", "area_km2", "population", "geometry")

# Settlement words: Tày–Nùng–Thái names in the mountain provinces, Sino-Vietnamese elsewhere.
_MOUNTAIN_PREFIX = {"04": "Xóm", "11": "Bản", "12": "Bản", "14": "Bản"}
_MOUNTAIN = frozenset({"04", "08", "11", "12", "14", "15", "20"})
_FIRST = ("Nà", "Khuổi", "Pác", "Bó", "Lũng", "Phiêng", "Cốc", "Nặm", "Pò", "Khau", "Cò", "Ta")
_SECOND = (
    "Lìn", "Mỵ", "Slam", "Pẻn", "Rằng", "Cáy", "Mò", "Hoan", "Lạn", "Tổng", "Đoỏng", "Vài",
    "Sa", "Nưa", "Luông", "Mạ",
)  # fmt: skip
_LOWLAND = (
    "Đông", "Tây", "Nam", "Bắc", "Thượng", "Hạ", "Trung", "An", "Phú", "Hòa", "Lạc", "Yên",
    "Phúc", "Thịnh", "Vĩnh", "Tân", "Mỹ", "Hưng", "Xuân", "Đại",
)  # fmt: skip


def hamlets(
    communes_gdf: gpd.GeoDataFrame, *, seed: int, updated_at: float = 0.0
) -> gpd.GeoDataFrame:
    """Synthetic hamlets inside the given communes, with the ``hamlets`` table's columns.

    Parameters
    ----------
    communes_gdf
        Communes as ``boundaries.communes()`` gives them (code, province_code, type, area_km2,
        population, geometry).
    seed
        Same seed, same hamlets.
    updated_at
        Written to every row (Unix seconds).

    Returns
    -------
    GeoDataFrame
        EPSG:4326, geometry a Point at (lon, lat), ``synthetic`` True, version 1.

    Examples
    --------
    >>> from lomsong.coverage import boundaries
    >>> frame = hamlets(boundaries.communes(province="04"), seed=1)
    >>> 1_300 < len(frame) < 1_700, bool(frame["synthetic"].all())
    (True, True)
    """
    communes = _checked(communes_gdf)
    population = estimated_population(communes)
    counts = hamlet_counts(communes)
    parts: list[dict[str, Any]] = []
    rows = communes.itertuples(index=False)
    for row, pop, n in zip(rows, population.tolist(), counts.tolist(), strict=True):
        parts.append(_commune_hamlets(row, int(pop), n, _rng(seed, row.code, 0)))
    frame = _frame(parts, HAMLET_COLUMNS)
    frame["version"] = 1
    frame["import_id"] = None
    frame["retired_at"] = np.nan
    frame["updated_at"] = float(updated_at)
    frame["synthetic"] = True
    geometry = gpd.points_from_xy(frame["lon"], frame["lat"], crs="EPSG:4326")
    plain = [c for c in HAMLET_COLUMNS if c != "geometry"]
    out = gpd.GeoDataFrame(frame[plain], geometry=geometry, crs="EPSG:4326")
    return out[HAMLET_COLUMNS]


def sites(
    communes_gdf: gpd.GeoDataFrame,
    *,
    seed: int,
    operators: Sequence[Operator | str] = DEFAULT_OPERATORS,
    updated_at: float = 0.0,
) -> gpd.GeoDataFrame:
    """Synthetic sectors (one row per cell) with the ``sites`` table's columns.

    Examples
    --------
    >>> from lomsong.coverage import boundaries
    >>> frame = sites(boundaries.communes(province="04"), seed=1)
    >>> 800 < len(frame) < 1_200, frame["operator"].value_counts().index[0]
    (True, 'viettel')
    """
    communes = _checked(communes_gdf)
    keys = [op.key if isinstance(op, Operator) else str(op) for op in operators]
    if not keys:
        raise ValidationError("operators", keys, "must name at least one operator")
    share = np.array([SITE_SHARE.get(k, OTHER_OPERATOR_SHARE) for k in keys])
    share = share / share.sum()
    parts: list[dict[str, Any]] = []
    rows = communes.itertuples(index=False)
    for row, expected in zip(rows, expected_sites(communes).tolist(), strict=True):
        rng = _rng(seed, row.code, 1)
        counts = rng.poisson(expected * share)
        if counts.sum():
            parts.append(_commune_sites(row, keys, counts, rng))
    frame = _frame(parts, SITE_COLUMNS)
    frame["status"] = "active"
    frame["source"] = SYNTH_SOURCE
    frame["synthetic"] = True
    frame["import_id"] = None
    frame["range_m"] = np.nan
    frame["updated_at"] = float(updated_at)
    geometry = gpd.points_from_xy(frame["lon"], frame["lat"], crs="EPSG:4326")
    return gpd.GeoDataFrame(frame[SITE_COLUMNS], geometry=geometry, crs="EPSG:4326")


def national(seed: int) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """The national shape for benchmarks: (hamlets, sites) over all 3,321 bundled communes.

    Examples
    --------
    >>> # hamlets_gdf, sites_gdf = national(seed=1)  # ~64,000 and ~120,000 rows
    """
    communes = boundaries.communes()
    return hamlets(communes, seed=seed), sites(communes, seed=seed)


def estimated_population(communes: gpd.GeoDataFrame) -> pd.Series:
    """Real population where known, else area × ``DENSITY_BY_TYPE`` of the commune's type."""
    kinds = communes["type"].map(commune_kind)
    density = kinds.map(DENSITY_BY_TYPE).fillna(DENSITY_BY_TYPE["xã"])
    guess = (communes["area_km2"].astype(float) * density).round()
    real = communes["population"].astype("Float64")
    return real.fillna(guess).astype(float).clip(lower=1.0)


def hamlet_counts(communes: gpd.GeoDataFrame) -> npt.NDArray[np.int64]:
    """Hamlets per commune: one per ``PEOPLE_PER_HAMLET`` people where population is real, one
    per ``PEOPLE_PER_HAMLET_ESTIMATED`` where it is estimated; at least one."""
    population = estimated_population(communes).to_numpy()
    real = communes["population"].notna().to_numpy()
    per = np.where(real, PEOPLE_PER_HAMLET, PEOPLE_PER_HAMLET_ESTIMATED)
    return np.asarray(np.maximum(1, np.round(population / per)), dtype=np.int64)


def expected_sites(communes: gpd.GeoDataFrame) -> npt.NDArray[np.float64]:
    """Mean number of sites per commune, all operators together (each draw is Poisson)."""
    population = estimated_population(communes).to_numpy()
    area = communes["area_km2"].astype(float).to_numpy()
    ward = (communes["type"].map(commune_kind) == "phường").to_numpy()
    per = np.where(ward, PEOPLE_PER_SITE_WARD, PEOPLE_PER_SITE)
    return np.asarray(population / per + area / KM2_PER_SITE, dtype=np.float64)


def _checked(communes_gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    missing = [c for c in _NEEDED if c not in communes_gdf.columns]
    if missing:
        raise ValidationError("communes_gdf", missing, "is missing these columns")
    if communes_gdf.crs is None:
        raise ValidationError("communes_gdf.crs", None, "must be set (EPSG:4326 expected)")
    if not communes_gdf.crs.equals("EPSG:4326"):
        communes_gdf = communes_gdf.to_crs("EPSG:4326")
    return communes_gdf.reset_index(drop=True)


def _rng(seed: int, code: str, stream: int) -> np.random.Generator:
    if seed < 0:
        raise ValidationError("seed", seed, "must be a non-negative integer")
    return np.random.default_rng([seed, int(code), stream])


def _frame(parts: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """One frame from per-commune dicts of columns (a DataFrame per commune costs seconds)."""
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    sizes = [len(part["id"]) for part in parts]
    return pd.DataFrame(
        {
            name: np.concatenate([_values(p[name], k) for p, k in zip(parts, sizes, strict=True)])
            for name in parts[0]
        }
    )


def _values(value: Any, size: int) -> np.ndarray:
    if isinstance(value, str):
        return np.full(size, value, dtype=object)
    out = np.asarray(value)
    return out.astype(object) if out.dtype.kind in "US" else out


def _points(
    geom: Any, n: int, clustered: float, spread_km: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points inside ``geom``: a share round its centre, the rest uniform."""
    minx, miny, maxx, maxy = geom.bounds
    centre = geom.representative_point()
    coslat = math.cos(math.radians(centre.y))
    shapely.prepare(geom)
    n_near = int(rng.binomial(n, clustered))
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    need_near, need_far, tries = n_near, n - n_near, 0
    while need_near + need_far > 0:
        tries += 1
        if tries > 200:  # a sliver of a polygon: put the rest on its centre
            xs.append(np.full(need_near + need_far, centre.x))
            ys.append(np.full(need_near + need_far, centre.y))
            break
        if need_near:
            k = max(8, 2 * need_near)
            x = centre.x + rng.normal(0.0, spread_km / (111.32 * coslat), k)
            y = centre.y + rng.normal(0.0, spread_km / 110.57, k)
            inside = shapely.contains_xy(geom, x, y)
            take = np.flatnonzero(inside)[:need_near]
            xs.append(x[take])
            ys.append(y[take])
            need_near -= take.size
        if need_far:
            k = max(16, 3 * need_far)
            x = rng.uniform(minx, maxx, k)
            y = rng.uniform(miny, maxy, k)
            take = np.flatnonzero(shapely.contains_xy(geom, x, y))[:need_far]
            xs.append(x[take])
            ys.append(y[take])
            need_far -= take.size
    x_all = np.concatenate(xs)
    y_all = np.concatenate(ys)
    order = rng.permutation(x_all.size)
    return x_all[order], y_all[order]


def _split(total: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` positive integers, log-normally spread, that add up to ``total`` (≥ n) exactly."""
    if total < n:
        out = np.zeros(n, dtype=np.int64)
        out[:total] = 1
        return out
    weights = rng.lognormal(0.0, 0.6, n)
    share = (total - n) * weights / weights.sum()
    out = np.floor(share).astype(np.int64)
    remainder = total - n - int(out.sum())
    out[np.argsort(-(share - out), kind="stable")[:remainder]] += 1
    return np.asarray(out + 1, dtype=np.int64)


def _names(province: str, kind: str, n: int, rng: np.random.Generator) -> list[str]:
    if kind == "phường":
        return [f"Tổ dân phố {k + 1}" for k in range(n)]
    if province in _MOUNTAIN:
        prefix = _MOUNTAIN_PREFIX.get(province, "Thôn")
        first = rng.choice(len(_FIRST), n)
        second = rng.choice(len(_SECOND), n)
        raw = [f"{prefix} {_FIRST[a]} {_SECOND[b]}" for a, b in zip(first, second, strict=True)]
    else:
        first = rng.choice(len(_LOWLAND), n)
        second = rng.choice(len(_LOWLAND), n)
        raw = [
            f"Thôn {_LOWLAND[a]} {_LOWLAND[b]}" if a != b else f"Thôn {_LOWLAND[a]}"
            for a, b in zip(first, second, strict=True)
        ]
    seen: dict[str, int] = {}
    out = []
    for name in raw:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} {seen[name]}")
    return out


def _commune_hamlets(row: Any, population: int, n: int, rng: np.random.Generator) -> dict[str, Any]:
    kind = commune_kind(row.type)
    area = max(float(row.area_km2), 0.01)
    ward = kind == "phường"
    # a town's residential groups crowd round its centre; a xã's hamlets spread along its valleys
    clustered, spread = (0.7, 0.15) if ward else (0.35, 0.3)
    lon, lat = _points(row.geometry, n, clustered, spread * math.sqrt(area), rng)
    pop = _split(population, n, rng)
    households = np.maximum(1, np.round(pop / rng.uniform(3.6, 4.8, n))).astype(np.int64)
    centre = row.geometry.representative_point()
    dist = np.hypot((lon - centre.x) * math.cos(math.radians(centre.y)), lat - centre.y)
    remote = dist / max(float(dist.mean()), 1e-9) if n else dist
    density = population / area
    if kind == "phường":
        p_no_power = np.zeros(n)
    else:
        p_no_power = np.minimum(0.6, 0.3 * math.exp(-density / 30.0) * (0.5 + remote))
    has_power = rng.random(n) >= p_no_power
    code = str(row.code)
    province = str(row.province_code)
    return {
        "id": [f"SYN-{province}-{code}-{k + 1:03d}" for k in range(n)],
        "name": _names(province, kind, n, rng),
        "commune_code": code,
        "province_code": province,
        "lat": lat,
        "lon": lon,
        "population": pop,
        "households": households,
        "has_grid_power": has_power,
    }


def _commune_sites(
    row: Any, keys: list[str], counts: np.ndarray, rng: np.random.Generator
) -> dict[str, Any]:
    kind = commune_kind(row.type)
    ward = kind == "phường"
    n_sites = int(counts.sum())
    area = max(float(row.area_km2), 0.01)
    clustered, spread = (0.85, 0.15) if ward else (0.5, 0.2)
    lon, lat = _points(row.geometry, n_sites, clustered, spread * math.sqrt(area), rng)
    site_op = np.repeat(np.arange(len(keys)), counts)
    probs = np.array([layer[2] for layer in LAYERS])
    layer = rng.choice(len(LAYERS), n_sites, p=probs / probs.sum())
    omni = rng.random(n_sites) < OMNI_SHARE
    turn = rng.uniform(-15.0, 15.0, n_sites)
    height = rng.uniform(25.0, 35.0, n_sites) if ward else rng.uniform(30.0, 45.0, n_sites)
    cells = np.where(omni, 1, 3)
    site = np.repeat(np.arange(n_sites), cells)
    cell = np.concatenate([np.arange(1, c + 1) for c in cells])
    azimuth = np.where(omni[site], np.nan, (turn[site] + 120.0 * (cell - 1)) % 360.0)
    code = str(row.code)
    site_ids = np.array([f"SYN-{code}-{k + 1:03d}" for k in range(n_sites)], dtype=object)
    ops = np.array(keys, dtype=object)[site_op][site]
    return {
        "id": [f"{o}:{s}:{c}" for o, s, c in zip(ops, site_ids[site], cell, strict=True)],
        "site_id": site_ids[site],
        "cell_id": cell.astype(str).astype(object),
        "operator": ops,
        "radio": np.array([LAYERS[k][0] for k in layer], dtype=object)[site],
        "band_mhz": np.array([LAYERS[k][1] for k in layer])[site],
        "lat": lat[site],
        "lon": lon[site],
        "province_code": str(row.province_code),
        "commune_code": code,
        "height_m": np.round(height[site], 1),
        "azimuth_deg": np.round(azimuth, 1),
        "beamwidth_deg": np.where(omni[site], np.nan, 65.0),
        "power_dbm": np.array([LAYERS[k][3] for k in layer])[site],
    }
