"""Where served and written maps get their coverage: the collector's ``CoverageService``.

The maps do not classify on their own: they ask the same :class:`CoverageService` as the
coverage API, so a province is classified once (cached per data version and age) and the live
outage overlay is the same one (``lomsong.coverage.overlay.down_links``: an operator's uplink
down takes that operator down in the probe's commune; a probe silent for power or network takes
every operator of its commune down). The dead-zone polygons are computed here, once per
classified area.

Anything that answers :class:`CoverageSource` can stand in for it: the tests and the benchmark
hand the map service coverage they built themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable
from typing import Protocol

import geopandas as gpd
import numpy as np
from sqlalchemy import func, select

from lomsong.collector.coverage_service import CoverageService
from lomsong.coverage import boundaries, deadzones
from lomsong.coverage.compute import Area, with_outages
from lomsong.coverage.model import CoverageSettings
from lomsong.maps.inputs import NationalCoverage, ProvinceCoverage, commune_shares
from lomsong.storage.schema import sites

#: (commune code, operator) that the open outages take down
DownLinks = Iterable[tuple[str, str]]


class CoverageSource(Protocol):
    """What the map service asks for."""

    def version(self, province: str | None) -> Hashable:
        """Changes whenever the coverage of ``province`` (``None``: anywhere) may have."""

    def province(
        self, code: str, *, now: float, down_links: DownLinks = ()
    ) -> ProvinceCoverage | None:
        """The province's coverage with the live outages applied; ``None`` when it has none."""

    def national(self, *, now: float, down_links: DownLinks = ()) -> NationalCoverage | None:
        """Every province's, as shares per commune; ``None`` when no province has any."""


class ServiceCoverageSource:
    """Coverage from a :class:`CoverageService`, with dead zones computed once per area build."""

    def __init__(self, service: CoverageService) -> None:
        self.service = service
        self._extra: dict[str, tuple[Hashable, gpd.GeoDataFrame, bool]] = {}
        self._lock = threading.Lock()

    @property
    def settings(self) -> CoverageSettings:
        return self.service.settings

    def version(self, province: str | None) -> Hashable:
        """The geodata version and when the area was classified (it is rebuilt with age too)."""
        area = self.service.area(province)
        return (area.version, area.built_at)

    def province(
        self, code: str, *, now: float, down_links: DownLinks = ()
    ) -> ProvinceCoverage | None:
        area = self.service.area(code)
        if len(area.hamlets) == 0:
            return None
        live = with_outages(area, down_links)
        zones, synthetic_sites = self._extras(code, area)
        return ProvinceCoverage(
            area.hamlets, area.sectors, live, zones, synthetic_sites=synthetic_sites
        )

    def national(self, *, now: float, down_links: DownLinks = ()) -> NationalCoverage | None:
        area = self.service.area(None)
        if len(area.hamlets) == 0:
            return None
        live = with_outages(area, down_links)
        synthetic = bool(np.any(area.hamlets.synthetic)) or self._synthetic_sites(None)
        return NationalCoverage(commune_shares(area.hamlets, live), synthetic)

    def _extras(self, code: str, area: Area) -> tuple[gpd.GeoDataFrame, bool]:
        """The dead-zone polygons and whether the sites are synthetic, once per area build."""
        key = (area.version, area.built_at)
        with self._lock:
            hit = self._extra.get(code)
            if hit is not None and hit[0] == key:
                return hit[1], hit[2]
        zones = deadzones.dead_zones(
            boundaries.communes(self.service.engine, code), area.sectors, self.settings
        )
        synthetic = self._synthetic_sites(code)
        with self._lock:
            self._extra[code] = (key, zones, synthetic)
        return zones, synthetic

    def _synthetic_sites(self, province: str | None) -> bool:
        query = select(func.count()).where(sites.c.synthetic.is_(True))
        if province is not None:
            query = query.where(sites.c.province_code == province)
        with self.service.engine.connect() as conn:
            return bool(conn.execute(query).scalar_one())
