"""Where served and written maps get their coverage: the store and the engine.

This is the one module of the maps that calls the coverage store and engine, by the names of the
coverage contract: ``lomsong.coverage.store.load_hamlets(engine, province)``,
``load_sectors(engine, province)``, ``load_readings(engine, since)``;
``lomsong.coverage.engine.classify(hamlets, sectors, readings, settings, now=)`` and
``apply_outages(classification, hamlets, sectors, down_sectors=, down_links=)``;
``lomsong.coverage.deadzones.dead_zones(communes, sectors, settings)``.

Anything that answers :class:`CoverageSource` can stand in for it: the tests and the benchmark
hand the map service coverage they built themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Protocol

import pandas as pd
from sqlalchemy import Engine, func, select

from lomsong.collector.schema import boundaries, field_measurements, hamlets, sites
from lomsong.coverage import boundaries as coverage_boundaries
from lomsong.coverage import engine as coverage_engine
from lomsong.coverage import store
from lomsong.coverage.deadzones import dead_zones
from lomsong.coverage.model import Classification, CoverageSettings, Hamlets, Sectors
from lomsong.maps.inputs import ProvinceCoverage, commune_shares

#: (commune code, operator) whose probe reports that operator's link down
DownLinks = Iterable[tuple[str, str]]


@dataclass
class NationalCoverage:
    """Per commune: hamlets and population, and those with no signal (``commune_shares``)."""

    shares: pd.DataFrame
    synthetic: bool


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


@dataclass
class _Classified:
    hamlets: Hamlets
    sectors: Sectors
    base: Classification
    coverage: ProvinceCoverage


class StoreCoverageSource:
    """Coverage from the database through the store and the engine, cached per data version."""

    def __init__(self, engine: Engine, settings: CoverageSettings | None = None) -> None:
        self.engine = engine
        self.settings = settings or CoverageSettings()
        self._cache: dict[str, tuple[Hashable, _Classified | None]] = {}
        self._lock = threading.Lock()

    def version(self, province: str | None) -> Hashable:
        h, s = hamlets.c, sites.c
        hq = select(func.count(), func.max(h.updated_at), func.max(h.retired_at))
        sq = select(func.count(), func.max(s.updated_at))
        if province is not None:
            hq = hq.where(h.province_code == province)
            sq = sq.where(s.province_code == province)
        fq = select(func.count(), func.max(field_measurements.c.received_at))
        bq = select(func.count(), func.max(boundaries.c.updated_at))
        with self.engine.connect() as conn:
            return tuple(tuple(conn.execute(q).one()) for q in (hq, sq, fq, bq))

    def province(
        self, code: str, *, now: float, down_links: DownLinks = ()
    ) -> ProvinceCoverage | None:
        done = self._classified(code, now)
        if done is None:
            return None
        live = coverage_engine.apply_outages(
            done.base,
            done.hamlets,
            done.sectors,
            down_sectors=~done.sectors.active,
            down_links=list(down_links),
        )
        c = done.coverage
        return ProvinceCoverage(
            c.hamlets, c.sectors, live, c.dead_zones, synthetic_sites=c.synthetic_sites
        )

    def national(self, *, now: float, down_links: DownLinks = ()) -> NationalCoverage | None:
        with self.engine.connect() as conn:
            codes = sorted(
                conn.execute(
                    select(hamlets.c.province_code).where(hamlets.c.retired_at.is_(None)).distinct()
                ).scalars()
            )
        links = list(down_links)
        frames, synthetic = [], False
        for code in codes:
            cov = self.province(code, now=now, down_links=links)
            if cov is None:
                continue
            frames.append(commune_shares(cov.hamlets, cov.classification))
            synthetic = synthetic or cov.synthetic_hamlets or cov.synthetic_sites
        if not frames:
            return None
        return NationalCoverage(pd.concat(frames), synthetic)

    def _classified(self, code: str, now: float) -> _Classified | None:
        version = self.version(code)
        with self._lock:
            hit = self._cache.get(code)
            if hit is not None and hit[0] == version:
                return hit[1]
            done = self._classify(code, now)
            self._cache[code] = (version, done)
            return done

    def _classify(self, code: str, now: float) -> _Classified | None:
        h = store.load_hamlets(self.engine, code)
        if len(h) == 0:
            return None
        s = store.load_sectors(self.engine, code, settings=self.settings)
        since = now - self.settings.measured_max_age_days * 86_400
        readings = store.load_readings(self.engine, since)
        base = coverage_engine.classify(h, s, readings, self.settings, now=now)
        zones = dead_zones(coverage_boundaries.communes(self.engine, code), s, self.settings)
        with self.engine.connect() as conn:
            synthetic_sites = bool(
                conn.execute(
                    select(func.count()).where(
                        sites.c.province_code == code, sites.c.synthetic.is_(True)
                    )
                ).scalar_one()
            )
        coverage = ProvinceCoverage(h, s, base, zones, synthetic_sites=synthetic_sites)
        return _Classified(h, s, base, coverage)


def down_links_of(open_outages: Iterable[dict[str, object]]) -> list[tuple[str, str]]:
    """(commune, operator) of every open uplink-down outage of a cellular operator's link.

    A silent probe is left out: a commune centre without power says nothing of the network.
    """
    out = set()
    for row in open_outages:
        operator = row.get("operator")
        if row.get("condition") == "uplink_down" and isinstance(operator, str) and operator:
            out.add((str(row["commune_code"]), operator))
    return sorted(out)
