"""Shaping the engine's answers for people: per-hamlet status tables, candidate sites, what-if
totals. Nothing here computes coverage; ``compute`` calls the engine, this module lays out what
it returns (a ``Classification``, a what-if table)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from lomsong.coverage.model import (
    RADIOS,
    STATUS_CODES,
    Classification,
    CoverageSettings,
    Sectors,
    Status,
    as_object,
)
from lomsong.errors import ValidationError


def status_frame(details: pd.DataFrame, classification: Classification) -> gpd.GeoDataFrame:
    """One row per hamlet: overall status, best operator, and per operator status and RSRP.

    ``details`` is ``store.hamlet_frame`` for the same hamlets, in the same order as the
    ``Hamlets`` the classification was made for.

    Examples
    --------
    >>> frame = status_frame(store.hamlet_frame(engine, "04"), classification)  # doctest: +SKIP
    >>> frame.loc[frame["status"] == "none", ["name", "population"]]  # doctest: +SKIP
    """
    n = len(details)
    if len(classification) != n:
        raise ValueError(f"{len(classification)} classified hamlets for {n} hamlets")
    labels = np.array([s.value for s in STATUS_CODES], dtype=object)
    ops = classification.operators
    # index -1 (no operator reaches the hamlet) picks the trailing None
    best = np.array([*ops, None], dtype=object)[classification.best_operator]
    power = details["has_grid_power"].to_numpy(dtype=object)
    frame: dict[str, Any] = {
        "hamlet_id": details["id"].to_numpy(dtype=object),
        "name": details["name"].to_numpy(dtype=object),
        "commune_code": details["commune_code"].to_numpy(dtype=object),
        "commune_name": details["commune_name"].to_numpy(dtype=object),
        "province_code": details["province_code"].to_numpy(dtype=object),
        "population": pd.array(list(details["population"]), dtype="Int64"),
        "households": pd.array(list(details["households"]), dtype="Int64"),
        "no_grid_power": np.array([p is False or p == 0 for p in power], dtype=bool),
        "status": labels[classification.overall.astype(np.int64)],
        "best_operator": pd.Series(best, dtype=object),  # None, not NaN, where none
    }
    for j, op in enumerate(ops):
        frame[f"status_{op}"] = labels[classification.status[:, j].astype(np.int64)]
        rsrp = classification.rsrp_dbm[:, j].astype(np.float64)
        frame[f"rsrp_{op}_dbm"] = np.round(rsrp, 1)
        frame[f"measured_{op}"] = classification.measured[:, j].astype(bool)
    lat = details["lat"].to_numpy(dtype=np.float64)
    lon = details["lon"].to_numpy(dtype=np.float64)
    frame.update(
        synthetic=details["synthetic"].to_numpy(dtype=bool),
        lat=lat,
        lon=lon,
    )
    return gpd.GeoDataFrame(frame, geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")


def filter_status(
    frame: pd.DataFrame,
    *,
    status: str | None = None,
    operator: str | None = None,
    commune: str | None = None,
) -> pd.DataFrame:
    """Rows with ``status`` (overall, or ``operator``'s when one is named) in ``commune``."""
    out = frame
    if commune is not None:
        out = out[out["commune_code"] == commune]
    if status is not None:
        column = "status" if operator is None else f"status_{operator}"
        out = out[out[column] == status]
    return out


def parse_status(value: str) -> str:
    try:
        return Status(value).value
    except ValueError:
        allowed = ", ".join(s.value for s in Status)
        raise ValidationError("status", value, f"expected one of {{{allowed}}}") from None


@dataclass(frozen=True)
class Candidate:
    """A site someone might build: one sector (azimuth) or an omni antenna (no azimuth)."""

    lat: float
    lon: float
    operator: str
    height_m: float = 30.0
    azimuth_deg: float | None = None
    beamwidth_deg: float | None = None
    band_mhz: float = 1800.0
    power_dbm: float | None = None
    radio: str = "lte"


def parse_site(value: str) -> tuple[float, float]:
    """``"22.94,105.63"`` → (lat, lon), checked to be in Vietnam's range of coordinates."""
    parts = value.split(",")
    try:
        lat, lon = (float(p) for p in parts)
    except ValueError:
        raise ValidationError("--site", value, "expected LAT,LON such as 22.94,105.63") from None
    if not (8.0 <= lat <= 24.0 and 102.0 <= lon <= 118.0):
        raise ValidationError(
            "--site", value, "expected LAT,LON in Vietnam (lat 8–24, lon 102–118)"
        )
    return lat, lon


def candidate_sectors(candidates: Sequence[Candidate], settings: CoverageSettings) -> Sectors:
    """Candidates as the engine's sector columns, after checking every field's range."""
    keys = settings.operator_keys()
    for i, c in enumerate(candidates):
        where = f"sites[{i}]"
        checks = (
            ("operator", c.operator, c.operator in keys, f"expected one of {{{', '.join(keys)}}}"),
            ("radio", c.radio, c.radio in RADIOS, f"expected one of {{{', '.join(RADIOS)}}}"),
            ("height_m", c.height_m, 0 < c.height_m <= 1000, "must be > 0 and ≤ 1000 m"),
            ("band_mhz", c.band_mhz, c.band_mhz > 0, "must be > 0 MHz"),
            (
                "azimuth_deg",
                c.azimuth_deg,
                c.azimuth_deg is None or 0 <= c.azimuth_deg < 360,
                "must be ≥ 0 and < 360°",
            ),
            (
                "beamwidth_deg",
                c.beamwidth_deg,
                c.beamwidth_deg is None or 0 < c.beamwidth_deg <= 360,
                "must be > 0 and ≤ 360°",
            ),
            (
                "power_dbm",
                c.power_dbm,
                c.power_dbm is None or 0 <= c.power_dbm <= 80,
                "must be ≥ 0 and ≤ 80 dBm",
            ),
        )
        for name, value, ok, problem in checks:
            if not ok:
                raise ValidationError(f"{where}.{name}", value, problem)

    def floats(values: Iterable[float | None]) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

    azimuth = floats(c.azimuth_deg for c in candidates)
    beam = floats(c.beamwidth_deg for c in candidates)
    beam[np.isnan(azimuth)] = 360.0
    beam[~np.isnan(azimuth) & np.isnan(beam)] = settings.default_beamwidth_deg
    ids = [f"candidate:{i + 1}:{c.operator}" for i, c in enumerate(candidates)]
    return Sectors(
        ids=as_object(ids),
        site_id=as_object([f"candidate-{i + 1}" for i in range(len(candidates))]),
        operator=as_object([c.operator for c in candidates]),
        radio=as_object([c.radio for c in candidates]),
        band_mhz=floats(c.band_mhz for c in candidates),
        lon=floats(c.lon for c in candidates),
        lat=floats(c.lat for c in candidates),
        height_m=floats(c.height_m for c in candidates),
        azimuth_deg=azimuth,
        beamwidth_deg=beam,
        power_dbm=floats(c.power_dbm for c in candidates),
        range_m=np.full(len(candidates), np.nan),
        active=np.ones(len(candidates), dtype=bool),
    )


def _status(value: Any) -> Status:
    if isinstance(value, int | np.integer):
        return STATUS_CODES[int(value)]
    return Status(str(value))


def whatif_rows(table: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The engine's what-if table with statuses as their names, improvements marked."""
    rows = []
    for r in table:
        before, after = _status(r["before"]), _status(r["after"])
        rows.append(
            {
                **r,
                "before": before.value,
                "after": after.value,
                "improved": STATUS_CODES.index(after) < STATUS_CODES.index(before),
            }
        )
    return rows


def whatif_totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Hamlets and population whose status changes, improves, and per change of status."""
    changed: dict[str, int] = {}
    improved: dict[str, int] = {}
    transitions: dict[str, dict[str, int]] = {}
    for r in rows:
        population = int(r.get("population") or 0)
        changed[r["hamlet_id"]] = population
        if r["improved"]:
            improved[r["hamlet_id"]] = population
        key = f"{r['operator']}: {r['before']}→{r['after']}"
        seen = transitions.setdefault(key, {"hamlets": 0, "population": 0})
        seen["hamlets"] += 1
        seen["population"] += population
    return {
        "hamlets_changed": len(changed),
        "population_changed": sum(changed.values()),
        "hamlets_improved": len(improved),
        "population_improved": sum(improved.values()),
        "transitions": transitions,
    }
