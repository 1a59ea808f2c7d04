"""Shared by the geodata import, export and API tests: the fixture files and a VN-2000 Helmert
written independently of PROJ, to check the transformation the import applies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

DATA = Path(__file__).with_name("data")

# WGS 84 ellipsoid (VN-2000 uses it too, centred elsewhere)
A = 6_378_137.0
F = 1 / 298.257223563
E2 = F * (2 - F)
ARCSEC = np.pi / (180 * 3600)

# Decision 05/2007/QĐ-BTNMT, Article 1, as published (metres, arc-seconds, scale factor k)
DX, DY, DZ = -191.90441429, -39.30318279, -111.45032835
RX, RY, RZ = -0.00928836, 0.01975479, -0.00427372
K = 1.000000252906278

Floats = npt.NDArray[np.float64]


def vn2000_to_wgs84(lon: Floats, lat: Floats) -> tuple[Floats, Floats]:
    """VN-2000 lon/lat → WGS 84 lon/lat: geodetic → ECEF, 7-parameter Helmert in the
    coordinate-frame convention, ECEF → geodetic by Bowring-style iteration (heights 0)."""
    lam, phi = np.radians(lon), np.radians(lat)
    n = A / np.sqrt(1 - E2 * np.sin(phi) ** 2)
    xyz = np.stack(
        [n * np.cos(phi) * np.cos(lam), n * np.cos(phi) * np.sin(lam), n * (1 - E2) * np.sin(phi)]
    )
    rx, ry, rz = RX * ARCSEC, RY * ARCSEC, RZ * ARCSEC
    rotation = np.array([[1, rz, -ry], [-rz, 1, rx], [ry, -rx, 1]])
    x, y, z = np.array([[DX], [DY], [DZ]]) + K * (rotation @ xyz)
    p = np.hypot(x, y)
    out_phi = np.arctan2(z, p * (1 - E2))
    for _ in range(10):
        n = A / np.sqrt(1 - E2 * np.sin(out_phi) ** 2)
        h = p / np.cos(out_phi) - n
        out_phi = np.arctan2(z, p * (1 - E2 * n / (n + h)))
    return np.degrees(np.arctan2(y, x)), np.degrees(out_phi)


def metres_between(lon1: Floats, lat1: Floats, lon2: Floats, lat2: Floats) -> Floats:
    """Distance on the WGS 84 ellipsoid (pyproj's geodesic)."""
    from pyproj import Geod

    _, _, dist = Geod(ellps="WGS84").inv(lon1, lat1, lon2, lat2)
    return np.asarray(dist, dtype=np.float64)
