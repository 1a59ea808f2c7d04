"""Where points are: inside Vietnam, inside a province, in which commune.

The boundary layers are simplified (about 200 m), so a point a little outside its polygon is
still taken as inside when it is within a tolerance; a point in no commune polygon but within
the tolerance of one belongs to the nearest. The ``place_rows``/``reject_*`` functions apply
these tests to imported rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import shapely
from sqlalchemy import Engine, select

from lomsong.coverage import boundaries
from lomsong.coverage.fields import Options, RowChecks, lon_lat
from lomsong.coverage.model import BoolArray, FloatArray
from lomsong.storage.schema import communes as communes_table

ObjArray = npt.NDArray[np.object_]

#: metres per degree of latitude; tolerances are small enough to use it for longitude too
M_PER_DEG = 111_320.0


@dataclass
class Geography:
    """The reference layers one import or one API process checks points against."""

    communes: gpd.GeoDataFrame
    provinces: gpd.GeoDataFrame
    vietnam: shapely.Geometry
    #: commune code → (name, type, province code) of every commune the database knows
    known: dict[str, tuple[str, str, str]]
    province_names: dict[str, str]

    @classmethod
    def load(cls, engine: Engine) -> Geography:
        comm = boundaries.communes(engine)
        prov = boundaries.provinces(engine)
        vietnam = shapely.union_all(prov.geometry.to_numpy())
        shapely.prepare(vietnam)
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    communes_table.c.code,
                    communes_table.c.name,
                    communes_table.c.type,
                    communes_table.c.province_code,
                )
            ).all()
        known = {str(code): (str(name), str(kind), str(p)) for code, name, kind, p in rows}
        names = dict(zip(prov["code"], prov["name"], strict=True))
        comm.sindex  # noqa: B018 - build the R-tree once, before the first query
        return cls(comm, prov, vietnam, known, names)

    def province_label(self, code: str) -> str:
        return f"{code} {self.province_names.get(code, '?')}"

    def inside_vietnam(self, points: ObjArray, tolerance_m: float) -> BoolArray:
        return np.asarray(shapely.dwithin(self.vietnam, points, tolerance_m / M_PER_DEG))

    def inside_province(self, points: ObjArray, code: str, tolerance_m: float) -> BoolArray:
        shape = self.provinces.loc[self.provinces["code"] == code].geometry
        if shape.empty:
            return np.zeros(len(points), dtype=bool)
        geom = shape.iloc[0]
        shapely.prepare(geom)
        return np.asarray(shapely.dwithin(geom, points, tolerance_m / M_PER_DEG))

    def commune_at(self, points: ObjArray, tolerance_m: float) -> ObjArray:
        """The code of the commune each point is in (or nearest within tolerance), else None."""
        out = np.full(len(points), None, dtype=object)
        codes = self.communes["code"].to_numpy()
        present = np.array([p is not None for p in points], dtype=bool)
        idx = np.flatnonzero(present)
        if idx.size == 0:
            return out
        geoms = gpd.GeoSeries(points[idx], crs="EPSG:4326")
        hit, tree = self.communes.sindex.query(geoms, predicate="within")
        # a point on a shared border is within neither polygon (or, rarely, both): first wins
        first = np.unique(hit, return_index=True)[1]
        out[idx[hit[first]]] = codes[tree[first]]
        left = np.flatnonzero(out[idx] == None)  # noqa: E711 - element-wise on an object array
        if left.size:
            near_hit, near_tree = self.communes.sindex.nearest(
                geoms.iloc[left], max_distance=tolerance_m / M_PER_DEG, return_all=False
            )
            out[idx[left[near_hit]]] = codes[near_tree]
        return out

    def distance_to_commune(self, points: ObjArray, codes: ObjArray) -> FloatArray:
        """Approximate metres from each point to the polygon of its commune (0 inside)."""
        index = {c: i for i, c in enumerate(self.communes["code"])}
        polys = self.communes.geometry.to_numpy()
        which = np.array([index.get(c, -1) for c in codes], dtype=np.int64)
        have = (which >= 0) & np.array([p is not None for p in points], dtype=bool)
        out = np.full(len(points), np.nan)
        out[have] = shapely.distance(polys[which[have]], points[have]) * M_PER_DEG
        return out


#: how far outside the (simplified) boundaries a point may lie and still count as inside
TOLERANCE_M = {
    "provinces": 1000.0,
    "communes": 1000.0,
    "hamlets": 1000.0,
    # OpenCelliD positions are averages of where phones heard a cell: less exact
    "sites": 2000.0,
    "field": 2000.0,
}


def place_rows(checks: RowChecks, points: ObjArray, options: Options, geo: Geography) -> ObjArray:
    """Reject points outside Vietnam or the province; return each point's commune code."""
    tol = TOLERANCE_M[options.kind]
    have = np.array([p is not None for p in points], dtype=bool) & checks.ok
    lon, lat = lon_lat(points)
    inside = np.ones(len(points), dtype=bool)
    inside[have] = geo.inside_vietnam(points[have], tol)
    checks.reject(
        have & ~inside, lambda i: f"geometry: outside Vietnam (lon {lon[i]:.5f}, lat {lat[i]:.5f})"
    )
    if options.province is not None:
        have = have & checks.ok
        inside[have] = geo.inside_province(points[have], options.province, tol)
        label = geo.province_label(options.province)
        checks.reject(
            have & ~inside,
            lambda i: f"geometry: outside province {label} (lon {lon[i]:.5f}, lat {lat[i]:.5f})",
        )
    codes = np.full(len(points), None, dtype=object)
    have = have & checks.ok
    codes[have] = geo.commune_at(points[have], tol)
    return codes


def reject_unknown_communes(checks: RowChecks, codes: ObjArray, name: str, geo: Geography) -> None:
    unknown = np.array([c is not None and c not in geo.known for c in codes], dtype=bool)
    label = checks.label(name)
    checks.reject(unknown, lambda i: f"{label}: unknown 2025 commune code (got {codes[i]!r})")


def reject_other_province(
    checks: RowChecks, codes: ObjArray, name: str, options: Options, geo: Geography
) -> None:
    if options.province is None:
        return
    want = options.province
    other = np.array([c is not None and c in geo.known and geo.known[c][2] != want for c in codes])
    label = checks.label(name)
    checks.reject(
        other,
        lambda i: (
            f"{label}: commune in another province than {geo.province_label(want)} "
            f"(got {codes[i]!r}, in {geo.province_label(geo.known[codes[i]][2])})"
        ),
    )
