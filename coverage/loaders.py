"""Reading geodata back for the engine: its columns (``Hamlets``, ``Sectors``, ``Readings``),
the data version that caches key on, and the history of imports and hamlets.

Re-exported by ``store``, the module callers use for the database side of geodata.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pandas as pd
import shapely
from pyproj import Transformer
from sqlalchemy import Engine, Table, and_, func, select

from lomsong.coverage.model import (
    METRIC_CRS,
    CoverageSettings,
    Hamlets,
    Readings,
    Sectors,
    as_object,
    environment_codes,
)
from lomsong.errors import NotFoundError
from lomsong.storage.schema import (
    boundaries,
    communes,
    field_measurements,
    geodata_imports,
    hamlet_versions,
    hamlets,
    latest_results,
    probe_uplinks,
    probes,
    sites,
)

#: what a hamlet version records (besides its id, version and times)
HAMLET_DATA = (
    "name",
    "commune_code",
    "province_code",
    "lat",
    "lon",
    "geometry",
    "population",
    "households",
    "has_grid_power",
    "synthetic",
)


# -- loaders for the engine --------------------------------------------------------------------


def hamlet_frame(engine: Engine, province: str | None = None) -> pd.DataFrame:
    """Current (not retired) hamlets with their commune's name and type, in a stable order."""
    query = (
        select(
            hamlets.c.id,
            hamlets.c.name,
            hamlets.c.commune_code,
            communes.c.name.label("commune_name"),
            communes.c.type.label("commune_type"),
            hamlets.c.province_code,
            hamlets.c.lat,
            hamlets.c.lon,
            hamlets.c.geometry,
            hamlets.c.population,
            hamlets.c.households,
            hamlets.c.has_grid_power,
            hamlets.c.synthetic,
            hamlets.c.version,
        )
        .join(communes, communes.c.code == hamlets.c.commune_code)
        .where(hamlets.c.retired_at.is_(None))
        .order_by(hamlets.c.province_code, hamlets.c.commune_code, hamlets.c.id)
    )
    if province is not None:
        query = query.where(hamlets.c.province_code == province)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    columns = [c.name for c in query.selected_columns]
    return pd.DataFrame([tuple(r) for r in rows], columns=columns, dtype=object)


def hamlets_from_frame(frame: pd.DataFrame) -> Hamlets:
    """The engine's columns from :func:`hamlet_frame`; the environment class from the commune's
    type and province (``model.environment_codes``), as the dead zones draw it."""
    n = len(frame)
    power = [True if p is None else bool(p) for p in frame["has_grid_power"]] if n else []
    return Hamlets(
        ids=as_object(list(frame["id"])),
        names=as_object(list(frame["name"])),
        commune_code=as_object(list(frame["commune_code"])),
        province_code=as_object(list(frame["province_code"])),
        lon=np.asarray(frame["lon"], dtype=np.float64).reshape(n),
        lat=np.asarray(frame["lat"], dtype=np.float64).reshape(n),
        population=np.array(
            [0 if p is None else int(p) for p in frame["population"]], dtype=np.int64
        ),
        has_grid_power=np.array(power, dtype=bool),
        environment=environment_codes(
            as_object(list(frame["commune_type"])), as_object(list(frame["province_code"]))
        ),
        synthetic=np.array([bool(s) for s in frame["synthetic"]], dtype=bool),
    )


def load_hamlets(engine: Engine, province: str | None = None) -> Hamlets:
    """The engine's hamlet columns for a province (or the country); unknown power counts as on."""
    return hamlets_from_frame(hamlet_frame(engine, province))


def _province_shape(engine: Engine, province: str) -> Any:
    from lomsong.coverage.boundaries import provinces

    frame = provinces(engine)
    shape = frame.loc[frame["code"] == province].geometry
    if shape.empty:
        raise NotFoundError(f"province {province!r} does not exist")
    return shape.iloc[0]


def near_province(
    engine: Engine, province: str, margin_km: float
) -> tuple[Any, Callable[..., Any]]:
    """(a SQL bounding box condition maker, an exact test) for points near a province."""
    shape = _province_shape(engine, province)
    west, south, east, north = shape.bounds
    dlat = margin_km / 111.32
    dlon = margin_km / (111.32 * np.cos(np.radians(max(abs(south), abs(north)))))
    box = (west - dlon, south - dlat, east + dlon, north + dlat)
    to_metric = Transformer.from_crs("EPSG:4326", METRIC_CRS, always_xy=True)
    metric = shapely.transform(
        shape, lambda c: np.column_stack(to_metric.transform(c[:, 0], c[:, 1]))
    )
    shapely.prepare(metric)

    def inside(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        x, y = to_metric.transform(lon, lat)
        return np.asarray(shapely.dwithin(metric, shapely.points(x, y), margin_km * 1000.0))

    return box, inside


def _in_box(table: Table, box: tuple[float, float, float, float]) -> Any:
    west, south, east, north = box
    return and_(
        table.c.lon >= west, table.c.lon <= east, table.c.lat >= south, table.c.lat <= north
    )


def load_sectors(
    engine: Engine,
    province: str | None = None,
    *,
    margin_km: float = 35.0,
    settings: CoverageSettings | None = None,
) -> Sectors:
    """Sectors that can serve a province: within ``margin_km`` of it, since signal crosses
    borders. Planned sectors are left out; ``down`` ones come with ``active=False``.
    Missing heights and beamwidths get the settings' defaults (360° for an omni sector);
    missing power stays NaN (the engine's default power)."""
    settings = settings or CoverageSettings()
    query = (
        select(
            sites.c.id,
            sites.c.site_id,
            sites.c.operator,
            sites.c.radio,
            sites.c.band_mhz,
            sites.c.lon,
            sites.c.lat,
            sites.c.height_m,
            sites.c.azimuth_deg,
            sites.c.beamwidth_deg,
            sites.c.power_dbm,
            sites.c.range_m,
            sites.c.status,
        )
        .where(sites.c.status != "planned")
        .order_by(sites.c.id)
    )
    inside = None
    if province is not None:
        box, inside = near_province(engine, province, margin_km)
        query = query.where(_in_box(sites, box))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=[c.name for c in query.selected_columns])
    if inside is not None and len(frame):
        frame = frame[inside(frame["lon"].to_numpy(float), frame["lat"].to_numpy(float))]

    def floats(name: str) -> np.ndarray:
        return np.array(pd.to_numeric(frame[name]), dtype=np.float64).reshape(len(frame))

    azimuth = floats("azimuth_deg")
    beam = floats("beamwidth_deg")
    omni = np.isnan(azimuth)
    beam[omni] = 360.0
    beam[~omni & np.isnan(beam)] = settings.default_beamwidth_deg
    height = floats("height_m")
    height[np.isnan(height)] = settings.default_height_m
    return Sectors(
        ids=as_object(list(frame["id"])),
        site_id=as_object(list(frame["site_id"])),
        operator=as_object(list(frame["operator"])),
        radio=as_object(list(frame["radio"])),
        band_mhz=floats("band_mhz"),
        lon=floats("lon"),
        lat=floats("lat"),
        height_m=height,
        azimuth_deg=azimuth,
        beamwidth_deg=beam,
        power_dbm=floats("power_dbm"),
        range_m=floats("range_m"),
        active=np.asarray(frame["status"] != "down", dtype=bool).reshape(len(frame)),
    )


def load_readings(engine: Engine, since: float, province: str | None = None) -> Readings:
    """Field readings and probes' newest modem readings measured since ``since``.

    A probe's modem reading stands at its commune centre, for the operator of its uplink.
    """
    field_q = select(
        field_measurements.c.lon,
        field_measurements.c.lat,
        field_measurements.c.operator,
        field_measurements.c.rsrp_dbm,
        field_measurements.c.measured_at,
        field_measurements.c.source,
    ).where(field_measurements.c.measured_at >= since)
    modem_q = (
        select(
            communes.c.lon,
            communes.c.lat,
            probe_uplinks.c.operator,
            latest_results.c.rsrp_dbm,
            latest_results.c.measured_at,
            latest_results.c.probe_id,
        )
        .join(probes, probes.c.id == latest_results.c.probe_id)
        .join(communes, communes.c.code == probes.c.commune_code)
        .join(
            probe_uplinks,
            and_(
                probe_uplinks.c.probe_id == latest_results.c.probe_id,
                probe_uplinks.c.name == latest_results.c.uplink,
            ),
        )
        .where(
            latest_results.c.kind == "modem",
            latest_results.c.rsrp_dbm.is_not(None),
            latest_results.c.measured_at >= since,
        )
    )
    inside = None
    if province is not None:
        box, inside = near_province(engine, province, 5.0)
        field_q = field_q.where(_in_box(field_measurements, box))
        modem_q = modem_q.where(_in_box(communes, box))
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(field_q)]
        rows += [(*r[:5], f"probe:{r[5]}") for r in conn.execute(modem_q)]
    frame = pd.DataFrame(
        rows, columns=["lon", "lat", "operator", "rsrp_dbm", "measured_at", "source"]
    )
    if inside is not None and len(frame):
        frame = frame[inside(frame["lon"].to_numpy(float), frame["lat"].to_numpy(float))]
    n = len(frame)
    return Readings(
        lon=np.asarray(frame["lon"], dtype=np.float64).reshape(n),
        lat=np.asarray(frame["lat"], dtype=np.float64).reshape(n),
        operator=as_object(list(frame["operator"])),
        rsrp_dbm=np.asarray(frame["rsrp_dbm"], dtype=np.float64).reshape(n),
        measured_at=np.asarray(frame["measured_at"], dtype=np.float64).reshape(n),
        source=as_object(list(frame["source"])),
    )


def data_version(engine: Engine) -> tuple[Any, ...]:
    """Changes whenever hamlets, sites, boundaries or field readings change.

    Every write stamps ``updated_at`` (or appends a numbered row) and nothing is deleted except
    synthetic sectors, which only go with a new import; so the maxima and counts below move on
    every change. Probe modem readings are not in it: callers refresh those by age.
    """
    parts = [
        select(func.max(geodata_imports.c.id)).scalar_subquery(),
        select(func.max(hamlets.c.updated_at)).scalar_subquery(),
        select(func.max(sites.c.updated_at)).scalar_subquery(),
        select(func.count()).select_from(sites).scalar_subquery(),
        select(func.max(boundaries.c.updated_at)).scalar_subquery(),
        select(func.max(field_measurements.c.id)).scalar_subquery(),
    ]
    with engine.connect() as conn:
        row = conn.execute(select(*parts)).one()
    return tuple(row)


# -- history -----------------------------------------------------------------------------------


def list_imports(engine: Engine, limit: int = 100) -> list[dict[str, Any]]:
    query = select(geodata_imports).order_by(geodata_imports.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def hamlet_history(engine: Engine, hamlet_id: str) -> list[dict[str, Any]]:
    """Every version of a hamlet, oldest first; the current one last (``valid_to`` None)."""
    with engine.connect() as conn:
        current = conn.execute(select(hamlets).where(hamlets.c.id == hamlet_id)).mappings().first()
        if current is None:
            raise NotFoundError(f"hamlet {hamlet_id!r} does not exist")
        past = conn.execute(
            select(hamlet_versions)
            .where(hamlet_versions.c.hamlet_id == hamlet_id)
            .order_by(hamlet_versions.c.version)
        ).mappings()
        out = []
        for p in past:
            data = orjson.loads(p["data"])
            out.append(
                {
                    **data,
                    "version": p["version"],
                    "import_id": p["import_id"],
                    "valid_from": p["valid_from"],
                    "valid_to": p["valid_to"],
                }
            )
    now = dict(current)
    if now["geometry"] is not None:
        now["geometry"] = shapely.to_wkt(shapely.from_wkb(bytes(now["geometry"])))
    out.append(
        {
            **{k: now[k] for k in (*HAMLET_DATA, "version", "retired_at", "import_id")},
            "valid_from": now["updated_at"],
            "valid_to": None,
        }
    )
    return out
