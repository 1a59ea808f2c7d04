"""Coordinates into WGS 84 (EPSG:4326), with the VN-2000 datum shift applied.

VN-2000 uses the WGS 84 ellipsoid but not its centre: the same latitude and longitude name points
about 220 m apart near Hà Nội. A transformation that only swaps the ellipsoid ("ballpark") would
leave every hamlet and site from a Vietnamese survey 200–300 m off, so VN-2000 inputs (geographic
EPSG:4756, UTM EPSG:3405/3406, the provincial TM-3 zones EPSG:9205–9218, or any CRS whose datum is
VN-2000) go through an explicit pipeline: the inverse map projection, then the seven-parameter
Helmert transformation of Decision 05/2007/QĐ-BTNMT, which is also EPSG:6960 "VN-2000 to WGS 84
(2)". Building it ourselves keeps the result the same whatever PROJ database is installed.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from lomsong.coverage.model import FloatArray
from lomsong.errors import ValidationError

WGS84 = CRS.from_epsg(4326)

# Decision 05/2007/QĐ-BTNMT (27 Feb 2007), Article 1: translations in metres, rotations in
# arc-seconds, scale k = 1.000000252906278 (0.252906278 ppm), coordinate-frame rotation convention
# (EPSG method 9607), VN-2000 → WGS 84.
VN2000_HELMERT = {
    "x": -191.90441429,
    "y": -39.30318279,
    "z": -111.45032835,
    "rx": -0.00928836,
    "ry": 0.01975479,
    "rz": -0.00427372,
    "s": 0.252906278,
}

_HELMERT_PIPELINE = (
    "+proj=pipeline "
    "+step +proj=unitconvert +xy_in=deg +xy_out=rad "
    "+step +proj=push +v_3 "
    "+step +proj=cart +ellps=WGS84 "
    "+step +proj=helmert +convention=coordinate_frame "
    + " ".join(f"+{k}={v}" for k, v in VN2000_HELMERT.items())
    + " +step +inv +proj=cart +ellps=WGS84 "
    "+step +proj=pop +v_3 "
    "+step +proj=unitconvert +xy_in=rad +xy_out=deg"
)

#: EPSG codes of the VN-2000 CRSs the import names in its help (any VN-2000 CRS is accepted).
VN2000_CODES = (4756, 3405, 3406, *range(9205, 9219))


def parse_crs(value: str | int, field: str = "--crs") -> CRS:
    """``"EPSG:3405"``, ``"3405"`` or any PROJ/WKT text → a CRS; an error names the value."""
    text = str(value).strip()
    if text.isdigit():
        text = f"EPSG:{text}"
    try:
        return CRS.from_user_input(text)
    except CRSError as exc:
        raise ValidationError(field, value, f"not a coordinate reference system ({exc})") from None


def is_vn2000(crs: CRS) -> bool:
    """True when the CRS's datum is VN-2000 (EPSG datum 6756), whatever the projection."""
    datum = crs.datum
    if datum is None:
        return False
    ident = datum.to_json_dict().get("id", {})
    if ident.get("authority") == "EPSG" and ident.get("code") == 6756:
        return True
    name = datum.name.lower().replace("_", " ").replace("-", " ")
    return "vietnam 2000" in name or "vn 2000" in name


@cache
def _vn2000_helmert() -> Transformer:
    return Transformer.from_pipeline(_HELMERT_PIPELINE)


@cache
def _transformer(crs_text: str) -> Transformer:
    crs = CRS.from_user_input(crs_text)
    return Transformer.from_crs(crs, WGS84, always_xy=True, only_best=True)


@cache
def _to_geographic(crs_text: str) -> Transformer:
    """The inverse map projection of a projected VN-2000 CRS, onto VN-2000 lon/lat (no datum)."""
    crs = CRS.from_user_input(crs_text)
    geodetic = crs.geodetic_crs
    assert geodetic is not None
    return Transformer.from_crs(crs, geodetic, always_xy=True)


def to_wgs84(x: FloatArray, y: FloatArray, crs: CRS) -> tuple[FloatArray, FloatArray]:
    """Transform easting/longitude ``x`` and northing/latitude ``y`` in ``crs`` to lon, lat.

    Parameters
    ----------
    x, y
        Coordinates in ``crs``, x first (longitude or easting) whatever the CRS's axis order.
    crs
        The source CRS. VN-2000 CRSs get the Decision 05/2007 datum shift.

    Returns
    -------
    lon, lat in degrees, EPSG:4326.

    Examples
    --------
    >>> lon, lat = to_wgs84(np.array([105.85]), np.array([21.03]), parse_crs(4756))
    >>> round(float(lon[0]), 5), round(float(lat[0]), 5)
    (105.85188, 21.02901)
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if crs.equals(WGS84, ignore_axis_order=True):
        return x, y
    text = crs.to_wkt()
    if is_vn2000(crs):
        if crs.is_projected:
            x, y = _to_geographic(text).transform(x, y)
        lon, lat = _vn2000_helmert().transform(x, y)
        return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    transformer = _transformer(text)
    if "ballpark" in transformer.description.lower():
        raise ValidationError(
            "--crs",
            crs.to_string(),
            "PROJ knows no datum transformation from this CRS to WGS 84 (only a ballpark one, "
            "which can be hundreds of metres off); reproject the file first",
        )
    lon, lat = transformer.transform(x, y)
    return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
