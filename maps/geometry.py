"""Polygons made light enough for a browser: simplified, coordinates rounded, as GeoJSON.

A commune layer is a *coverage* (neighbours share their borders), so it is simplified with
``shapely.coverage_simplify``, which moves a shared border once for both sides: simplifying each
polygon on its own opens slivers between neighbours. Five decimals of a degree are about a
metre, four about eleven: below what a province or a national view can show.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import shapely

GeometryArray = npt.NDArray[np.object_]

#: simplified polygons by (digest of the input, tolerance, decimals, coverage); a memo of a pure
#: function, bounded: a few dozen provinces and the national layers
_LIGHT: dict[tuple[bytes, float, int, bool], GeometryArray] = {}
_LIGHT_SIZE = 128
_LOCK = threading.Lock()


def round_coordinates(geoms: GeometryArray, decimals: int) -> GeometryArray:
    out: GeometryArray = shapely.transform(geoms, lambda xy: np.round(xy, decimals))
    return out


def light_polygons(
    geoms: GeometryArray, *, tolerance: float, decimals: int, coverage: bool
) -> GeometryArray:
    """Simplify (as a coverage, or each alone keeping its topology) and round.

    Parameters
    ----------
    geoms
        Polygons or multipolygons in EPSG:4326.
    tolerance
        In degrees (0.0005° is about 50 m).
    decimals
        Decimals kept of each coordinate.
    coverage
        The polygons tile an area without overlaps (communes): simplify shared borders once.

    Examples
    --------
    >>> light = light_polygons(communes.geometry.to_numpy(), tolerance=5e-4,
    ...                        decimals=5, coverage=True)  # doctest: +SKIP
    """
    geoms = np.asarray(geoms, dtype=object)
    if len(geoms) == 0:
        return geoms
    # The same boundaries are drawn again and again (every rebuild of a page): remember the
    # result by a digest of the geometry's bytes.
    digest = hashlib.blake2b(b"".join(shapely.to_wkb(geoms)), digest_size=16).digest()
    key = (digest, tolerance, decimals, coverage)
    with _LOCK:
        hit = _LIGHT.get(key)
    if hit is not None:
        return hit
    if coverage:
        simple = shapely.coverage_simplify(geoms, tolerance)
    else:
        simple = shapely.simplify(geoms, tolerance, preserve_topology=True)
    light = round_coordinates(simple, decimals)
    with _LOCK:
        _LIGHT[key] = light
        while len(_LIGHT) > _LIGHT_SIZE:
            _LIGHT.pop(next(iter(_LIGHT)))
    return light


def feature_collection(
    geoms: GeometryArray, properties: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """A GeoJSON FeatureCollection, feature ``i`` with ``id`` i; empty geometries left out."""
    if len(geoms) != len(properties):
        raise ValueError(f"{len(geoms)} geometries but {len(properties)} property rows")
    texts = shapely.to_geojson(np.asarray(geoms, dtype=object))
    empty = shapely.is_empty(geoms)
    features = [
        {"type": "Feature", "id": i, "geometry": orjson.loads(text), "properties": props}
        for i, (text, props, gone) in enumerate(zip(texts, properties, empty, strict=True))
        if not gone and text is not None
    ]
    return {"type": "FeatureCollection", "features": features}


def point_collection(
    lon: npt.NDArray[np.float64],
    lat: npt.NDArray[np.float64],
    properties: Sequence[dict[str, Any]],
    *,
    decimals: int = 5,
) -> dict[str, Any]:
    """Points as a GeoJSON FeatureCollection, feature ``i`` with ``id`` i."""
    xs = np.round(lon, decimals).tolist()
    ys = np.round(lat, decimals).tolist()
    features = [
        {
            "type": "Feature",
            "id": i,
            "geometry": {"type": "Point", "coordinates": [x, y]},
            "properties": props,
        }
        for i, (x, y, props) in enumerate(zip(xs, ys, properties, strict=True))
    ]
    return {"type": "FeatureCollection", "features": features}
