"""``lomsong geodata …`` and the input checks of ``lomsong coverage …`` as a user runs them:
real processes on a SQLite file, tables on stdout, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.coverage.geodata_helpers import DATA

LOMSONG = str(Path(sys.executable).with_name("lomsong"))


def run(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOMSONG_")}
    env["LOMSONG_DATABASE_URL"] = f"sqlite:///{db}"
    env["COLUMNS"] = "200"
    return subprocess.run(
        [LOMSONG, *args], capture_output=True, text=True, env=env, timeout=180, check=False
    )


def test_import_report_history_and_versions(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    report = tmp_path / "report.json"
    out = run(
        "geodata",
        "import",
        "hamlets",
        str(DATA / "hamlets_caobang.geojson"),
        "--province",
        "04",
        "--report",
        str(report),
        db=db,
    )
    assert out.returncode == 0, out.stderr
    assert "3 of 11 rows accepted, 8 rejected" in out.stdout
    assert "population: must be ≥ 0 (got -5)" in out.stdout
    assert "geometry: outside province 04 Cao Bằng" in out.stdout
    saved = json.loads(report.read_text(encoding="utf-8"))
    assert saved["rows_accepted"] == 3 and len(saved["rejected"]) == 8
    assert saved["rejected"][0] == {
        "row": 4,
        "id": "CB-004",
        "reason": "population: must be ≥ 0 (got -5)",
    }

    edited = tmp_path / "v2.csv"
    edited.write_text(
        "id,name,commune_code,population,lat,lon\nCB-001,Bản Nà Rị,01290,360,22.8215,105.544\n",
        encoding="utf-8",
    )
    out = run("geodata", "import", "hamlets", str(edited), "--province", "04", db=db)
    assert out.returncode == 0, out.stderr
    assert "changes: updated 1" in out.stdout

    listed = run("geodata", "imports", db=db)
    assert listed.returncode == 0, listed.stderr
    assert "hamlets_caobang.geojson" in listed.stdout and "v2.csv" in listed.stdout

    history = run("geodata", "versions", "CB-001", db=db)
    assert history.returncode == 0, history.stderr
    lines = [line for line in history.stdout.splitlines() if "Bản Nà Rị" in line]
    assert len(lines) == 2 and "350" in lines[0] and "360" in lines[1] and "now" in lines[1]


def test_one_line_errors(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    bad = tmp_path / "sai.csv"
    bad.write_text("id,name,lat,lon\nX-1,Thôn X,10.0,100.0\n", encoding="utf-8")
    out = run("geodata", "import", "hamlets", str(bad), db=db)
    assert out.returncode == 1
    assert out.stderr.strip() == (
        "lomsong: error: sai.csv: none of 1 rows could be imported as hamlets "
        "(geometry: outside Vietnam ×1)"
    )
    assert "geometry: outside Vietnam (lon 100.00000, lat 10.00000)" in out.stdout
    cases = {
        ("geodata", "import", "hamlets", str(bad), "--replace"): (
            "lomsong: error: --replace: only for hamlets, with --province (the set it replaces) "
            "(got True)"
        ),
        ("geodata", "import", "hamlets", str(bad), "--crs", "EPSG:0"): "lomsong: error: --crs: "
        "not a coordinate reference system",
        ("geodata", "import", "hamlets", str(bad), "--column", "name"): (
            "lomsong: error: --column: expected FIELD=HEADER, e.g. name=Tên thôn (got 'name')"
        ),
        (
            "geodata",
            "versions",
            "NOPE",
        ): "lomsong: error: hamlet 'NOPE' does not exist",
        ("geodata", "synth", "--province", "04", "--national"): (
            "lomsong: error: --province/--national: give exactly one of --province CODE, "
            "--national (got '04')"
        ),
        ("coverage", "whatif", "--site", "abc", "--operator", "viettel"): (
            "lomsong: error: --site: expected LAT,LON such as 22.94,105.63 (got 'abc')"
        ),
        ("coverage", "whatif", "--site", "22.9,105.6", "--operator", "unitel"): (
            "lomsong: error: sites[0].operator: expected one of {viettel, vinaphone, mobifone, "
            "vietnamobile, gmobile} (got 'unitel')"
        ),
        ("coverage", "summary", "--by", "district"): (
            "lomsong: error: --by: expected one of {commune, province} (got 'district')"
        ),
    }
    for args, message in cases.items():
        out = run(*args, db=db)
        assert out.returncode == 1, (args, out.stdout, out.stderr)
        assert out.stderr.strip().startswith(message), (args, out.stderr)


def test_large_file_gets_through_with_progress(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    path = tmp_path / "many.csv"
    lines = ["id,name,commune_code,population,lat,lon"]
    lines += [
        f"BL-{i:05d},Thôn {i},01321,{100 + i % 7},22.94,{105.63 + i * 1e-6:.6f}"
        for i in range(6000)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = run("geodata", "import", "hamlets", str(path), db=db)
    assert out.returncode == 0, out.stderr
    assert "6000 of 6000 rows accepted" in out.stdout and "inserted 6000" in out.stdout
