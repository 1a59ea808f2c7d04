"""Hand-made coverage scenes for the engine's tests: points given in metres east/north of a place
in Cao Bằng, turned into the engine's columns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pyproj import Transformer

from lomsong.coverage.model import (
    METRIC_CRS,
    RURAL,
    Hamlets,
    Readings,
    Sectors,
    as_object,
)

# the metric origin of every scene: near Cao Bằng town (EPSG:32648 metres)
ORIGIN_X, ORIGIN_Y = 600_000.0, 2_510_000.0
_TO_LONLAT = Transformer.from_crs(METRIC_CRS, "EPSG:4326", always_xy=True)


def lonlat(east_m: float, north_m: float) -> tuple[float, float]:
    lon, lat = _TO_LONLAT.transform(ORIGIN_X + east_m, ORIGIN_Y + north_m)
    return float(lon), float(lat)


def hamlets(
    points: Sequence[tuple[float, float]],
    *,
    environment: int | Sequence[int] = RURAL,
    commune: str | Sequence[str] = "01273",
    province: str = "04",
    population: Sequence[int] | None = None,
    power: Sequence[bool] | None = None,
) -> Hamlets:
    n = len(points)
    coords = [lonlat(e, n_) for e, n_ in points]
    communes = [commune] * n if isinstance(commune, str) else list(commune)
    env = [environment] * n if isinstance(environment, int) else list(environment)
    return Hamlets(
        ids=as_object([f"h{i}" for i in range(n)]),
        names=as_object([f"Bản thử {i}" for i in range(n)]),
        commune_code=as_object(communes),
        province_code=as_object([province] * n),
        lon=np.array([c[0] for c in coords]),
        lat=np.array([c[1] for c in coords]),
        population=np.array(population if population is not None else [100] * n, dtype=np.int64),
        has_grid_power=np.array(power if power is not None else [True] * n, dtype=bool),
        environment=np.array(env, dtype=np.int8),
        synthetic=np.zeros(n, dtype=bool),
    )


SECTOR_DEFAULTS: dict[str, Any] = {
    "operator": "viettel",
    "radio": "lte",
    "band_mhz": 1800.0,
    "height_m": 30.0,
    "azimuth_deg": np.nan,
    "beamwidth_deg": 65.0,
    "power_dbm": 46.0,
    "range_m": np.nan,
    "active": True,
}


def sectors(rows: Sequence[dict[str, Any]]) -> Sectors:
    """Each row: ``at`` (east, north) in metres plus any field of ``SECTOR_DEFAULTS``."""
    full = [SECTOR_DEFAULTS | row for row in rows]
    coords = [lonlat(*row["at"]) for row in full]
    return Sectors(
        ids=as_object([f"{r['operator']}:s{i}:1" for i, r in enumerate(full)]),
        site_id=as_object([f"s{i}" for i in range(len(full))]),
        operator=as_object([r["operator"] for r in full]),
        radio=as_object([r["radio"] for r in full]),
        band_mhz=np.array([r["band_mhz"] for r in full], dtype=np.float64),
        lon=np.array([c[0] for c in coords]),
        lat=np.array([c[1] for c in coords]),
        height_m=np.array([r["height_m"] for r in full], dtype=np.float64),
        azimuth_deg=np.array([r["azimuth_deg"] for r in full], dtype=np.float64),
        beamwidth_deg=np.array([r["beamwidth_deg"] for r in full], dtype=np.float64),
        power_dbm=np.array([r["power_dbm"] for r in full], dtype=np.float64),
        range_m=np.array([r["range_m"] for r in full], dtype=np.float64),
        active=np.array([r["active"] for r in full], dtype=bool),
    )


def readings(rows: Sequence[tuple[float, float, str, float, float]]) -> Readings:
    """Each row: (east m, north m, operator, rsrp dBm, measured_at)."""
    coords = [lonlat(r[0], r[1]) for r in rows]
    return Readings(
        lon=np.array([c[0] for c in coords]),
        lat=np.array([c[1] for c in coords]),
        operator=as_object([r[2] for r in rows]),
        rsrp_dbm=np.array([r[3] for r in rows], dtype=np.float64),
        measured_at=np.array([r[4] for r in rows], dtype=np.float64),
        source=as_object(["field"] * len(rows)),
    )
