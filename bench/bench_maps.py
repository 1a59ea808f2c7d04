"""Maps: Cao Bằng (about 1,500 hamlets, 1,000 sectors) ≤ 3 MB, the national overview ≤ 5 MB,
each fully loaded in headless Chromium in ≤ 3 s.

Inputs: until ``lomsong.coverage.synth`` and the engine are installed, the province's inputs are
the seeded ones of ``tests/maps/sample.py`` (hamlets and sites at random points in the real
communes, a log-distance classification, dead zones) and the national overview's shares are
seeded per commune (about 64,000 hamlets); once they are, ``synth.hamlets``/``synth.sites`` and
``engine.classify`` make them, and the run says which it used.

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

import numpy as np
import pandas as pd

from bench.report import Outcome, check, heading, line
from lomsong.coverage import boundaries, synth
from lomsong.coverage import engine as coverage_engine
from lomsong.coverage.deadzones import dead_zones
from lomsong.coverage.frames import hamlets_from_frame, sectors_from_frame
from lomsong.coverage.model import CoverageSettings, empty_readings
from lomsong.maps.inputs import ProvinceCoverage, TileSource
from lomsong.maps.national import national_map, render_national
from lomsong.maps.probes import ProbeMarker
from lomsong.maps.province import province_map, render_province

NAME = "maps"
PROVINCE_MB, NATIONAL_MB, LOAD_S = 3.0, 5.0, 3.0
RUNS = 5
NATIONAL_HAMLETS = 64_000
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


def _cao_bang() -> tuple[Any, ProvinceCoverage, str]:
    """``synth`` places hamlets and sites on the real communes, the engine classifies."""
    communes = boundaries.communes(province="04")
    settings = CoverageSettings()
    hamlets = hamlets_from_frame(synth.hamlets(communes, seed=SEED), communes)
    sectors = sectors_from_frame(synth.sites(communes, seed=SEED, operators=settings.operators))
    c = coverage_engine.classify(hamlets, sectors, empty_readings(), settings, now=time.time())
    zones = dead_zones(communes, sectors, settings)
    return communes, ProvinceCoverage(hamlets, sectors, c, zones, synthetic_sites=True), "synth"


def _national_shares() -> tuple[pd.DataFrame, str]:
    """Per commune: hamlets, population and those without signal, seeded."""
    communes = boundaries.communes()
    rng = np.random.default_rng(SEED)
    area = communes["area_km2"].to_numpy(dtype=float)
    hamlets = 1 + rng.multinomial(NATIONAL_HAMLETS - len(communes), area / area.sum())
    population = hamlets * rng.integers(150, 700, len(communes))
    share = np.where(rng.random(len(communes)) < 0.55, 0.0, rng.beta(0.6, 5, len(communes)))
    none_population = (population * share).astype(np.int64)
    none_hamlets = np.minimum(hamlets, np.ceil(hamlets * share)).astype(np.int64)
    frame = pd.DataFrame(
        {
            "hamlets": hamlets,
            "population": population,
            "none_hamlets": none_hamlets,
            "none_population": none_population,
        },
        index=communes["code"].to_numpy(),
    )
    frame["share"] = frame["none_population"] / frame["population"]
    return frame, "seeded shares per commune"


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
