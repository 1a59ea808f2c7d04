"""The glue between the coverage engine and the store, as a user runs it: ``geodata synth`` and
``coverage classify|summary|whatif|deadzones`` in real processes on a SQLite file, their files
read back and their figures recomputed from each other and from the engine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import openpyxl
import pandas as pd
import pytest
import shapely
from sqlalchemy import select

from lomsong.coverage import boundaries, store
from lomsong.coverage import engine as coverage_engine
from lomsong.coverage.model import STATUS_CODES, CoverageSettings
from lomsong.storage.schema import geodata_imports, hamlets, sites
from tests.conftest import ready_engine

LOMSONG = str(Path(sys.executable).with_name("lomsong"))
STATUSES = [s.value for s in STATUS_CODES]
OPERATORS = CoverageSettings().operator_keys()


def run(*args: str, url: str, columns: int = 200) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOMSONG_")}
    env["LOMSONG_DATABASE_URL"] = url
    env["COLUMNS"] = str(columns)
    out = subprocess.run(
        [LOMSONG, *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    return out


def ok(*args: str, url: str, columns: int = 200) -> str:
    out = run(*args, url=url, columns=columns)
    assert out.returncode == 0, out.stderr
    return out.stdout


def read(path: Path) -> pd.DataFrame:
    """Any of the four output formats back as a plain table of strings."""
    if path.suffix in (".geojson", ".gpkg"):
        frame = pd.DataFrame(gpd.read_file(path).drop(columns="geometry"))
        return frame.astype(str)
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    sheets = pd.read_excel(path, sheet_name=None, dtype=str, keep_default_na=False)
    return list(sheets.values())[-1]  # the notes sheet, where there is one, comes first


def changed_ids(before: pd.DataFrame, after: pd.DataFrame) -> set[str]:
    """Hamlets whose overall status or status for some operator differs."""
    columns = ["status", *(f"status_{op}" for op in OPERATORS)]
    a = before.set_index("hamlet_id")[columns]
    b = after.set_index("hamlet_id").loc[a.index, columns]
    return set(a.index[(a != b).any(axis=1)])


@pytest.fixture(scope="module")
def synth_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    db = tmp_path_factory.mktemp("synth") / "l.db"
    url = f"sqlite:///{db}"
    ok("geodata", "synth", "--province", "04", "--seed", "7", url=url)
    return url


def test_synth_stores_hamlets_and_sites_labelled_synthetic_and_reruns_unchanged(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    first = ok("geodata", "synth", "--province", "04", "--seed", "3", url=url)
    engine = ready_engine(url)

    def snapshot() -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
        with engine.connect() as conn:
            h = conn.execute(
                select(
                    hamlets.c.id,
                    hamlets.c.commune_code,
                    hamlets.c.province_code,
                    hamlets.c.population,
                    hamlets.c.has_grid_power,
                    hamlets.c.lat,
                    hamlets.c.lon,
                    hamlets.c.synthetic,
                )
                .where(hamlets.c.retired_at.is_(None))
                .order_by(hamlets.c.id)
            ).all()
            s = conn.execute(
                select(sites.c.id, sites.c.operator, sites.c.lat, sites.c.lon, sites.c.synthetic)
                .where(sites.c.province_code == "04")
                .order_by(sites.c.id)
            ).all()
        return [tuple(r) for r in h], [tuple(r) for r in s]

    h1, s1 = snapshot()
    assert 1_300 <= len(h1) <= 1_700, len(h1)
    assert len(s1) > 100
    assert all(r[-1] is True for r in h1) and all(r[-1] is True for r in s1)
    assert {r[2] for r in h1} == {"04"}
    communes = set(boundaries.communes(province="04")["code"])
    assert {r[1] for r in h1} <= communes
    assert {r[1] for r in s1} >= {"viettel", "vinaphone", "mobifone"}
    assert any(r[4] is False for r in h1)  # some hamlets have no grid power
    assert first.strip() == (
        f"Stored {len(h1):,} synthetic hamlets and {len(s1):,} synthetic BTS sectors for "
        f"province 04, seed 3: import 1 ({len(h1):,} new), import 2 ({len(s1):,} new)"
    )

    second = ok("geodata", "synth", "--province", "04", "--seed", "3", url=url)
    assert snapshot() == (h1, s1)
    assert f"import 3 ({len(h1):,} unchanged), import 4 ({len(s1):,} unchanged)" in second
    with engine.connect() as conn:
        imports = conn.execute(
            select(
                geodata_imports.c.kind,
                geodata_imports.c.synthetic,
                geodata_imports.c.province_code,
                geodata_imports.c.source,
            ).order_by(geodata_imports.c.id)
        ).all()
    assert [(r.kind, r.synthetic, r.province_code) for r in imports] == [
        ("hamlets", True, "04"),
        ("sites", True, "04"),
    ] * 2
    assert all(r.source.startswith("synthetic") for r in imports)
    listed = ok("geodata", "imports", url=url)
    assert listed.count("yes") == 4
    engine.dispose()


@pytest.mark.parametrize("suffix", [".geojson", ".gpkg", ".csv", ".xlsx"])
def test_classify_writes_every_format_with_and_without_vietnamese_headers(
    synth_db: str, tmp_path: Path, suffix: str
) -> None:
    plain = tmp_path / f"thon{suffix}"
    vi = tmp_path / f"thon_vi{suffix}"
    said = ok("coverage", "classify", "--province", "04", "-o", str(plain), url=synth_db)
    ok("coverage", "classify", "--province", "04", "-o", str(vi), "--vi", url=synth_db)
    a, b = read(plain), read(vi)
    assert len(a) == len(b) and said.startswith(f"{len(a):,} hamlets (")
    assert {"hamlet_id", "status", "status_viettel", "rsrp_viettel_dbm"} <= set(a.columns)
    assert {"Mã thôn", "Tên thôn", "Trạng thái", "Dân số", "Dữ liệu giả lập"} <= set(b.columns)
    assert set(a["status"]) <= set(STATUSES) and "none" in set(a["status"])
    assert set(b["Trạng thái"]) <= {"phủ sóng", "lõm sóng", "trắng sóng", "mất sóng do sự cố"}
    assert (a["status"] == "none").sum() == (b["Trạng thái"] == "trắng sóng").sum()
    assert set(a["synthetic"].str.lower()) == {"true"}
    if suffix == ".xlsx":  # the notes sheet speaks the workbook's language
        book = openpyxl.load_workbook(vi)
        keys = [row[0] for row in book["Ghi chú"].iter_rows(values_only=True)]
        assert keys[1:] == ["Tỉnh", "Thời điểm tính"]  # after the synthetic-data warning
        keys = [
            row[0] for row in openpyxl.load_workbook(plain)["Notes"].iter_rows(values_only=True)
        ]
        assert keys[1:] == ["Province", "Computed at"]


def test_summary_equals_the_engine_and_the_classified_hamlets(
    synth_db: str, tmp_path: Path
) -> None:
    ok("coverage", "classify", "--province", "04", "-o", str(tmp_path / "c.csv"), url=synth_db)
    ok("coverage", "summary", "--province", "04", "-o", str(tmp_path / "s.csv"), url=synth_db)
    classified = read(tmp_path / "c.csv")
    summary = pd.read_csv(tmp_path / "s.csv", dtype={"commune_code": str}, encoding="utf-8-sig")
    assert summary.columns[:3].tolist() == ["commune_code", "commune_name", "operator"]
    assert summary["synthetic"].all()

    # every commune's figures, recomputed from the per-hamlet table
    classified["population"] = classified["population"].astype(int)
    classified["no_power"] = classified["no_grid_power"] == "True"
    for scope in ("overall", "viettel", "gmobile"):
        column = "status" if scope == "overall" else f"status_{scope}"
        rows = summary[summary["operator"] == scope].set_index("commune_code")
        for status in STATUSES:
            mine = classified[classified[column] == status].groupby("commune_code")
            hamlets_n = mine.size().reindex(rows.index, fill_value=0)
            people = mine["population"].sum().reindex(rows.index, fill_value=0)
            no_power = mine["no_power"].sum().reindex(rows.index, fill_value=0)
            assert (rows[f"hamlets_{status}"] == hamlets_n).all(), (scope, status)
            assert (rows[f"population_{status}"] == people).all(), (scope, status)
            assert (rows[f"hamlets_{status}_no_power"] == no_power).all(), (scope, status)
    names = dict(zip(classified["commune_code"], classified["commune_name"], strict=False))
    assert summary["commune_name"].tolist() == summary["commune_code"].map(names).tolist()

    # and the engine's own summarize on the same data, for the commune with most dead hamlets
    engine = ready_engine(synth_db)
    settings = CoverageSettings()
    h = store.load_hamlets(engine, "04")
    s = store.load_sectors(engine, "04", settings=settings)
    readings = store.load_readings(engine, 0.0, "04")
    direct = coverage_engine.summarize(
        h, coverage_engine.classify(h, s, readings, settings, now=0.0), by="commune"
    )
    engine.dispose()
    overall = summary[summary["operator"] == "overall"]
    worst = overall.sort_values("hamlets_none").iloc[-1]["commune_code"]
    assert overall["hamlets_none"].max() > 0
    mine = summary[summary["commune_code"] == worst].drop(
        columns=["commune_code", "commune_name", "synthetic"]
    )
    theirs = direct[direct["code"] == worst].drop(columns="code")
    pd.testing.assert_frame_equal(
        mine.reset_index(drop=True), theirs.reset_index(drop=True), check_dtype=False
    )


def test_summary_on_the_terminal_is_totals_per_status_that_fit(
    synth_db: str, tmp_path: Path
) -> None:
    """Per commune and for the province: hamlets and people of each status, overall; at most
    100 columns wide, 80 on an 80-column terminal; numbers the English or Vietnamese way."""
    ok("coverage", "classify", "--province", "04", "-o", str(tmp_path / "c.csv"), url=synth_db)
    classified = read(tmp_path / "c.csv")
    people = classified["population"].astype(int)
    wide = ok("coverage", "summary", "--province", "04", url=synth_db)
    narrow = ok("coverage", "summary", "--province", "04", "--vi", url=synth_db, columns=80)
    assert max(len(line) for line in wide.splitlines()) <= 100
    assert max(len(line) for line in narrow.splitlines()) <= 80
    header = ["Commune", "Code", "Total", "Covered", "Weak", "No", "signal", "Outage"]
    assert wide.split()[:8] == header
    assert narrow.split()[:1] == ["Mất"]  # the code went, the outage header took two lines
    communes = classified["commune_code"].nunique()
    # a row of two lines per commune, the totals (two lines), the synthetic-data line, rules
    assert len(wide.splitlines()) == 2 * communes + 2 + 1 + 3

    def figures(text: str, label: str, lang_sep: str) -> list[int]:
        lines = text.splitlines()
        at = next(i for i, line in enumerate(lines) if line.startswith(label))
        hamlets_line, people_line = lines[at].split(), lines[at + 1].split()
        return [int(v.replace(lang_sep, "")) for v in hamlets_line[-5:] + people_line[-5:]]

    counts = classified["status"].value_counts()
    expected = [len(classified), *(int(counts.get(s, 0)) for s in STATUSES)]
    expected += [int(people.sum())]
    expected += [int(people[classified["status"] == s].sum()) for s in STATUSES]
    assert figures(wide, "Cao Bằng", ",") == expected
    assert figures(narrow, "Cao Bằng", ".") == expected
    assert f"{len(classified):,} " in wide and f"{len(classified):,}".replace(",", ".") in narrow
    assert "trắng sóng" in narrow.lower() and "Synthetic data" in wide
    everything = ok("coverage", "summary", "--province", "04", "--wide", url=synth_db)
    assert "population_none_no_power" in everything and "gmobile" in everything


def test_summary_geojson_carries_the_commune_polygons(synth_db: str, tmp_path: Path) -> None:
    out = tmp_path / "s.geojson"
    ok("coverage", "summary", "--province", "04", "-o", str(out), url=synth_db)
    frame = gpd.read_file(out)
    n = len(boundaries.communes(province="04"))
    assert len(frame) == n * (1 + len(OPERATORS))
    assert frame.geometry.geom_type.isin(["Polygon", "MultiPolygon"]).all()
    assert frame["commune_name"].str.len().min() > 0


def test_whatif_reports_exactly_the_hamlets_a_built_site_changes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    ok("geodata", "synth", "--province", "04", "--seed", "11", url=url)
    ok("coverage", "classify", "--province", "04", "-o", str(tmp_path / "before.csv"), url=url)
    before = read(tmp_path / "before.csv")
    # a site for Viettel at a hamlet Viettel does not reach
    dark = before[before["status_viettel"] == "none"].iloc[0]
    lat, lon = float(dark["lat"]), float(dark["lon"])
    said = ok(
        "coverage",
        "whatif",
        "--site",
        f"{lat},{lon}",
        "--operator",
        "viettel",
        "--height",
        "30",
        "-o",
        str(tmp_path / "whatif.csv"),
        url=url,
    )
    answer = read(tmp_path / "whatif.csv")
    site = tmp_path / "tram.csv"
    site.write_text(
        "site,cell,operator,radio,band,lat,lon,height,status\n"
        f"CAND-1,1,viettel,lte,1800,{lat},{lon},30,active\n",
        encoding="utf-8",
    )
    ok("geodata", "import", "sites", str(site), url=url)
    ok("coverage", "classify", "--province", "04", "-o", str(tmp_path / "after.csv"), url=url)
    after = read(tmp_path / "after.csv")

    changed = changed_ids(before, after)
    assert dark["hamlet_id"] in changed
    assert set(answer["hamlet_id"]) == changed
    noun = "hamlet" if len(changed) == 1 else "hamlets"
    assert said.startswith(f"A new Viettel site: {len(changed):,} {noun} (")
    b = before.set_index("hamlet_id")
    a = after.set_index("hamlet_id")
    for row in answer.itertuples():
        column = "status" if row.operator == "overall" else f"status_{row.operator}"
        assert (row.before, row.after) == (
            b.loc[row.hamlet_id, column],
            a.loc[row.hamlet_id, column],
        )
    people = before[before["hamlet_id"].isin(changed)]["population"].astype(int).sum()
    assert f"({people:,} people) change" in said
    # each change of status once: no line said twice
    assert len(said.splitlines()) == len(set(said.splitlines()))


def test_deadzones_command_writes_polygons_with_area(synth_db: str, tmp_path: Path) -> None:
    said = ok(
        "coverage",
        "deadzones",
        "--province",
        "04",
        "-o",
        str(tmp_path / "dz.geojson"),
        url=synth_db,
    )
    ok("coverage", "deadzones", "--province", "04", "-o", str(tmp_path / "dz.gpkg"), url=synth_db)
    ok("coverage", "classify", "--province", "04", "-o", str(tmp_path / "c.csv"), url=synth_db)
    zones = gpd.read_file(tmp_path / "dz.geojson")
    again = gpd.read_file(tmp_path / "dz.gpkg")
    communes = boundaries.communes(province="04")
    assert (
        sorted(zones["commune_code"]) == sorted(communes["code"]) == sorted(again["commune_code"])
    )
    assert np.allclose(zones["area_km2"], again["area_km2"])
    assert zones["synthetic"].all()
    measured = zones.to_crs("EPSG:32648").area / 1e6
    assert np.allclose(zones["area_km2"], measured, rtol=0.02, atol=0.05)
    assert (zones["area_km2"] > 0).sum() >= 1
    assert f"{(zones['area_km2'] > 0).sum()} with a dead zone" in said
    # a hamlet no operator reaches lies in its commune's dead zone
    classified = read(tmp_path / "c.csv")
    dead = classified[classified["status"] == "none"]
    assert len(dead) > 0
    shapes = zones.set_index("commune_code").geometry
    points = shapely.points(dead["lon"].astype(float), dead["lat"].astype(float))
    polygons = shapes.loc[dead["commune_code"]].to_numpy()
    # (the hamlets' environment class must be the one the dead zones are drawn in)
    inside = shapely.dwithin(polygons, points, 1e-4)
    assert inside.all(), dead[~inside]["hamlet_id"].tolist()
    bad = run("coverage", "deadzones", "--province", "99", url=synth_db)
    assert bad.returncode == 1 and "province '99' has no communes" in bad.stderr
