"""Writing per-hamlet status and summaries to GeoJSON, GeoPackage, CSV or XLSX.

The format is chosen by the output file's extension. With ``vi=True`` the column headers (and
status values) are in Vietnamese, as provinces report them to the ministry. Every export of
synthetic data says so: a ``synthetic`` column on every row and, in a workbook, a notes sheet.
CSV is written as UTF-8 with a byte-order mark, so that Excel shows the diacritics.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import geopandas as gpd
import pandas as pd

from lomsong.coverage.formats import FORMATS
from lomsong.coverage.model import DEFAULT_OPERATORS, STATUS_LABELS_VI
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
    """``VinaPhone (VNPT)`` for ``vinaphone`` (as alerts and pages say it), ``chung`` for the
    overall row; anything else as it is."""
    if value == "overall":
        return "chung"
    return operator_name(value, "vi") if isinstance(value, str) and value else value


def flat(frame: pd.DataFrame) -> pd.DataFrame:
    """Named index levels as columns, column levels joined by ``_`` (``viettel_none_hamlets``)."""
    if isinstance(frame.columns, pd.MultiIndex):
        frame = frame.copy()
        frame.columns = ["_".join(str(p) for p in col if str(p)) for col in frame.columns]
    if frame.index.name is not None or isinstance(frame.index, pd.MultiIndex):
        frame = frame.reset_index()
    return frame


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
    frame = flat(frame)
    if synthetic is None:
        synthetic = "synthetic" in frame.columns and bool(frame["synthetic"].fillna(False).any())
    if synthetic and "synthetic" not in frame.columns:
        frame = frame.assign(synthetic=True)
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
    plain = pd.DataFrame(frame.drop(columns=frame.geometry.name) if has_geometry else frame)
    out = _vietnamese(plain) if vi else plain
    if fmt == "csv":
        out.to_csv(path, index=False, encoding="utf-8-sig")
        return path
    _write_xlsx(out, path, vi=vi, synthetic=synthetic, layer=layer, notes=notes or {})
    return path


def _write_xlsx(
    frame: pd.DataFrame,
    path: Path,
    *,
    vi: bool,
    synthetic: bool,
    layer: str,
    notes: Mapping[str, str],
) -> None:
    from openpyxl.styles import Font

    sheet = ("Dữ liệu" if vi else layer)[:31]
    notes_sheet = "Ghi chú" if vi else "Notes"
    lines = [(SYNTHETIC_NOTE, "")] if synthetic else []
    lines += list(notes.items())
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        frame.to_excel(writer, sheet_name=sheet, index=False, freeze_panes=(1, 0))
        pd.DataFrame(lines or [("", "")], columns=["", ""]).to_excel(
            writer, sheet_name=notes_sheet, index=False, header=False
        )
        book = writer.book
        data = book[sheet]
        for cell in data[1]:
            cell.font = Font(bold=True)
        for column in data.columns:
            width = max(len(str(c.value or "")) for c in column[:200])
            data.column_dimensions[column[0].column_letter].width = min(max(width + 2, 8), 60)
        if synthetic:
            book[notes_sheet]["A1"].font = Font(bold=True, color="C00000")
            book.move_sheet(notes_sheet, offset=-len(book.sheetnames) + 1)
            book.active = 0
