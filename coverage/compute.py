"""The calls into the coverage engine (``lomsong.coverage.engine``) that the CLI and the
collector share: classify an area from the database, lay the live outages over it, summarise
it, answer what-if questions, find the dead zones, and store synthetic data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import geopandas as gpd
import numpy as np
import pandas as pd
from sqlalchemy import Engine, func, select

from lomsong.coverage import boundaries, store, synth
from lomsong.coverage import engine as coverage_engine
from lomsong.coverage.deadzones import dead_zones
from lomsong.coverage.export import flat
from lomsong.coverage.model import (
    Classification,
    CoverageSettings,
    Hamlets,
    Readings,
    Sectors,
)
from lomsong.errors import NotFoundError
from lomsong.storage.schema import sites


@dataclass
class Area:
    """A province (or the country, ``province=None``) loaded and classified without outages."""

    province: str | None
    details: pd.DataFrame
    hamlets: Hamlets
    sectors: Sectors
    readings: Readings
    base: Classification
    version: tuple[Any, ...]
    built_at: float


def classify_area(
    engine: Engine, province: str | None, settings: CoverageSettings, *, now: float
) -> Area:
    """Load hamlets, the sectors that can reach them and recent readings; classify them."""
    version = store.data_version(engine)
    details = store.hamlet_frame(engine, province)
    hamlets = store.hamlets_from_frame(details)
    sectors = store.load_sectors(engine, province, settings=settings)
    since = now - settings.measured_max_age_days * 86_400
    readings = store.load_readings(engine, since, province)
    base = coverage_engine.classify(hamlets, sectors, readings, settings, now=now)
    return Area(province, details, hamlets, sectors, readings, base, version, now)


def with_outages(area: Area, down_links: Iterable[tuple[str, str]]) -> Classification:
    """The live picture: sectors marked down and communes whose probe lost an operator."""
    return coverage_engine.apply_outages(
        area.base,
        area.hamlets,
        area.sectors,
        down_sectors=~area.sectors.active,
        down_links=list(down_links),
    )


def summarize(
    area: Area, classification: Classification, by: Literal["commune", "province"]
) -> pd.DataFrame:
    """The engine's aggregates, with the commune (or province) names beside the codes."""
    # the engine names the key ``code``; the tables, exports and with_shapes say which code
    key = f"{by}_code"
    frame = flat(coverage_engine.summarize(area.hamlets, classification, by=by))
    frame = frame.rename(columns={"code": key})
    if by == "commune":
        codes, labels = area.details["commune_code"], area.details["commune_name"]
    else:
        bundled = boundaries.provinces()
        codes, labels = bundled["code"], bundled["name"]
    names = dict(zip(codes, labels, strict=True))
    frame.insert(1, f"{by}_name", frame[key].map(names))
    frame = frame.assign(synthetic=bool(np.any(area.hamlets.synthetic)))
    return frame


def whatif(
    area: Area, candidates: Sectors, settings: CoverageSettings, *, now: float
) -> coverage_engine.WhatIf:
    return coverage_engine.whatif(
        area.hamlets,
        area.sectors,
        area.readings,
        settings,
        candidates,
        now=now,
        base=area.base,
    )


def with_shapes(frame: pd.DataFrame, engine: Engine, by: Literal["commune", "province"]) -> Any:
    """A summary with its communes' (or provinces') polygons, for GeoJSON and GeoPackage."""
    key = f"{by}_code"
    if key not in frame.columns:
        return frame
    layer = boundaries.communes(engine) if by == "commune" else boundaries.provinces(engine)
    shapes = layer.set_index("code").geometry
    return gpd.GeoDataFrame(frame, geometry=frame[key].map(shapes).to_numpy(), crs="EPSG:4326")


@dataclass(frozen=True)
class Synthesized:
    """What ``geodata synth`` stored: how many hamlets and sectors, in which imports, and what
    changed (``{"inserted": 1507}``, ``{"unchanged": 1507}`` on a rerun)."""

    province: str | None
    seed: int
    hamlets: int
    hamlet_import: int
    hamlet_changes: dict[str, int]
    sectors: int
    site_import: int
    site_changes: dict[str, int]


def generate_and_store(
    engine: Engine,
    *,
    province: str | None,
    seed: int,
    progress: Any = None,
    settings: CoverageSettings | None = None,
) -> Synthesized:
    """``geodata synth``: generate hamlets and sites (``lomsong.coverage.synth``) for a province
    or, with None, the national benchmark shape, and store them labelled synthetic."""
    settings = settings or CoverageSettings()
    if province is None:
        hamlet_frame, site_frame = synth.national(seed)
        label = f"national, seed {seed}"
    else:
        communes = boundaries.communes(engine, province=province)
        if communes.empty:
            raise NotFoundError(f"province {province!r} has no communes")
        hamlet_frame = synth.hamlets(communes, seed=seed)
        site_frame = synth.sites(communes, seed=seed, operators=settings.operators)
        label = f"province {province}, seed {seed}"
    advance = None
    if progress is not None:
        advance = progress("storing", len(hamlet_frame) + len(site_frame))
    h_id, h_changes, s_id, s_changes = store.store_synthetic(
        engine, hamlet_frame, site_frame, label=label, province=province, advance=advance
    )
    return Synthesized(
        province=province,
        seed=seed,
        hamlets=len(hamlet_frame),
        hamlet_import=h_id,
        hamlet_changes=h_changes.as_dict(),
        sectors=len(site_frame),
        site_import=s_id,
        site_changes=s_changes.as_dict(),
    )


def area_dead_zones(engine: Engine, province: str, settings: CoverageSettings) -> gpd.GeoDataFrame:
    """The dead zones of a province's communes (``deadzones.dead_zones``) from the stored
    boundaries and sectors, with the communes' names; ``synthetic`` when any sector is."""
    communes = boundaries.communes(engine, province=province)
    if communes.empty:
        raise NotFoundError(f"province {province!r} has no communes")
    sectors = store.load_sectors(engine, province, settings=settings)
    zones = dead_zones(communes, sectors, settings)
    names = dict(zip(communes["code"], communes["name"], strict=True))
    zones.insert(1, "commune_name", zones["code"].map(names))
    zones = zones.rename(columns={"code": "commune_code"})
    query = select(func.count()).where(
        sites.c.province_code == province, sites.c.synthetic.is_(True)
    )
    with engine.connect() as conn:
        zones["synthetic"] = bool(conn.execute(query).scalar_one())
    return zones
