"""Map inputs in the real Cao Bằng communes, a loopback tile server, and Debian's Chromium."""

from __future__ import annotations

import re
import shutil
import struct
import threading
import zlib
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from lomsong.collector.map_coverage import DownLinks
from lomsong.maps.inputs import NationalCoverage, ProvinceCoverage, commune_shares
from tests.maps.sample import SampleProvince, sample_province

#: where screenshots are kept after the run (gitignored)
ARTEFACTS = Path(__file__).parents[2] / "test-artifacts" / "maps"


@pytest.fixture(scope="session")
def cao_bang() -> SampleProvince:
    """1,500 seeded hamlets and 1,000 sectors in Cao Bằng's 56 real communes."""
    return sample_province("04", hamlets=1500, sectors=1000, seed=2026)


class StaticCoverage:
    """A coverage source holding coverage built beforehand; ``generation`` is its version."""

    def __init__(self, sample: SampleProvince) -> None:
        self.sample = sample
        self.generation = 0
        self.asked: list[tuple[str, list[tuple[str, str]]]] = []

    def version(self, province: str | None) -> Hashable:
        return self.generation

    def province(
        self, code: str, *, now: float, down_links: DownLinks = ()
    ) -> ProvinceCoverage | None:
        self.asked.append((code, list(down_links)))
        return self.sample.coverage if code == self.sample.code else None

    def national(self, *, now: float, down_links: DownLinks = ()) -> NationalCoverage | None:
        c = self.sample.coverage
        return NationalCoverage(commune_shares(c.hamlets, c.classification), synthetic=True)


@pytest.fixture
def static_coverage(cao_bang: SampleProvince) -> StaticCoverage:
    return StaticCoverage(cao_bang)


def page_data(html: str) -> dict[str, Any]:
    """The columns a map page embeds for its popups."""
    match = re.search(r"var (lomsong_data_\w+) = (\{.*?\});\n", html)
    assert match, "the page has no data block"
    data: dict[str, Any] = orjson.loads(match.group(2))
    return data


def layers(html: str) -> dict[str, str]:
    """Overlay name → the JS name of its layer, as the layer control lists them."""
    block = re.search(r"overlays :\s*\{(.*?)\},\s*\};", html, re.S)
    assert block, "the page has no layer control"
    pairs = re.findall(r'("(?:[^"\\]|\\.)*")\s*:\s*(\w+)', block.group(1))
    return {orjson.loads(name): var for name, var in pairs}


def layer_data(html: str, var: str) -> dict[str, Any]:
    """The GeoJSON a layer adds (a ``folium.GeoJson``, or a ``FastGeoJson``)."""
    match = re.search(re.escape(var) + r"_add\((\{.*?\})\);\n", html, re.S)
    if match:
        data: dict[str, Any] = orjson.loads(match.group(1))
        return data
    match = re.search(re.escape(var) + r' = L.geoJson\(JSON.parse\(("(?:[^"\\]|\\.)*")\)', html)
    assert match, f"no data for {var}"
    data = orjson.loads(orjson.loads(match.group(1)))
    return data


# -- a tile server on loopback ---------------------------------------------------------------


def _png(width: int, height: int, rgb: tuple[int, int, int], edge: tuple[int, int, int]) -> bytes:
    rows = []
    for y in range(height):
        row = bytearray([0])
        for x in range(width):
            row += bytes(edge if x == 0 or y == 0 else rgb)
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + chunk(b"IEND", b"")
    )


@dataclass
class TileServer:
    url: str
    requests: list[str]


@pytest.fixture
def tile_server() -> Iterator[TileServer]:
    """Answers every /z/x/y.png with a plain 256×256 tile, and keeps the paths asked for."""
    tile = _png(256, 256, (242, 239, 233), (226, 222, 214))
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            asked.append(self.path)
            if not re.fullmatch(r"/\d+/\d+/\d+\.png", self.path):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(tile)))
            self.end_headers()
            self.wfile.write(tile)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    yield TileServer(f"http://127.0.0.1:{port}/{{z}}/{{x}}/{{y}}.png", asked)
    server.shutdown()
    server.server_close()


# -- Debian's Chromium through Playwright ----------------------------------------------------


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (the system's, never a downloaded build).

    Module-scoped: Playwright's sync API keeps an event loop running in the thread while it is
    open, and a test that calls asyncio.run() after it on the same worker would fail.
    """
    path = chromium_path()
    if path is None:
        pytest.skip("chromium is not installed (scripts/system-deps.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=path, headless=True)
        yield chromium
        chromium.close()


def keep(png: bytes, name: str, tmp_path: Path) -> Path:
    """Write a screenshot under the test's tmp dir and under test-artifacts/maps/."""
    (tmp_path / name).write_bytes(png)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTEFACTS / name
    out.write_bytes(png)
    return out
