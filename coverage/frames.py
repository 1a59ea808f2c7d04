"""From (Geo)DataFrames with the tables' columns to the engine's numpy columns.

``hamlets_from_frame`` takes rows shaped like the ``hamlets`` table (``synth.hamlets`` gives
them), ``sectors_from_frame`` rows like ``sites`` (planned sectors are left out, ``down`` ones
kept with ``active=False``), ``readings_from_frame`` rows like ``field_measurements``.
"""

from __future__ import annotations

from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from lomsong.coverage import boundaries
from lomsong.coverage.model import (
    Hamlets,
    Readings,
    Sectors,
    StrArray,
    environment_codes,
)
from lomsong.errors import ValidationError

SITE_STATUSES = ("active", "down", "planned")


def hamlets_from_frame(frame: pd.DataFrame, communes: gpd.GeoDataFrame | None = None) -> Hamlets:
    """Hamlets from rows with id, name, commune_code, province_code, lon, lat and, optionally,
    population (missing: 0), has_grid_power (missing: True), synthetic (missing: False).

    The environment class comes from the commune's type (``model.environment_codes``); the
    communes default to the bundled ones.
    """
    _require(frame, ("id", "name", "commune_code", "province_code", "lon", "lat"), "hamlets")
    if communes is None:
        communes = boundaries.communes()
    kinds = pd.Series(communes["type"].to_numpy(), index=communes["code"].to_numpy())
    code = _strings(frame["commune_code"])
    known = pd.Index(kinds.index).get_indexer(code)
    if (known < 0).any():
        raise ValidationError("commune_code", code[np.argmax(known < 0)], "is not a known commune")
    province = _strings(frame["province_code"])
    population = _column(frame, "population", 0).fillna(0).astype(np.int64).to_numpy()
    power = _column(frame, "has_grid_power", True).fillna(True).astype(bool).to_numpy()
    synthetic = _column(frame, "synthetic", False).fillna(False).astype(bool).to_numpy()
    return Hamlets(
        ids=_strings(frame["id"]),
        names=_strings(frame["name"]),
        commune_code=code,
        province_code=province,
        lon=frame["lon"].to_numpy(dtype=np.float64),
        lat=frame["lat"].to_numpy(dtype=np.float64),
        population=population,
        has_grid_power=power,
        environment=environment_codes(kinds.to_numpy(dtype=object)[known], province),
        synthetic=synthetic,
    )


def sectors_from_frame(frame: pd.DataFrame) -> Sectors:
    """Sectors from rows like the ``sites`` table; ``planned`` rows are not loaded."""
    _require(frame, ("id", "site_id", "operator", "radio", "band_mhz", "lon", "lat"), "sites")
    status = _strings(_column(frame, "status", "active"))
    unknown = ~np.isin(status, SITE_STATUSES)
    if unknown.any():
        raise ValidationError(
            "status", status[np.argmax(unknown)], f"expected one of {{{', '.join(SITE_STATUSES)}}}"
        )
    keep = status != "planned"
    rows = frame.loc[keep]

    def floats(name: str) -> np.ndarray:
        return np.asarray(
            _column(rows, name, np.nan).astype(np.float64).to_numpy(), dtype=np.float64
        )

    return Sectors(
        ids=_strings(rows["id"]),
        site_id=_strings(rows["site_id"]),
        operator=_strings(rows["operator"]),
        radio=_strings(rows["radio"]),
        band_mhz=floats("band_mhz"),
        lon=floats("lon"),
        lat=floats("lat"),
        height_m=floats("height_m"),
        azimuth_deg=floats("azimuth_deg"),
        beamwidth_deg=floats("beamwidth_deg"),
        power_dbm=floats("power_dbm"),
        range_m=floats("range_m"),
        active=status[keep] == "active",
    )


def readings_from_frame(frame: pd.DataFrame) -> Readings:
    """Readings from rows with lon, lat, operator, rsrp_dbm, measured_at and, optionally, source."""
    _require(frame, ("lon", "lat", "operator", "rsrp_dbm", "measured_at"), "readings")
    return Readings(
        lon=frame["lon"].to_numpy(dtype=np.float64),
        lat=frame["lat"].to_numpy(dtype=np.float64),
        operator=_strings(frame["operator"]),
        rsrp_dbm=frame["rsrp_dbm"].to_numpy(dtype=np.float64),
        measured_at=frame["measured_at"].to_numpy(dtype=np.float64),
        source=_strings(_column(frame, "source", "")),
    )


def _require(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValidationError(f"{what} columns", missing, "are missing")


def _column(frame: pd.DataFrame, name: str, default: Any) -> pd.Series:
    if name in frame.columns:
        return frame[name]
    return pd.Series([default] * len(frame), index=frame.index, dtype=object)


def _strings(values: Any) -> StrArray:
    out = np.empty(len(values), dtype=object)
    out[:] = [str(v) for v in values]
    return out
