"""Writing per-hamlet status and summaries to GeoJSON, GeoPackage, CSV or XLSX.

The format is chosen by the output file's extension. With ``vi=True`` the column headers (and
status values) are in Vietnamese, as provinces report them to the ministry. Every export of
synthetic data says so: a ``synthetic`` column on every row and, in a workbook, a notes sheet.
CSV and workbooks are written by ``sheets``, which the collector's downloads share.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from lomsong.coverage.formats import FORMATS
from lomsong.coverage.model import DEFAULT_OPERATORS, STATUS_LABELS_VI
from lomsong.coverage.sheets import csv_chunks, write_xlsx
from lomsong.errors import ValidationError
from lomsong.words import operator_name

SYNTHETIC_NOTE = (
    "DỮ LIỆU GIẢ LẬP: thôn và trạm trong tệp này được sinh ngẫu nhiên, không phải số liệu thật. "
    "SYNTHETIC DATA: the hamlets and sites in this file are generated, not real."
)

HEADERS_VI = {
    "hamlet_id": "Mã thôn",
    "id": "Mã",
    "name": "Tên thôn",
    "commune_code": "Mã xã",
    "commune_name": "Tên xã",
    "province_code": "Mã tỉnh",
    "province_name": "Tên tỉnh",
    "population": "Dân số",
    "households": "Số hộ",
    "has_grid_power": "Có điện lưới",
    "no_grid_power": "Không có điện lưới",
    "status": "Trạng thái",
    "best_operator": "Nhà mạng tốt nhất",
    "operator": "Nhà mạng",
    "before": "Trước",
    "after": "Sau",
    "improved": "Được cải thiện",
    "lat": "Vĩ độ",
    "lon": "Kinh độ",
    "synthetic": "Dữ liệu giả lập",
    "hamlets": "Số thôn",
    "area_km2": "Diện tích (km²)",
}
#: words of summary columns such as ``viettel_none_population`` or ``overall_weak_no_grid_power``
WORDS_VI = {
    "hamlets": "số thôn",
    "population": "dân số",
    "no_grid_power": "không có điện lưới",
    "no_power": "không có điện lưới",
    "overall": "chung",
    "total": "tổng",
    "status": "trạng thái",
    "rsrp": "RSRP",
    "dbm": "(dBm)",
    "measured": "đo thực tế",
    **{str(s.value): label for s, label in STATUS_LABELS_VI.items()},
    **{op.key: op.name for op in DEFAULT_OPERATORS},
}


def vi_header(name: str) -> str:
    """A column's Vietnamese header: a known name, or its words translated, else itself."""
    if name in HEADERS_VI:
        return HEADERS_VI[name]
    words: list[str] = []
    parts = name.split("_")
    i = 0
    while i < len(parts):
        for width in (3, 2, 1):
            phrase = "_".join(parts[i : i + width])
            if phrase in WORDS_VI:
                words.append(WORDS_VI[phrase])
                i += width
                break
        else:
            return name
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _status_columns(frame: pd.DataFrame) -> list[str]:
    return [
        c for c in frame.columns if c in ("status", "before", "after") or c.startswith("status_")
    ]


def _vietnamese(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    labels = {str(s.value): label for s, label in STATUS_LABELS_VI.items()}
    for column in _status_columns(out):
        out[column] = out[column].map(lambda v: labels.get(str(v), v))
    for column in ("operator", "best_operator"):
        if column in out.columns:
            out[column] = out[column].map(_operator_vi)
    renamed = {
        c: vi_header(str(c))
        for c in out.columns
        if c != getattr(out, "_geometry_column_name", None)
    }
    return out.rename(columns=renamed)


def _operator_vi(value: object) -> object:
    """``VinaPhone (VNPT)`` for ``vinaphone`` (as alerts and pages say it), ``Chung`` for the
    overall row; anything else as it is."""
    return operator_name(value, "vi") if isinstance(value, str) and value else value


def flat(frame: pd.DataFrame) -> pd.DataFrame:
    """Named index levels as columns, column levels joined by ``_`` (``viettel_none_hamlets``)."""
    if isinstance(frame.columns, pd.MultiIndex):
        frame = frame.copy()
        frame.columns = ["_".join(str(p) for p in col if str(p)) for col in frame.columns]
    if frame.index.name is not None or isinstance(frame.index, pd.MultiIndex):
        frame = frame.reset_index()
    return frame


def prepared(frame: pd.DataFrame, *, synthetic: bool | None = None) -> tuple[pd.DataFrame, bool]:
    """``frame`` flat, and whether it is synthetic (by default, whether any row says so); a
    synthetic table gets a ``synthetic`` column if it has none."""
    frame = flat(frame)
    if synthetic is None:
        synthetic = "synthetic" in frame.columns and bool(frame["synthetic"].fillna(False).any())
    if synthetic and "synthetic" not in frame.columns:
        frame = frame.assign(synthetic=True)
    return frame, synthetic


def rows_of(frame: pd.DataFrame, *, vi: bool) -> tuple[list[str], Iterator[tuple[Any, ...]]]:
    """The header and rows of a flat table for a spreadsheet: no geometry; with ``vi``,
    Vietnamese headers and status values."""
    if isinstance(frame, gpd.GeoDataFrame) and frame.geometry.name in frame.columns:
        frame = pd.DataFrame(frame.drop(columns=frame.geometry.name))
    out = _vietnamese(frame) if vi else frame
    return [str(c) for c in out.columns], out.itertuples(index=False, name=None)


def sheet_names(*, vi: bool, layer: str) -> tuple[str, str]:
    """The workbook's data and notes sheets."""
    return ("Dữ liệu" if vi else layer), ("Ghi chú" if vi else "Notes")


def write_table(
    frame: pd.DataFrame,
    path: Path,
    *,
    vi: bool = False,
    synthetic: bool | None = None,
    layer: str = "hamlets",
    notes: Mapping[str, str] | None = None,
) -> Path:
    """Write ``frame`` (a GeoDataFrame for GeoJSON/GeoPackage) to ``path`` by its extension.

    Parameters
    ----------
    frame
        Per-hamlet status or a summary; a ``synthetic`` column marks synthetic rows.
    path
        ``.geojson``/``.json``, ``.gpkg``, ``.csv`` or ``.xlsx``.
    vi
        Vietnamese headers and status values.
    synthetic
        Whether the data is synthetic; by default, whether any row's ``synthetic`` is true.
        Synthetic data gets a ``synthetic`` column (if it has none) and, in a workbook, a note.
    notes
        Lines for the workbook's notes sheet (source, time, thresholds), label → text.

    Examples
    --------
    >>> write_table(status, Path("cao_bang.xlsx"), vi=True)  # doctest: +SKIP
    """
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValidationError(
            "-o", str(path), f"expected a file ending in one of {sorted(FORMATS)}"
        )
    frame, synthetic = prepared(frame, synthetic=synthetic)
    has_geometry = isinstance(frame, gpd.GeoDataFrame) and frame.geometry.name in frame.columns
    if fmt in ("geojson", "gpkg"):
        if not has_geometry:
            raise ValidationError(
                "-o", str(path), "this table has no geometry; write .csv or .xlsx instead"
            )
        out = _vietnamese(frame) if vi else frame
        path.unlink(missing_ok=True)
        if fmt == "geojson":
            out.to_crs("EPSG:4326").to_file(path, driver="GeoJSON", engine="pyogrio")
        else:
            out.to_file(path, driver="GPKG", layer=layer, engine="pyogrio")
        return path
    header, rows = rows_of(frame, vi=vi)
    if fmt == "csv":
        with path.open("wb") as f:
            f.writelines(csv_chunks(header, rows))
        return path
    sheet, notes_sheet = sheet_names(vi=vi, layer=layer)
    write_xlsx(
        str(path),
        header,
        rows,
        sheet=sheet,
        notes_sheet=notes_sheet,
        notes=notes or {},
        warning=SYNTHETIC_NOTE if synthetic else None,
    )
    return path
