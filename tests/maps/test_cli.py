"""``lomsong map``: standalone files, and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lomsong.collector.map_files import write_map
from lomsong.collector.registry import Uplink, register_probe
from lomsong.config.collector import CollectorSettings
from lomsong.storage.database import migrate, open_engine
from lomsong.storage.places import load_places
from tests.maps.conftest import StaticCoverage, layers, page_data

LOMSONG = str(Path(sys.executable).with_name("lomsong"))
TILES = "http://127.0.0.1:9/{z}/{x}/{y}.png"


def run(*args: str, db: Path, command: str = "map") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOMSONG_")}
    env["LOMSONG_DATABASE_URL"] = f"sqlite:///{db}"
    env["LOMSONG_MAPS__TILE_URL"] = TILES
    env["LOMSONG_PUBLIC_URL"] = "https://lomsong.caobang.example"
    return subprocess.run(
        [LOMSONG, *command.split(), *args], capture_output=True, text=True, env=env
    )


def upgraded(db: Path) -> Path:
    """``db`` at this code's schema with the places loaded: ``map`` only reads, never migrates."""
    out = run(db=db, command="db upgrade")
    assert out.returncode == 0, out.stderr
    return db


def test_province_and_national_files(tmp_path: Path) -> None:
    db = upgraded(tmp_path / "l.db")
    out = run("--province", "04", "-o", str(tmp_path / "cb.html"), db=db)
    assert out.returncode == 0, out.stderr
    assert (
        out.stdout.startswith(f"{tmp_path / 'cb.html'}: ") and "map of Cao Bằng (04)" in out.stdout
    )
    html = (tmp_path / "cb.html").read_text(encoding="utf-8")
    assert "Ranh giới xã/phường / Commune boundaries" in layers(html)
    assert TILES in html and "Leaflet 1.9.4" in html
    assert 'href=\\"https://lomsong.caobang.example/maps/national\\"' in html

    out = run("--national", "-o", str(tmp_path / "vn.html"), db=db)
    assert out.returncode == 0, out.stderr
    html = (tmp_path / "vn.html").read_text(encoding="utf-8")
    assert page_data(html)["link"] == "https://lomsong.caobang.example/maps/province/{code}"
    assert not list(tmp_path.glob(".*.partial"))


def test_bad_arguments_are_one_line(tmp_path: Path) -> None:
    db = upgraded(tmp_path / "l.db")
    cases = [
        ((), "--province/--national: give exactly one of --province CODE, --national"),
        (("--province", "04", "--national"), "give exactly one of"),
        (("--province", "4"), "--province: a province code is two digits, e.g. 04 (got '4')"),
        (("--province", "99"), "province '99' does not exist; known: 01, 04,"),
    ]
    for args, message in cases:
        out = run(*args, "-o", str(tmp_path / "x.html"), db=db)
        assert out.returncode == 1, (args, out.stderr)
        assert out.stderr.startswith("lomsong: error: ") and message in out.stderr, out.stderr
        assert out.stderr.count("\n") == 1
    out = run("--national", "-o", str(tmp_path / "missing" / "x.html"), db=db)
    assert out.returncode == 1 and "--output: its directory does not exist" in out.stderr


def test_the_file_writer_draws_the_coverage_it_is_given(
    tmp_path: Path, static_coverage: StaticCoverage
) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    engine = open_engine(url)
    migrate(engine)
    load_places(engine)
    register_probe(engine, "cb-thuc-phan", "01273", [Uplink("fibre", "fibre")])
    settings = CollectorSettings(database_url=url, maps={"tile_url": TILES})  # type: ignore[arg-type]
    written = write_map(
        settings, engine, tmp_path / "cb.html", province="04", source=static_coverage
    )
    engine.dispose()
    html = (tmp_path / "cb.html").read_text(encoding="utf-8")
    assert written.size == len(html.encode())
    data = page_data(html)
    assert len(data["H"]["id"]) == 1500 and data["P"]["id"] == ["cb-thuc-phan"]
