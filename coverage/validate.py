"""Checking imported rows, kind by kind, into records in the tables' shape.

Every row is accepted or rejected with one reason naming the field and the value: unreadable,
invalid or empty geometry; outside Vietnam or outside the province asked for; a duplicate id in
the same file; an unknown commune code; a value out of range. Rows of another country's network
in an OpenCelliD export are skipped (counted, not listed). Hamlets without a commune code get
the commune their point is in.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely

from lomsong.coverage.cells import (
    FIELD_ALIASES,
    OPENCELLID_ALIASES,
    SITE_ALIASES,
    field_readings,
    sites,
)
from lomsong.coverage.crs import WGS84, parse_crs, to_wgs84
from lomsong.coverage.fields import (
    SKIP,
    Columns,
    ObjArray,
    Options,
    RowChecks,
    lon_lat,
    nullable_ints,
    records,
    reject_duplicates,
)
from lomsong.coverage.locate import (
    TOLERANCE_M,
    Geography,
    place_rows,
    reject_other_province,
    reject_unknown_communes,
)
from lomsong.coverage.model import Operator
from lomsong.coverage.readers import Table, normalise, points_table
from lomsong.errors import GeodataError, ValidationError

__all__ = ["KINDS", "Options", "Rejection", "Validated", "check_readings", "validate"]

KINDS = ("provinces", "communes", "hamlets", "sites", "field")

#: a hamlet with a commune code must lie this close to that commune's polygon
HAMLET_COMMUNE_TOLERANCE_M = 2000.0

MAX_REPORTED = 10_000

BOUNDARY_ALIASES: dict[str, tuple[str, ...]] = {
    "code": ("ma", "ma_xa", "ma_tinh", "commune_code", "province_code", "id", "ma_dvhc"),
    "name": ("ten", "ten_xa", "ten_tinh"),
    "population": ("pop", "dan_so", "so_dan"),
}
HAMLET_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("hamlet_id", "ma_thon", "ma"),
    "name": ("ten_thon", "ten", "hamlet_name", "hamlet", "thon", "ten_thon_ban"),
    # commune_co, has_grid_p: the names a Shapefile's 10-character limit leaves
    "commune_code": ("commune", "ma_xa", "xa_code", "commune_id", "ma_dvhc_xa", "commune_co"),
    "population": ("pop", "dan_so", "so_dan", "nhan_khau", "so_nhan_khau"),
    "households": ("hh", "so_ho", "ho", "ho_gia_dinh"),
    "has_grid_power": (
        "grid_power",
        "power_grid",
        "dien_luoi",
        "co_dien",
        "co_dien_luoi",
        "has_grid_p",
    ),
    "no_grid_power": ("khong_co_dien_luoi", "khong_co_dien", "without_power", "no_power"),
    "synthetic": ("gia_lap",),
}


@dataclass(frozen=True)
class Rejection:
    row: int
    id: str | None
    reason: str


@dataclass
class Validated:
    """The accepted rows of one file, in their table's shape, and what was refused and why."""

    kind: str
    format: str
    crs: str
    total: int
    records: list[dict[str, Any]]
    rejected: list[Rejection]
    skipped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: the id of every row, accepted or not: a replacing set does not retire a rejected row's id
    ids: frozenset[str] = frozenset()

    def reason_counts(self) -> dict[str, int]:
        """Rejections by reason without the detail: ``population: must be ≥ 0`` → count."""
        return dict(Counter(_without_detail(r.reason) for r in self.rejected))


def validate(
    table: Table, options: Options, geo: Geography, operators: tuple[Operator, ...]
) -> Validated:
    """Check every row of ``table`` as ``options.kind``; see the module docstring."""
    kind = options.kind
    if kind not in KINDS:
        raise ValidationError("KIND", kind, f"expected one of {{{', '.join(KINDS)}}}")
    if options.province is not None and options.province not in geo.province_names:
        raise ValidationError(
            "--province",
            options.province,
            f"unknown; known: {', '.join(sorted(geo.province_names))}",
        )
    if table.format == "opencellid" and kind != "sites":
        raise GeodataError(f"an OpenCelliD export holds cells: import it as `sites`, not `{kind}`")
    crs = _source_crs(table, options)
    notes: list[str] = []
    points, shapes = _geometry_in_wgs84(table, crs)
    if table.format in ("csv", "xlsx") and table.crs is None and options.crs is None:
        _refuse_projected_numbers(points)
    aliases = {
        "provinces": BOUNDARY_ALIASES,
        "communes": BOUNDARY_ALIASES,
        "hamlets": HAMLET_ALIASES,
        "sites": OPENCELLID_ALIASES if table.format == "opencellid" else SITE_ALIASES,
        "field": FIELD_ALIASES,
    }[kind]
    checks = RowChecks(table.frame, table.headers, aliases, options.columns)
    problems = table.problem
    checks.reject(problems != None, lambda i: str(problems[i]))  # noqa: E711 - element-wise
    builder = _BUILDERS[kind]
    ids, columns, skipped = builder(checks, points, shapes, options, geo, operators, notes)
    rejected = [
        Rejection(int(table.rows[i]), _id_text(ids[i]), str(checks.reasons[i]))
        for i in np.flatnonzero(~checks.ok)
        if checks.reasons[i] != SKIP
    ]
    return Validated(
        kind=kind,
        format=table.format,
        crs=crs.to_string(),
        total=len(table),
        records=records(columns, np.flatnonzero(checks.ok)),
        rejected=rejected,
        skipped=skipped,
        notes=notes,
        ids=frozenset(str(i) for i in ids if i is not None and i != ""),
    )


def _without_detail(reason: str) -> str:
    """``x: must be ≥ 0 (got '-5')`` → ``x: must be ≥ 0``: the part that is the same for all."""
    head, sep, _ = reason.rpartition(" (")
    return head if sep and reason.endswith(")") else reason


def _id_text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def _source_crs(table: Table, options: Options) -> Any:
    if options.crs is not None:
        return parse_crs(options.crs)
    return table.crs if table.crs is not None else WGS84


def _geometry_in_wgs84(table: Table, crs: Any) -> tuple[ObjArray, ObjArray]:
    """(representative points, the geometries themselves) in EPSG:4326; None where unusable."""
    geoms = table.geometry.copy()
    have = np.array([g is not None for g in geoms], dtype=bool)
    if have.any() and not crs.equals(WGS84, ignore_axis_order=True):

        def shift(coords: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            lon, lat = to_wgs84(coords[:, 0], coords[:, 1], crs)
            return np.column_stack([lon, lat])

        geoms[have] = shapely.transform(geoms[have], shift)
    points = np.full(len(geoms), None, dtype=object)
    usable = have.copy()
    usable[have] = shapely.is_valid(geoms[have]) & ~shapely.is_empty(geoms[have])
    for i in np.flatnonzero(have & ~usable):
        reason = "empty" if shapely.is_empty(geoms[i]) else shapely.is_valid_reason(geoms[i])
        table.problem[i] = table.problem[i] or f"geometry: invalid or empty ({reason})"
    points[usable] = shapely.point_on_surface(geoms[usable])
    geoms[~usable] = None
    return points, geoms


def _refuse_projected_numbers(points: ObjArray) -> None:
    have = np.array([p is not None for p in points], dtype=bool)
    if not have.any():
        return
    xs = shapely.get_x(points[have])
    if np.median(np.abs(xs)) > 1000:
        raise ValidationError(
            "--crs",
            None,
            "the coordinates look projected (metres, e.g. VN-2000 / TM-3); name their CRS, "
            "e.g. --crs EPSG:9210 (VN-2000 / TM-3 105°45') or --crs EPSG:3405 (VN-2000 / UTM 48N)",
        )


def _polygons(checks: RowChecks, shapes: ObjArray) -> None:
    kinds = np.array([None if g is None else g.geom_type for g in shapes], dtype=object)
    bad = np.array([k is not None and k not in ("Polygon", "MultiPolygon") for k in kinds])
    checks.reject(bad, lambda i: f"geometry: expected a polygon (got {kinds[i]})")


# -- the kinds ---------------------------------------------------------------------------------


def _boundaries(
    checks: RowChecks,
    points: ObjArray,
    shapes: ObjArray,
    options: Options,
    geo: Geography,
    operators: tuple[Operator, ...],
    notes: list[str],
) -> tuple[ObjArray, Columns, dict[str, int]]:
    level = "province" if options.kind == "provinces" else "commune"
    width = 2 if level == "province" else 5
    codes = checks.code("code", width, required=True)
    population = checks.count("population")
    _polygons(checks, shapes)
    if level == "province":
        unknown = np.array([c is not None and c not in geo.province_names for c in codes])
        label = checks.label("code")
        checks.reject(unknown, lambda i: f"{label}: unknown 2025 province code (got {codes[i]!r})")
        if options.province is not None:
            other = np.array([c is not None and c != options.province for c in codes])
            checks.reject(
                other, lambda i: f"{label}: not province {options.province} (got {codes[i]!r})"
            )
    else:
        reject_unknown_communes(checks, codes, "code", geo)
        reject_other_province(checks, codes, "code", options, geo)
    have = np.array([p is not None for p in points], dtype=bool) & checks.ok
    inside = np.ones(len(points), dtype=bool)
    inside[have] = geo.inside_vietnam(points[have], TOLERANCE_M[options.kind])
    checks.reject(have & ~inside, "geometry: outside Vietnam")
    reject_duplicates(checks, codes, checks.label("code"))
    columns: Columns = {
        "level": level,
        "code": codes,
        "geometry": np.array(shapely.to_wkb(shapes), dtype=object),
        "population": nullable_ints(population),
    }
    return codes, columns, {}


def _slug(text: str) -> str:
    return normalise(text)[:40]


def _hamlets(
    checks: RowChecks,
    points: ObjArray,
    shapes: ObjArray,
    options: Options,
    geo: Geography,
    operators: tuple[Operator, ...],
    notes: list[str],
) -> tuple[ObjArray, Columns, dict[str, int]]:
    ids = checks.text("id", required=True, max_length=64) if checks.has("id") else None
    names = checks.text("name", required=True)
    given = checks.code("commune_code", 5)
    population = checks.count("population")
    households = checks.count("households")
    power = checks.flag("has_grid_power")
    if checks.has("no_grid_power"):
        lacking = checks.flag("no_grid_power")
        power = np.array([p if n is None else (not n) for p, n in zip(power, lacking, strict=True)])
    synthetic = checks.flag("synthetic")
    reject_unknown_communes(checks, given, "commune_code", geo)
    found = place_rows(checks, points, options, geo)
    codes = np.where(given != None, given, found)  # noqa: E711 - element-wise
    missing = checks.ok & np.array([c is None for c in codes], dtype=bool)
    checks.reject(missing, "commune_code: empty, and the point is in no commune")
    assigned = int(np.sum(checks.ok & (given == None)))  # noqa: E711
    if assigned:
        notes.append(f"{assigned} hamlets got their commune code from their point")
    far = geo.distance_to_commune(points, np.where(given != None, given, ""))  # noqa: E711
    label = checks.label("commune_code")
    checks.reject(
        far > HAMLET_COMMUNE_TOLERANCE_M,
        lambda i: (
            f"{label}: the point lies outside this commune "
            f"(got {given[i]!r}, {geo.known[given[i]][0]}: {far[i] / 1000:.1f} km away)"
        ),
    )
    reject_other_province(checks, codes, "commune_code", options, geo)
    if ids is None:
        ids = np.array(
            [f"{c}:{_slug(n)}" if c else "" for c, n in zip(codes, names, strict=True)],
            dtype=object,
        )
        notes.append("no id column: ids made from the commune code and the name")
    reject_duplicates(checks, ids, checks.label("id"))
    lon, lat = lon_lat(points)
    polygon = np.array(
        [g is not None and g.geom_type in ("Polygon", "MultiPolygon") for g in shapes], dtype=bool
    )
    wkb = np.full(checks.n, None, dtype=object)
    wkb[polygon] = shapely.to_wkb(shapes[polygon])
    columns: Columns = {
        "id": ids,
        "name": names,
        "commune_code": codes,
        "province_code": np.array(
            [geo.known.get(c, ("", "", None))[2] for c in codes], dtype=object
        ),
        "lat": lat,
        "lon": lon,
        "geometry": wkb,
        "population": nullable_ints(population),
        "households": nullable_ints(households),
        "has_grid_power": power,
        "synthetic": np.array(
            [bool(options.synthetic or s is True) for s in synthetic], dtype=object
        ),
    }
    return ids, columns, {}


_BUILDERS = {
    "provinces": _boundaries,
    "communes": _boundaries,
    "hamlets": _hamlets,
    "sites": sites,
    "field": field_readings,
}


def check_readings(
    readings: list[dict[str, Any]],
    geo: Geography,
    operators: tuple[Operator, ...],
    *,
    source: str = "api",
    province: str | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Field readings posted to the API: (records, errors); each error names reading and field.

    With ``province`` a reading outside it is refused (a probe writes only where it stands)."""
    frame = pd.DataFrame(readings, dtype=object)
    for name in ("lat", "lon", "operator", "rsrp_dbm", "measured_at"):
        if name not in frame.columns:
            frame[name] = None
    table = points_table(frame, 0, "api", "lat", "lon")
    options = Options(kind="field", source=source, province=province)
    checked = validate(table, options, geo, operators)
    errors = [f"readings[{r.row}].{r.reason}" for r in checked.rejected]
    return checked.records, errors
