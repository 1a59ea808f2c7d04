"""Map pages for the collector: built when their data changed, otherwise served from memory.

A page's key is everything it is drawn from: the coverage source's version of the province,
what each probe shows (state, since when, uplinks, open outages, last seen to the minute) and
the tile settings. Durations are computed in the browser, so an unchanged key means an unchanged
page; its ETag is the hash of the HTML, and a browser revalidating with ``If-None-Match`` gets a
304 without the page being built or sent again.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, select

from lomsong.collector.live import LiveState
from lomsong.collector.map_coverage import CoverageSource
from lomsong.collector.probe_markers import current_probes
from lomsong.coverage import boundaries
from lomsong.coverage.model import CoverageSettings
from lomsong.coverage.overlay import down_links
from lomsong.errors import NotFoundError
from lomsong.maps.inputs import TileSource
from lomsong.maps.national import PROVINCE_LINK, national_map, render_national
from lomsong.maps.probes import ProbeMarker
from lomsong.maps.province import province_map, render_province
from lomsong.storage.outages import open_outages
from lomsong.storage.schema import provinces

#: pages kept in memory (34 provinces, the national overview and a few viewer variants)
CACHE_PAGES = 48


@dataclass(frozen=True)
class Page:
    html: bytes
    etag: str
    built_at: float
    build_seconds: float


class MapService:
    """Builds and caches the province maps and the national overview of one collector."""

    def __init__(
        self,
        engine: Engine,
        live: LiveState,
        source: CoverageSource,
        *,
        tiles: TileSource,
        silent_after: float,
        settings: CoverageSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.live = live
        self.source = source
        self.tiles = tiles
        self.silent_after = silent_after
        self.settings = settings or CoverageSettings()
        self.clock = clock
        self._pages: OrderedDict[Hashable, Page] = OrderedDict()
        self._build_lock = threading.Lock()
        self.builds = 0

    def province_names(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            return dict(conn.execute(select(provinces.c.code, provinces.c.name)).all())

    def probes(self, only: Collection[str] | None) -> list[ProbeMarker]:
        """Every probe of the provinces ``only`` (all when ``None``) with its state now."""
        return current_probes(
            self.engine, self.live, only, now=self.clock(), silent_after=self.silent_after
        )

    def province_page(self, code: str, links: Sequence[tuple[str, str]] = ()) -> Page:
        """The map of province ``code``; raises ``NotFoundError`` for an unknown code."""
        names = self.province_names()
        if code not in names:
            raise NotFoundError(f"province {code!r} does not exist; known: {', '.join(names)}")
        markers = self.probes({code})
        down = self._down_links({code})
        key = (
            "province",
            code,
            self.source.version(code),
            tuple(m.digest() for m in markers),
            tuple(down),
            self.tiles,
            tuple(links),
        )

        def build() -> str:
            now = self.clock()
            coverage = self.source.province(code, now=now, down_links=down)
            fmap = province_map(
                code,
                names[code],
                boundaries.communes(self.engine, code),
                coverage,
                markers,
                tiles=self.tiles,
                operators=self.settings.operators,
                links=links,
                generated_at=now,
            )
            return render_province(fmap, names[code])

        return self._page(key, build)

    def national_page(
        self,
        only: Collection[str] | None,
        links: Sequence[tuple[str, str]] = (),
        province_link: str = PROVINCE_LINK,
    ) -> Page:
        """The national overview, of the provinces ``only`` (all when ``None``)."""
        down = self._down_links(only)
        scope = None if only is None else tuple(sorted(only))
        version = self.source.version(None)
        key = ("national", scope, version, tuple(down), self.tiles, tuple(links), province_link)

        def build() -> str:
            now = self.clock()
            national = self.source.national(now=now, down_links=down)
            fmap = national_map(
                boundaries.communes(self.engine),
                boundaries.provinces(self.engine),
                None if national is None else national.shares,
                tiles=self.tiles,
                province_link=province_link,
                only=only,
                synthetic=bool(national and national.synthetic),
                links=links,
                generated_at=now,
            )
            return render_national(fmap)

        return self._page(key, build)

    def _down_links(self, only: Collection[str] | None) -> list[tuple[str, str]]:
        """(commune, operator) pairs the open outages take down, as the coverage API lays them."""
        rows = open_outages(self.engine, only)
        return sorted(down_links(rows, self.settings.operator_keys()))

    def _page(self, key: Hashable, build: Callable[[], str]) -> Page:
        with self._build_lock:
            page = self._pages.get(key)
            if page is not None:
                self._pages.move_to_end(key)
                return page
            started = time.perf_counter()
            html = build().encode()
            page = Page(
                html=html,
                etag='"' + hashlib.sha256(html).hexdigest()[:32] + '"',
                built_at=self.clock(),
                build_seconds=time.perf_counter() - started,
            )
            self.builds += 1
            # one page per province and scope: an older version of it is of no more use
            for old in [k for k in self._pages if _same_page(k, key)]:
                del self._pages[old]
            self._pages[key] = page
            while len(self._pages) > CACHE_PAGES:
                self._pages.popitem(last=False)
            return page


def _same_page(a: Hashable, b: Hashable) -> bool:
    return isinstance(a, tuple) and isinstance(b, tuple) and a[:2] == b[:2]
