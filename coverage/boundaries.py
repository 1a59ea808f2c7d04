"""Province and commune boundaries: the bundled 2025 layers, overlaid by what users imported.

The bundled layers (``lomsong/data/vn``, attribution in ATTRIBUTION.md) cover all 34 provinces and
3,321 communes; real population is known for the 567 communes of seven northern mountain provinces.
Boundaries imported with ``lomsong geodata import provinces|communes`` are stored in the
``boundaries`` table and take precedence, code by code.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import as_file, files
from typing import Any

import geopandas as gpd
import pandas as pd
import shapely
from sqlalchemy import Engine, select

from lomsong.storage.schema import boundaries

DATA = files("lomsong") / "data" / "vn"
COMMUNES_FILE = "vn_communes_2025_simplified.gpkg"
POPULATION_FILE = "north_mountain_communes_2025_simplified.gpkg"
PROVINCES_FILE = "vn_provinces_2025_simplified.geojson"
POINTS_FILE = "vn_communes_2025_points.csv"

COMMUNE_COLUMNS = [
    "code",
    "name",
    "full_name",
    "type",
    "province_code",
    "area_km2",
    "population",
    "geometry",
]
#: The polygon layer carries Xã Ba Chẽ (Quảng Ninh) as 06978; its 2025 code is 06970, as in the
#: commune points and the official old → new mapping (the old Thị trấn Ba Chẽ was 06970).
CODE_FIXES = {"06978": "06970"}


def _read(name: str, **kwargs: Any) -> gpd.GeoDataFrame:
    with as_file(DATA / name) as path:
        return gpd.read_file(path, **kwargs)


@cache
def _bundled_communes() -> gpd.GeoDataFrame:
    base = _read(COMMUNES_FILE, layer="communes")
    base["code"] = base["code"].replace(CODE_FIXES)
    with as_file(DATA / POINTS_FILE) as path:
        points = pd.read_csv(path, dtype={"code": str, "province_code": str})
    detailed = _read(POPULATION_FILE, layer="communes")
    # the mountain layer is finer (0.0005° against 0.002°) and has population: prefer it
    geometry = base.set_index("code").geometry
    finer = detailed.set_index("code").geometry
    geometry.loc[finer.index] = finer
    population = detailed.set_index("code")["population"]
    frame = gpd.GeoDataFrame(
        {
            "code": base["code"].to_numpy(),
            "name": base["name"].to_numpy(),
            "province_code": base["province_code"].to_numpy(),
            "area_km2": base["areaKm2"].to_numpy(),
        },
        geometry=geometry.loc[base["code"]].to_numpy(),
        crs="EPSG:4326",
    )
    frame["type"] = frame["code"].map(points.set_index("code")["type"]).fillna("xã")
    # "Xã Bảo Lâm", as the places table, the status page and alerts say it (the polygon
    # layer's name lacks the kind, and some spell the tone mark elsewhere: Hoà / Hòa)
    full = frame["code"].map(points.set_index("code")["name"])
    frame["full_name"] = full.fillna(frame["type"].str.capitalize() + " " + frame["name"])
    frame["population"] = frame["code"].map(population).astype("Int64")
    return frame[COMMUNE_COLUMNS]


@cache
def _bundled_provinces() -> gpd.GeoDataFrame:
    frame = _read(PROVINCES_FILE)
    out = gpd.GeoDataFrame(
        {
            "code": frame["code"].astype(str).str.zfill(2),
            "name": frame["name"],
            "name_en": frame["nameEn"],
            "area_km2": frame["areaKm2"],
        },
        geometry=frame.geometry,
        crs="EPSG:4326",
    )
    return out


def communes(engine: Engine | None = None, province: str | None = None) -> gpd.GeoDataFrame:
    """Commune polygons (EPSG:4326) with code, name, full_name ("Xã Bảo Lâm"), type,
    province_code, area_km2, population.

    ``population`` is pandas' nullable Int64: missing where no source has it.
    """
    frame = _bundled_communes().copy()
    if engine is not None:
        frame = _overlay(frame, engine, "commune")
    if province is not None:
        frame = frame[frame["province_code"] == province]
    return frame.reset_index(drop=True)


def provinces(engine: Engine | None = None) -> gpd.GeoDataFrame:
    frame = _bundled_provinces().copy()
    if engine is not None:
        frame = _overlay(frame, engine, "province")
    return frame.reset_index(drop=True)


def _overlay(frame: gpd.GeoDataFrame, engine: Engine, level: str) -> gpd.GeoDataFrame:
    query = select(boundaries.c.code, boundaries.c.geometry, boundaries.c.population).where(
        boundaries.c.level == level
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    if not rows:
        return frame
    index = {code: i for i, code in enumerate(frame["code"])}
    geoms = frame.geometry.to_numpy().copy()
    for code, wkb, population in rows:
        i = index.get(code)
        if i is None:
            continue
        geoms[i] = shapely.from_wkb(wkb)
        if population is not None and "population" in frame:
            frame.loc[i, "population"] = population
    return frame.set_geometry(gpd.GeoSeries(geoms, crs="EPSG:4326"))
