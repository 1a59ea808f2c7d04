"""The collector's coverage: classifications cached per province, with the live outages on top.

Classifying a province takes a moment, so the result is kept and rebuilt only when the geodata
changes (``store.data_version``: an import, a synthetic set, a posted field reading) or when it
is older than ``refresh_seconds`` (probes' modem readings move without a version). The outage
overlay is cheap and is laid on at every request, from the outages open right now:
``uplink_down`` of an operator's uplink takes that operator down in the probe's commune, and a
probe silent for power or network takes every operator of its commune down; sectors whose
status is ``down`` are down too.

Nothing geospatial is imported until the first coverage request, so a collector installed
without the ``geo`` extra starts and serves everything else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from lomsong.coverage.overlay import SILENT_CAUSES, down_links
from lomsong.storage.outages import open_outages

if TYPE_CHECKING:
    from lomsong.collector.alert_facts import HamletImpact
    from lomsong.collector.detector import Outage
    from lomsong.coverage.compute import Area
    from lomsong.coverage.locate import Geography
    from lomsong.coverage.model import Classification, CoverageSettings, IntArray


class CoverageService:
    """Per-province classifications for the API, cached by data version."""

    def __init__(
        self,
        engine: Engine,
        *,
        settings: CoverageSettings | None = None,
        clock: Callable[[], float] = time.time,
        refresh_seconds: float = 300.0,
    ) -> None:
        self.engine = engine
        self._settings = settings
        self.clock = clock
        self.refresh_seconds = refresh_seconds
        self._areas: dict[str | None, Area] = {}
        self._geo: tuple[tuple[Any, ...], Geography] | None = None
        self._lock = threading.Lock()
        self._building: dict[str | None, threading.Lock] = {}
        self._impacts: dict[tuple[Any, ...], IntArray | None] = {}
        self._zones: dict[str, tuple[tuple[Any, ...], Any]] = {}

    @property
    def settings(self) -> CoverageSettings:
        if self._settings is None:
            from lomsong.coverage.model import CoverageSettings

            self._settings = CoverageSettings()
        return self._settings

    def version(self) -> tuple[Any, ...]:
        from lomsong.coverage.store import data_version

        return data_version(self.engine)

    def geography(self) -> Geography:
        """Boundaries and known communes, reloaded when the geodata changes."""
        from lomsong.coverage.locate import Geography

        version = self.version()
        with self._lock:
            if self._geo is not None and self._geo[0] == version:
                return self._geo[1]
        geo = Geography.load(self.engine)
        with self._lock:
            self._geo = (version, geo)
        return geo

    def invalidate(self, province: str | None = None) -> None:
        with self._lock:
            if province is None:
                self._areas.clear()
                self._zones.clear()
            else:
                self._areas.pop(province, None)
                self._zones.pop(province, None)

    def dead_zones(self, province: str) -> Any:
        """The province's dead-zone polygons (a GeoDataFrame), cached by data version."""
        from lomsong.coverage.compute import area_dead_zones

        version = self.version()
        with self._lock:
            cached = self._zones.get(province)
            builder = self._building.setdefault(f"zones:{province}", threading.Lock())
        if cached is not None and cached[0] == version:
            return cached[1]
        with builder:
            with self._lock:
                cached = self._zones.get(province)
            if cached is not None and cached[0] == version:
                return cached[1]
            zones = area_dead_zones(self.engine, province, self.settings)
            with self._lock:
                self._zones[province] = (version, zones)
            return zones

    def area(self, province: str | None, version: tuple[Any, ...] | None = None) -> Area:
        """The classified area, from the cache while the data version and age allow.

        ``version``: the data version the caller has just read, so that a page weighing many
        outages reads it once rather than once per outage.
        """
        from lomsong.coverage.compute import classify_area

        version = self.version() if version is None else version
        now = self.clock()
        with self._lock:
            cached = self._areas.get(province)
            builder = self._building.setdefault(province, threading.Lock())
        if self._fresh(cached, version, now):
            assert cached is not None
            return cached
        with builder:  # one build per province at a time; the others wait for it
            with self._lock:
                cached = self._areas.get(province)
            if self._fresh(cached, version, now):
                assert cached is not None
                return cached
            area = classify_area(self.engine, province, self.settings, now=now)
            with self._lock:
                self._areas[province] = area
            return area

    def _fresh(self, area: Area | None, version: tuple[Any, ...], now: float) -> bool:
        return (
            area is not None
            and area.version == version
            and now - area.built_at < self.refresh_seconds
        )

    def current(self, province: str | None) -> tuple[Area, Classification]:
        """The area and its classification with the outages open right now laid on."""
        from lomsong.coverage.compute import with_outages

        area = self.area(province)
        links = down_links(open_outages(self.engine, province), self.settings.operator_keys())
        return area, with_outages(area, links)

    def impact(self, outage: Outage, version: tuple[Any, ...] | None = None) -> HamletImpact | None:
        """The hamlets an outage leaves without signal, for its alert (``None``: not known).

        - ``uplink_down`` or ``degraded`` of an operator's uplink: the commune's hamlets that
          operator serves (covered or weak) and no other operator does, so that they lose all
          signal with it (for a degraded link: would lose it). A fixed-line uplink leaves none.
        - ``probe_silent`` for power or network: as on the map, every operator of the commune is
          taken down, so every hamlet of the commune that had signal. While the cause is being
          determined (the probe is still silent) or unknown it is not known: ``None``.

        Each outage is weighed alone against the classification without live outages, so the
        figures do not change while other outages come and go. ``None`` also when the commune
        has no hamlets loaded.
        """
        from lomsong.collector.alert_facts import HamletImpact
        from lomsong.collector.alerts.messages import NAMED_HAMLETS

        found = self.affected(
            outage.province_code,
            outage.commune_code,
            outage.condition,
            outage.cause,
            outage.operator,
            version,
        )
        if found is None:
            return None
        area, lost = found
        h = area.hamlets
        population = h.population[lost].astype("int64")
        order = lost[(-population).argsort(kind="stable")][:NAMED_HAMLETS]
        return HamletImpact(
            hamlets=int(lost.size),
            population=int(population.sum()),
            without_power=int((~h.has_grid_power[lost].astype(bool)).sum()),
            largest=tuple((str(h.names[i]), int(h.population[i])) for i in order),
        )

    def affected(
        self,
        province: str,
        commune: str,
        condition: str,
        cause: str | None,
        operator: str | None,
        version: tuple[Any, ...] | None = None,
    ) -> tuple[Area, IntArray] | None:
        """The province's area and the indices of the hamlets an outage leaves without signal
        (see :meth:`impact`); ``None`` when that is not known."""
        keys = self.settings.operator_keys()
        operators: tuple[str, ...]
        if condition == "probe_silent":
            if cause not in SILENT_CAUSES:
                return None
            operators = keys
        elif operator in keys:
            operators = (str(operator),)
        else:
            operators = ()
        area = self.area(province, version)
        key = (area.version, area.built_at, commune, operators)
        with self._lock:
            if key in self._impacts:
                lost = self._impacts[key]
                return None if lost is None else (area, lost)
        lost = _lost(area, commune, operators)
        with self._lock:
            if len(self._impacts) > 1024:
                self._impacts.clear()
            self._impacts[key] = lost
        return None if lost is None else (area, lost)


def _lost(area: Area, commune: str, operators: tuple[str, ...]) -> IntArray | None:
    """Hamlets of ``commune`` with signal whose every serving operator is in ``operators``."""
    import numpy as np

    from lomsong.coverage.engine import apply_outages
    from lomsong.coverage.model import OUTAGE

    h = area.hamlets
    mine = h.commune_code == commune
    if not mine.any():
        return None
    if not operators:
        return np.zeros(0, dtype=np.int64)
    # this outage's links alone: sectors marked down are the map's business, not this alert's
    live = apply_outages(
        area.base,
        h,
        area.sectors,
        down_sectors=np.zeros(len(area.sectors), dtype=bool),
        down_links=[(commune, op) for op in operators],
    )
    return np.flatnonzero(mine & (live.overall == OUTAGE) & (area.base.overall != OUTAGE))
