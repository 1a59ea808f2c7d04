"""What a map is drawn from: plain values that the engine, the store or a test can build.

The map builders never query anything. A province map takes the communes (from
``lomsong.coverage.boundaries``), a :class:`ProvinceCoverage` (hamlets, sectors and their
classification from the engine, dead-zone polygons) and the probes with their live state
(``lomsong.maps.probes.ProbeMarker``); the national overview takes :func:`commune_shares` of a
classification (a :class:`NationalCoverage` carries them with whether any of it is synthetic).
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd

from lomsong.coverage.model import NONE, Classification, Hamlets, Sectors
from lomsong.errors import ValidationError

OSM_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
OSM_ATTRIBUTION = (
    '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'
)
DEAD_ZONE_COLUMNS = ("code", "province_code", "area_km2", "geometry")


@dataclass(frozen=True)
class TileSource:
    """Where the base map comes from: an XYZ URL template and its attribution."""

    url: str = OSM_TILES
    attribution: str = OSM_ATTRIBUTION
    max_zoom: int = 19


@dataclass
class ProvinceCoverage:
    """Hamlets, sectors and the engine's answer for them, with the dead-zone polygons.

    Row ``i`` of ``classification`` is hamlet ``i``; ``classification.serving`` indexes
    ``sectors``. ``dead_zones`` has the columns of ``lomsong.coverage.deadzones.dead_zones``:
    code (the commune), province_code, area_km2, geometry (EPSG:4326).
    """

    hamlets: Hamlets
    sectors: Sectors
    classification: Classification
    dead_zones: gpd.GeoDataFrame
    #: the sites were made up (``sites.synthetic``); hamlets say it themselves
    synthetic_sites: bool = False

    def __post_init__(self) -> None:
        n, c = len(self.hamlets), self.classification
        if len(c) != n:
            raise ValidationError(
                "classification", len(c), f"has a row per hamlet: expected {n} rows"
            )
        k = len(c.operators)
        for name in ("rsrp_dbm", "measured", "serving", "status"):
            shape = getattr(c, name).shape
            if shape != (n, k):
                raise ValidationError(f"classification.{name}", shape, f"expected shape {(n, k)}")
        if c.serving.size and int(c.serving.max()) >= len(self.sectors):
            raise ValidationError(
                "classification.serving",
                int(c.serving.max()),
                f"indexes the sectors: expected below {len(self.sectors)}",
            )
        if c.best_operator.size and int(c.best_operator.max()) >= k:
            raise ValidationError(
                "classification.best_operator",
                int(c.best_operator.max()),
                f"indexes the operators: expected below {k}",
            )
        missing = [col for col in DEAD_ZONE_COLUMNS if col not in self.dead_zones.columns]
        if missing:
            raise ValidationError(
                "dead_zones", list(self.dead_zones.columns), f"lacks the columns {missing}"
            )

    @property
    def synthetic_hamlets(self) -> bool:
        return bool(self.hamlets.synthetic.any())


@dataclass
class NationalCoverage:
    """Per commune: hamlets and population, and those with no signal (``commune_shares``)."""

    shares: pd.DataFrame
    synthetic: bool


def commune_shares(hamlets: Hamlets, classification: Classification) -> pd.DataFrame:
    """Per commune: hamlets, population, and the hamlets and population with no signal.

    Returns a frame indexed by commune code with ``hamlets``, ``population``,
    ``none_hamlets``, ``none_population`` and ``share`` (none_population / population; NaN for
    a commune whose hamlets have no population).

    Examples
    --------
    >>> shares = commune_shares(hamlets, classification)  # doctest: +SKIP
    >>> shares.loc["01273", "share"]  # doctest: +SKIP
    0.12
    """
    if len(classification) != len(hamlets):
        raise ValidationError(
            "classification",
            len(classification),
            f"has a row per hamlet: expected {len(hamlets)} rows",
        )
    none = classification.overall == NONE
    pop = hamlets.population.astype(np.int64)
    frame = pd.DataFrame(
        {
            "commune_code": hamlets.commune_code.astype(str),
            "hamlets": 1,
            "population": pop,
            "none_hamlets": none.astype(np.int64),
            "none_population": np.where(none, pop, 0),
        }
    )
    out = frame.groupby("commune_code").sum()
    out["share"] = out["none_population"] / out["population"].where(out["population"] > 0)
    return out


def commune_names(communes: gpd.GeoDataFrame) -> list[str]:
    """Each commune's full name ("Xã Bảo Lâm"), as the status page and alerts say it: the
    ``full_name`` column of ``lomsong.coverage.boundaries.communes``, or, in a frame without
    one, its kind before its name."""
    if "full_name" in communes:
        return [str(n) for n in communes["full_name"]]
    if "type" in communes:
        return [
            f"{str(t).capitalize()} {n}"
            for t, n in zip(communes["type"], communes["name"], strict=True)
        ]
    return [str(n) for n in communes["name"]]
