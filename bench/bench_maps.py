"""Maps: Cao Bằng (about 1,500 hamlets, 1,000 sectors) ≤ 3 MB, the national overview ≤ 5 MB,
each fully loaded in headless Chromium in ≤ 3 s.

Inputs: what ``lomsong geodata synth`` stores (Cao Bằng; the national shape for the overview),
in a temporary SQLite file, classified through the collector's ``CoverageService`` and its
``ServiceCoverageSource`` (the engine, the outage overlay, the dead zones), as a served map is.

Load time: the page is served from loopback, with a loopback tile server, to Debian's Chromium
driven by Playwright; the figure is from the start of navigation to the load event and then
until the Leaflet layers exist (every layer in the layer control and every hamlet, or every
commune, drawn). A fresh browser context each time; the median of five.
"""

from __future__ import annotations

import os
import shutil
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pandas as pd

from bench.report import Outcome, check, heading, line
from lomsong.coverage import boundaries, synth
from lomsong.coverage.frames import hamlets_from_frame, sectors_from_frame
from lomsong.coverage.model import CoverageSettings, empty_readings
from lomsong.maps.inputs import ProvinceCoverage, TileSource
from lomsong.maps.national import national_map, render_national
from lomsong.maps.probes import ProbeMarker
from lomsong.maps.province import province_map, render_province

NAME = "maps"
PROVINCE_MB, NATIONAL_MB, LOAD_S = 3.0, 5.0, 3.0
RUNS = 5
SEED = 2026


def main() -> list[Outcome]:
    heading("maps: Cao Bằng map and national overview, size and load in headless Chromium")
    line("load average (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    chromium = shutil.which("chromium")
    outcomes: list[Outcome] = []

    communes, coverage, source = _cao_bang()
    h, s = coverage.hamlets, coverage.sectors
    line(
        f"Cao Bằng inputs ({source}): {len(h):,} hamlets, {len(s):,} sectors, "
        f"{len(communes)} communes, {len(coverage.dead_zones)} dead-zone polygons"
    )
    started = time.perf_counter()
    fmap = province_map("04", "Cao Bằng", communes, coverage, _probes(communes), tiles=_TILES)
    province_html = render_province(fmap, "Cao Bằng").encode()
    line(f"built in {time.perf_counter() - started:.2f} s")
    size = len(province_html) / 2**20
    outcomes.append(
        check(
            NAME,
            "Cao Bằng map size",
            f"{size:.2f} MB",
            f"≤ {PROVINCE_MB:g} MB",
            size <= PROVINCE_MB,
        )
    )

    shares, source = _national_shares()
    line(
        f"national inputs ({source}): {int(shares['hamlets'].sum()):,} hamlets in "
        f"{len(shares):,} communes"
    )
    started = time.perf_counter()
    fmap = national_map(
        boundaries.communes(), boundaries.provinces(), shares, tiles=_TILES, synthetic=True
    )
    national_html = render_national(fmap).encode()
    line(f"built in {time.perf_counter() - started:.2f} s")
    size = len(national_html) / 2**20
    outcomes.append(
        check(
            NAME,
            "national overview size",
            f"{size:.2f} MB",
            f"≤ {NATIONAL_MB:g} MB",
            size <= NATIONAL_MB,
        )
    )

    if chromium is None:
        line("chromium is not installed: load times not measured (run `make system-deps`)")
        return outcomes
    with _server({"/province.html": province_html, "/national.html": national_html}) as url:
        ready = {
            "/province.html": "() => document.querySelectorAll("
            "'.leaflet-control-layers-overlays label').length >= 10 && Object.values(window)"
            ".some((v) => v instanceof L.Map && Object.values(v._layers).filter("
            "(l) => l instanceof L.CircleMarker).length >= 1500)",
            "/national.html": "() => Object.values(window).some((v) => v instanceof L.Map && "
            "Object.values(v._layers).filter((l) => l instanceof L.Polygon).length >= 3321)",
        }
        times = _load_times(chromium, url, ready)
    for path, label in (("/province.html", "Cao Bằng map"), ("/national.html", "national")):
        runs = times[path]
        med = statistics.median(runs)
        line(f"{label}: " + ", ".join(f"{t:.2f}" for t in runs) + " s")
        outcomes.append(
            check(
                NAME,
                f"{label} load in Chromium",
                f"{med:.2f} s (median of {RUNS})",
                f"≤ {LOAD_S:g} s",
                med <= LOAD_S,
            )
        )
    return outcomes


_TILES = TileSource(url="/tiles/{z}/{x}/{y}.png", attribution="loopback tiles")


@contextmanager
def _database() -> Iterator[Any]:
    """A migrated SQLite file in a temporary directory, with the places loaded."""
    import tempfile

    from lomsong.storage.database import migrate, open_engine
    from lomsong.storage.places import load_places

    with tempfile.TemporaryDirectory() as tmp:
        engine = open_engine(f"sqlite:///{tmp}/bench.db")
        try:
            migrate(engine)
            load_places(engine)
            yield engine
        finally:
            engine.dispose()


def _cao_bang() -> tuple[Any, ProvinceCoverage, str]:
    """``geodata synth --province 04`` stored, classified by the collector's CoverageService."""
    from lomsong.collector.coverage_service import CoverageService
    from lomsong.collector.map_coverage import ServiceCoverageSource
    from lomsong.coverage.compute import generate_and_store

    with _database() as engine:
        started = time.perf_counter()
        generate_and_store(engine, province="04", seed=SEED)
        stored = time.perf_counter() - started
        started = time.perf_counter()
        coverage = ServiceCoverageSource(CoverageService(engine)).province("04", now=time.time())
        classified = time.perf_counter() - started
    assert coverage is not None
    source = (
        f"synth seed {SEED}, stored in {stored:.2f} s; engine and dead zones in {classified:.2f} s"
    )
    return boundaries.communes(province="04"), coverage, source


def _national_shares() -> tuple[pd.DataFrame, str]:
    """``synth.national`` (the national benchmark shape) classified by the engine, in memory.

    In memory: storing 64,000 hamlets and 120,000 sectors would take the bench longer than the
    map it measures.
    """
    from lomsong.coverage import engine
    from lomsong.maps.inputs import commune_shares

    settings = CoverageSettings()
    started = time.perf_counter()
    hamlet_frame, site_frame = synth.national(SEED)
    hamlets = hamlets_from_frame(hamlet_frame, boundaries.communes())
    sectors = sectors_from_frame(site_frame)
    made = time.perf_counter() - started
    started = time.perf_counter()
    c = engine.classify(hamlets, sectors, empty_readings(), settings, now=time.time())
    classified = time.perf_counter() - started
    source = f"synth national seed {SEED}, made in {made:.2f} s; engine in {classified:.2f} s"
    return commune_shares(hamlets, c), source


def _probes(communes: Any) -> list[ProbeMarker]:
    points = communes.geometry.representative_point()
    now = time.time()
    return [
        ProbeMarker(
            id=f"cb-{code}",
            label=None,
            commune_code=code,
            commune_name=name,
            province_code="04",
            lon=float(p.x),
            lat=float(p.y),
            state="up" if i % 9 else "down",
            since=None if i % 9 else now - 3600,
            last_seen=now - 20,
        )
        for i, (code, name, p) in enumerate(
            zip(communes["code"], communes["name"], points, strict=True)
        )
    ]


@contextmanager
def _server(pages: dict[str, bytes]) -> Iterator[str]:
    tile = _tile()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            body, kind = (
                (tile, "image/png")
                if self.path.startswith("/tiles/")
                else (pages.get(self.path), "text/html; charset=utf-8")
            )
            if body is None:
                self.send_error(404)
                return
            try:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the page was closed before its last tiles arrived

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _tile() -> bytes:
    import struct
    import zlib

    raw = b"".join(b"\x00" + bytes((242, 239, 233)) * 256 for _ in range(256))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 256, 256, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _load_times(chromium: str, url: str, ready: dict[str, str]) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    out: dict[str, list[float]] = {path: [] for path in ready}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True)
        try:
            for path, condition in ready.items():
                for _ in range(RUNS + 1):  # the first warms the browser up and is not counted
                    context = browser.new_context(viewport={"width": 1280, "height": 860})
                    page = context.new_page()
                    started = time.perf_counter()
                    page.goto(url + path, wait_until="load", timeout=60_000)
                    page.wait_for_function(condition, timeout=60_000, polling=50)
                    out[path].append(time.perf_counter() - started)
                    context.close()
                out[path] = out[path][1:]
        finally:
            browser.close()
    return out
