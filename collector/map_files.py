"""``lomsong map``: a province map or the national overview as one standalone HTML file.

The file carries Leaflet, its data and its script; only the base map's tiles come from the
configured tile server. Its links (national map, status page, province maps) point at the
collector's ``public_url``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from lomsong.collector.coverage_service import CoverageService
from lomsong.collector.live import LiveState
from lomsong.collector.map_coverage import CoverageSource, ServiceCoverageSource
from lomsong.collector.map_service import MapService
from lomsong.config.collector import CollectorSettings
from lomsong.errors import ValidationError
from lomsong.maps.inputs import TileSource


@dataclass(frozen=True)
class Written:
    size: int
    what: str


def write_map(
    settings: CollectorSettings,
    engine: Engine,
    output: Path,
    *,
    province: str | None,
    source: CoverageSource | None = None,
    clock: Callable[[], float] = time.time,
) -> Written:
    """Write the map of ``province`` (the national overview when ``None``) to ``output``."""
    if province is not None and not re.fullmatch(r"[0-9]{2}", province):
        raise ValidationError("--province", province, "a province code is two digits, e.g. 04")
    if not output.parent.is_dir():
        raise ValidationError("--output", str(output), "its directory does not exist")
    live = LiveState()
    live.reload(engine)
    s = settings
    service = MapService(
        engine,
        live,
        source or ServiceCoverageSource(CoverageService(engine, clock=clock)),
        tiles=TileSource(s.maps.tile_url, s.maps.tile_attribution, s.maps.tile_max_zoom),
        silent_after=s.silent_after_seconds,
        clock=clock,
    )
    base = s.public_url.rstrip("/")
    status = ("Trang trạng thái / Status page", f"{base}/")
    if province is not None:
        name = service.province_names().get(province, province)
        national = ("Bản đồ toàn quốc / National map", f"{base}/maps/national")
        page = service.province_page(province, [national, status])
        what = f"map of {name} ({province})"
    else:
        page = service.national_page(None, [status], province_link=f"{base}/maps/province/{{code}}")
        what = "national overview"
    partial = output.with_name(f".{output.name}.partial")
    partial.write_bytes(page.html)
    os.replace(partial, output)
    return Written(len(page.html), what)
