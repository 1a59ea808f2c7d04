"""The README's map: Cao Bằng drawn by a real collector from ``geodata synth`` data and the
coverage engine, with three probes (Thục Phán up, Tân Giang with its Viettel link down, so its
Viettel-only hamlets are drawn as outage; Hà Quảng not yet heard), in headless Chromium.

    .venv/bin/python scripts/map_screenshot.py [-o docs/img/map-caobang.png]

Everything runs on loopback: a temporary SQLite file, the collector in a thread, a tile server
that answers every tile with one plain tile (so the picture does not depend on the network).
Needs the geo extra, Playwright and Debian's Chromium (``scripts/system-deps.sh``).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
import zlib
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn

from lomsong.collector.app import create_app
from lomsong.collector.auth import create_token
from lomsong.collector.registry import Uplink, register_probe
from lomsong.config.collector import CollectorSettings
from lomsong.coverage.compute import generate_and_store
from lomsong.coverage.terminal import synth_sentence
from lomsong.storage.database import migrate, open_engine
from lomsong.storage.places import load_places

SEED = 2026  # the demo's seed: the README shows the map the demo serves
VIEWPORT = {"width": 1280, "height": 860}
ADMIN = "screenshot-admin-token-0123456789"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/img/map-caobang.png"))
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.stderr.write("map_screenshot: error: chromium is not installed\n")
        return 1
    with tempfile.TemporaryDirectory() as tmp, _tiles() as tiles:
        url = f"sqlite:///{tmp}/map.db"
        engine = open_engine(url)
        migrate(engine)
        load_places(engine)
        stored = generate_and_store(engine, province="04", seed=SEED)
        sys.stdout.write(synth_sentence(stored, "en") + "\n")
        probes = {
            "cb-thuc-phan": ("01273", None),
            "cb-tan-giang": ("01288", "viettel-4g"),
        }
        tokens = {}
        for probe, (commune, _) in probes.items():
            register_probe(
                engine, probe, commune, [Uplink("fibre", "fibre"), Uplink("viettel-4g", "viettel")]
            )
            tokens[probe] = create_token(engine, role="probe", probe_id=probe).token
        register_probe(engine, "cb-ha-quang", "01438", [Uplink("fibre", "fibre")])
        settings = CollectorSettings(
            database_url=url,
            admin_token=ADMIN,
            report_interval_seconds=5.0,
            maps={"tile_url": tiles, "tile_attribution": "nền bản đồ trơn / plain tiles"},
            detector={"tick_seconds": 0.2},
        )  # type: ignore[arg-type]
        app = create_app(settings, engine=engine)
        server, base = _serve(app)
        try:
            time.sleep(1.5)  # the detector's first tick takes what is stored as history
            for probe, (_, failing) in probes.items():
                _report(base, tokens[probe], probe, failing)
            _wait_for_outage(base)
            _shoot(chromium, f"{base}/maps/province/04?token={ADMIN}", args.output)
        finally:
            server.should_exit = True
            engine.dispose()
    sys.stdout.write(f"wrote {args.output}\n")
    return 0


def _report(base: str, token: str, probe: str, failing: str | None) -> None:
    now = datetime.now(UTC)
    results: list[dict[str, Any]] = []
    seq = 1
    for r in range(4):
        at = (now - timedelta(seconds=3 * (4 - r))).isoformat().replace("+00:00", "Z")
        for uplink in ("fibre", "viettel-4g"):
            ok = uplink != failing
            results.append(
                {
                    "seq": seq,
                    "measured_at": at,
                    "kind": "icmp",
                    "target": "dichvucong.gov.vn",
                    "uplink": uplink,
                    "ok": ok,
                    "duration_seconds": 0.04 if ok else None,
                    "packets_sent": 5,
                    "packets_received": 5 if ok else 0,
                    "error": None if ok else "timeout",
                }
            )
            seq += 1
    doc = {
        "probe_id": probe,
        "boot_id": "boot-1",
        "agent_version": "0.1.0",
        "sent_at": now.isoformat().replace("+00:00", "Z"),
        "results": results,
    }
    r = httpx.post(
        f"{base}/api/v1/reports",
        content=orjson.dumps(doc),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    r.raise_for_status()


def _wait_for_outage(base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = httpx.get(
            f"{base}/api/v1/outages",
            params={"active": "true"},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        if r.json()["count"]:
            return
        time.sleep(0.2)
    raise RuntimeError("the Viettel outage of Tân Giang did not open")


def _shoot(chromium: str, url: str, output: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True)
        page = browser.new_context(viewport=VIEWPORT, locale="vi-VN").new_page()
        page.goto(url, wait_until="load")
        page.wait_for_function(
            "() => document.querySelectorAll('.leaflet-control-layers-overlays label').length >= 10"
        )
        page.wait_for_timeout(800)
        output.write_bytes(page.screenshot())
        browser.close()


def _serve(app: Any) -> tuple[uvicorn.Server, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the collector did not start")
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


class _tiles:  # noqa: N801 - used as a context manager like a function
    """A loopback tile server answering every tile with one plain 256×256 PNG."""

    def __enter__(self) -> str:
        tile = _png(256, 256, (242, 239, 233))

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(len(tile)))
                    self.end_headers()
                    self.wfile.write(tile)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the browser closed while tiles were on their way

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/{{z}}/{{x}}/{{y}}.png"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    row = b"\x00" + bytes(rgb) * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


if __name__ == "__main__":
    sys.exit(main())
