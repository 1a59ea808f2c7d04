"""Exports of per-hamlet status and summaries: GeoJSON, GeoPackage, CSV, XLSX, Vietnamese
headers, diacritics read back intact, and synthetic data always labelled."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import openpyxl
import pandas as pd
import pytest
import shapely
from sqlalchemy import Engine

from lomsong.coverage import store
from lomsong.coverage.export import SYNTHETIC_NOTE, vi_header, write_table
from lomsong.coverage.importing import import_file
from lomsong.coverage.model import COVERED, NONE, OUTAGE, WEAK, Classification
from lomsong.coverage.results import filter_status, status_frame
from lomsong.coverage.validate import Options
from lomsong.errors import ValidationError
from tests.coverage.geodata_helpers import DATA

OPS = ("viettel", "vinaphone")


def _classification(n: int, status: list[list[int]], best: list[int]) -> Classification:
    """A classification as the engine hands it over (here written by hand, as test input)."""
    codes = np.array(status, dtype=np.int8)
    rsrp = np.where(codes == COVERED, -90.0, np.where(codes == WEAK, -105.0, np.nan))
    return Classification(
        operators=OPS,
        rsrp_dbm=rsrp.astype(np.float32),
        measured=np.zeros((n, len(OPS)), dtype=bool),
        serving=np.where(np.isnan(rsrp), -1, 0).astype(np.int64),
        status=codes,
        overall=codes.min(axis=1).astype(np.int8),
        best_operator=np.array(best, dtype=np.int64),
    )


@pytest.fixture
def status(sqlite_engine: Engine) -> gpd.GeoDataFrame:
    import_file(sqlite_engine, DATA / "hamlets_caobang.geojson", Options(kind="hamlets"))
    details = store.hamlet_frame(sqlite_engine, "04")
    assert list(details["id"]) == ["CB-001", "CB-002", "CB-003"]  # by commune, then id
    c = _classification(3, [[COVERED, WEAK], [NONE, NONE], [OUTAGE, WEAK]], [0, -1, 1])
    return status_frame(details, c)


def test_status_frame_columns(status: gpd.GeoDataFrame) -> None:
    assert list(status["status"]) == ["covered", "none", "weak"]
    assert list(status["best_operator"]) == ["viettel", None, "vinaphone"]
    assert list(status["status_viettel"]) == ["covered", "none", "outage"]
    assert list(status["rsrp_viettel_dbm"].fillna(0)) == [-90.0, 0, 0]
    # has_grid_power false → no grid power; unknown counts as having it
    assert list(status["no_grid_power"]) == [False, True, False]
    assert list(status["commune_name"]) == ["Xã Bảo Lâm", "Xã Bảo Lạc", "Xã Cốc Pàng"]
    assert list(filter_status(status, status="weak", operator="vinaphone")["hamlet_id"]) == [
        "CB-001",
        "CB-003",
    ]
    assert list(filter_status(status, status="none", commune="01321")["hamlet_id"]) == ["CB-002"]
    with pytest.raises(ValueError, match="2 classified hamlets for 3 hamlets"):
        status_frame(
            status.rename(columns={"hamlet_id": "id"}), _classification(2, [[0, 0]] * 2, [0, 0])
        )


def test_csv_in_vietnamese_reads_back_with_diacritics(
    status: gpd.GeoDataFrame, tmp_path: Path
) -> None:
    path = write_table(status, tmp_path / "thon.csv", vi=True)
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # BOM: Excel opens it as UTF-8
    back = pd.read_csv(path, encoding="utf-8-sig", dtype=str)
    for header in ("Mã xã", "Tên thôn", "Dân số", "Trạng thái", "Không có điện lưới"):
        assert header in back.columns
    assert "Trạng thái Viettel" in back.columns and "RSRP Viettel (dBm)" in back.columns
    assert list(back["Tên thôn"]) == ["Bản Nà Rị", "Thôn Lũng Pán", "Xóm Cốc Xả"]
    assert list(back["Trạng thái"]) == ["phủ sóng", "trắng sóng", "lõm sóng"]
    assert list(back["Mã xã"]) == ["01290", "01321", "01324"]  # leading zeros kept
    assert "geometry" not in back.columns and "Dữ liệu giả lập" in back.columns


def test_geojson_and_geopackage(status: gpd.GeoDataFrame, tmp_path: Path) -> None:
    gj = gpd.read_file(write_table(status, tmp_path / "thon.geojson"))
    assert gj.crs.to_epsg() == 4326 and list(gj["name"]) == list(status["name"])
    assert gj.geometry.iloc[0].equals_exact(shapely.Point(105.544, 22.8215), 1e-9)
    gp = gpd.read_file(write_table(status, tmp_path / "thon.gpkg", vi=True), layer="hamlets")
    assert list(gp["Tên thôn"]) == ["Bản Nà Rị", "Thôn Lũng Pán", "Xóm Cốc Xả"]
    assert list(gp["Trạng thái Viettel"]) == ["phủ sóng", "trắng sóng", "mất sóng do sự cố"]


def test_xlsx_real_data_has_notes_but_no_synthetic_warning(
    status: gpd.GeoDataFrame, tmp_path: Path
) -> None:
    path = write_table(status, tmp_path / "thon.xlsx", vi=True, notes={"Tỉnh": "04 Cao Bằng"})
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["Dữ liệu", "Ghi chú"]
    rows = list(book["Dữ liệu"].iter_rows(values_only=True))
    assert rows[0][:3] == ("Mã thôn", "Tên thôn", "Mã xã")
    assert rows[2][1] == "Thôn Lũng Pán" and rows[2][2] == "01321"
    notes = list(book["Ghi chú"].iter_rows(values_only=True))
    assert notes == [("Tỉnh", "04 Cao Bằng")]


def test_synthetic_exports_say_so(status: gpd.GeoDataFrame, tmp_path: Path) -> None:
    fake = status.assign(synthetic=[True, True, True])
    book = openpyxl.load_workbook(write_table(fake, tmp_path / "gia_lap.xlsx"))
    assert book.sheetnames[0] == "Notes" and book.active.title == "Notes"
    assert book["Notes"]["A1"].value == SYNTHETIC_NOTE
    header = next(book["hamlets"].iter_rows(values_only=True))
    assert "synthetic" in header
    back = pd.read_csv(write_table(fake, tmp_path / "gia_lap.csv"), encoding="utf-8-sig")
    assert back["synthetic"].all()
    # a summary of synthetic hamlets has no such column of its own: it gets one
    summary = pd.DataFrame({"commune_code": ["01321"], "none_population": [210]})
    out = pd.read_csv(
        write_table(summary, tmp_path / "tong_hop.csv", synthetic=True), encoding="utf-8-sig"
    )
    assert list(out["synthetic"]) == [True]


def test_summary_headers_and_shapes(tmp_path: Path) -> None:
    assert vi_header("viettel_none_population") == "Viettel trắng sóng dân số"
    assert vi_header("overall_weak_no_grid_power") == "Chung lõm sóng không có điện lưới"
    assert vi_header("hamlets") == "Số thôn"
    assert vi_header("strange_column") == "strange_column"
    columns = pd.MultiIndex.from_tuples(
        [("overall", "none", "hamlets"), ("viettel", "weak", "population")]
    )
    summary = pd.DataFrame(
        [[3, 1200]], columns=columns, index=pd.Index(["01321"], name="commune_code")
    )
    back = pd.read_csv(
        write_table(summary, tmp_path / "s.csv", vi=True), encoding="utf-8-sig", dtype=str
    )
    assert list(back.columns) == ["Mã xã", "Chung trắng sóng số thôn", "Viettel lõm sóng dân số"]
    assert list(back.iloc[0]) == ["01321", "3", "1200"]
    with pytest.raises(
        ValidationError, match=r"-o: this table has no geometry; write .csv or .xlsx"
    ):
        write_table(summary, tmp_path / "s.geojson")
    with pytest.raises(ValidationError, match=r"-o: expected a file ending in one of"):
        write_table(summary, tmp_path / "s.pdf")


def test_vietnamese_workbook_names_operators_and_notes_in_vietnamese(tmp_path: Path) -> None:
    """What a province office sends on: operators as people write them, notes in Vietnamese."""
    changes = pd.DataFrame(
        {
            "hamlet_id": ["CB-001", "CB-001", "CB-002"],
            "operator": ["viettel", "overall", "vinaphone"],
            "before": ["none", "none", "weak"],
            "after": ["covered", "covered", "covered"],
        }
    )
    notes = {"Tỉnh": "04", "Thời điểm tính": "10:42 23/11/2026"}
    book = openpyxl.load_workbook(write_table(changes, tmp_path / "w.xlsx", vi=True, notes=notes))
    rows = list(book["Dữ liệu"].iter_rows(values_only=True))
    assert rows[0] == ("Mã thôn", "Nhà mạng", "Trước", "Sau")
    assert [r[1] for r in rows[1:]] == ["Viettel", "Chung", "VinaPhone (VNPT)"]
    assert rows[3][2:] == ("lõm sóng", "phủ sóng")
    assert list(book["Ghi chú"].iter_rows(values_only=True)) == list(notes.items())
    # in English the codes stay as they are, for scripts that read the file
    plain = pd.read_csv(write_table(changes, tmp_path / "w.csv"), encoding="utf-8-sig")
    assert list(plain["operator"]) == ["viettel", "overall", "vinaphone"]
