"""Reading geodata files into one shape: attribute columns, geometry, source row numbers.

GeoJSON, GeoPackage and Shapefile are read with pyogrio; CSV (and Excel) rows carry their
position in latitude/longitude (or x/y) columns or a WKT column; an OpenCelliD export is
recognised by its columns, with or without its header row. Headers are normalised (lower case,
no diacritics, ``_`` between words) so that "Vĩ độ", "vi_do" and "VI DO" are the same column.
Nothing is validated here beyond what is needed to read: that is ``importing``'s job.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyogrio
import shapely
from pyproj import CRS

from lomsong.errors import GeodataError, MissingFileError, ValidationError

#: OpenCelliD's export columns, in order (DESIGN §9): longitude comes before latitude.
OPENCELLID_COLUMNS = (
    "radio",
    "mcc",
    "net",
    "area",
    "cell",
    "unit",
    "lon",
    "lat",
    "range",
    "samples",
    "changeable",
    "created",
    "updated",
    "averagesignal",
)
_OPENCELLID_RADIOS = {"gsm", "umts", "lte", "nr", "cdma"}

LAT_NAMES = ("lat", "latitude", "y", "vi_do", "vido")
LON_NAMES = ("lon", "lng", "long", "longitude", "x", "kinh_do", "kinhdo")
WKT_NAMES = ("wkt", "geometry", "geom", "the_geom")

VECTOR_SUFFIXES = {".geojson": "geojson", ".json": "geojson", ".gpkg": "gpkg", ".shp": "shapefile"}
TABLE_SUFFIXES = {".csv": "csv", ".txt": "csv", ".xlsx": "xlsx"}

ObjArray = npt.NDArray[np.object_]


def normalise(name: object) -> str:
    """A header as a key: ``"Vĩ độ (WGS84)"`` → ``"vi_do_wgs84"``; ``"averageSignal"`` too."""
    text = str(name).replace("đ", "d").replace("Đ", "D")
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return re.sub(r"[^a-z0-9]+", "_", text).strip("_")


@dataclass
class Table:
    """What a file holds, before validation.

    ``geometry`` holds shapely geometries in ``crs`` (None where a row has none) and
    ``problem`` the reason a row's geometry could not be read; ``rows`` are the numbers a user
    finds the row by: the line in a CSV file, the feature number (from 1) in a vector file.
    """

    frame: pd.DataFrame
    geometry: ObjArray
    problem: ObjArray
    rows: npt.NDArray[np.int64]
    crs: CRS | None
    format: str
    headers: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frame)


def read_table(
    path: Path,
    *,
    layer: str | None = None,
    lat_column: str | None = None,
    lon_column: str | None = None,
) -> Table:
    """Read a geodata file; the format is chosen by its name and, for CSV, its columns."""
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file")
    name = path.name.lower()
    suffix = Path(name[:-3]).suffix if name.endswith(".gz") else path.suffix.lower()
    if suffix in VECTOR_SUFFIXES and not name.endswith(".gz"):
        return _read_vector(path, VECTOR_SUFFIXES[suffix], layer)
    if suffix in TABLE_SUFFIXES:
        if TABLE_SUFFIXES[suffix] == "xlsx":
            frame = pd.read_excel(path, dtype=str).fillna("")
            return points_table(frame, 2, "xlsx", lat_column, lon_column)
        return _read_csv(path, lat_column, lon_column)
    known = sorted({*VECTOR_SUFFIXES, *TABLE_SUFFIXES, ".csv.gz"})
    raise GeodataError(f"{path}: unknown file type {suffix!r}; expected one of {known}")


def _read_vector(path: Path, fmt: str, layer: str | None) -> Table:
    try:
        layers = [str(row[0]) for row in pyogrio.list_layers(path)]
    except Exception as exc:  # pyogrio raises its own DataSourceError family
        raise GeodataError(f"{path}: cannot read as {fmt}: {exc}") from None
    if layer is None and len(layers) > 1:
        raise GeodataError(f"{path}: holds several layers {layers}; choose one with --layer")
    if layer is not None and layer not in layers:
        raise ValidationError("--layer", layer, f"{path.name} has layers {layers}")
    try:
        frame = pyogrio.read_dataframe(path, layer=layer, on_invalid="ignore")
    except Exception as exc:
        raise GeodataError(f"{path}: cannot read as {fmt}: {exc}") from None
    crs = None if frame.crs is None else CRS.from_user_input(frame.crs)
    geometry = np.asarray(frame.geometry.array, dtype=object)
    attributes = pd.DataFrame(frame.drop(columns=frame.geometry.name))
    attributes, headers = _normalised(attributes)
    problem = np.full(len(frame), None, dtype=object)
    missing = np.array([g is None for g in geometry], dtype=bool)
    problem[missing] = "geometry: missing or unreadable"
    return Table(
        frame=attributes,
        geometry=geometry,
        problem=problem,
        rows=np.arange(1, len(frame) + 1, dtype=np.int64),
        crs=crs,
        format=fmt,
        headers=headers,
    )


#: what to do about a file that is not UTF-8 (Excel's plain "CSV" is the Windows code page)
_SAVE_AS = "; in Excel, save it as 'CSV UTF-8'"


def _first_line(path: Path) -> str:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
        return fh.readline()


def is_opencellid(first_line: str) -> tuple[bool, bool]:
    """(is it an OpenCelliD export, does it have a header row) from its first line."""
    fields = next(csv.reader(io.StringIO(first_line)), [])
    if tuple(normalise(f) for f in fields) == OPENCELLID_COLUMNS:
        return True, True
    headless = (
        len(fields) == len(OPENCELLID_COLUMNS)
        and fields[0].strip().lower() in _OPENCELLID_RADIOS
        and fields[1].strip().isdigit()
    )
    return headless, False


def _read_csv(path: Path, lat_column: str | None, lon_column: str | None) -> Table:
    try:
        first = _first_line(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise GeodataError(f"{path}: cannot read as UTF-8 text: {exc}{_SAVE_AS}") from None
    ocid, header = is_opencellid(first)
    try:
        if ocid:
            frame = pd.read_csv(
                path,
                dtype=str,
                keep_default_na=False,
                encoding="utf-8-sig",
                header=0 if header else None,
                names=list(OPENCELLID_COLUMNS),
            )
            table = points_table(frame, 2 if header else 1, "opencellid", None, None)
            return table
        frame = pd.read_csv(
            path, dtype=str, keep_default_na=False, encoding="utf-8-sig", sep=delimiter(first)
        )
    except UnicodeDecodeError as exc:
        raise GeodataError(f"{path}: cannot read as UTF-8 text: {exc}{_SAVE_AS}") from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise GeodataError(f"{path}: cannot read as CSV: {exc}") from None
    return points_table(frame, 2, "csv", lat_column, lon_column)


def delimiter(header: str) -> str:
    """The field separator, from the header line: ``;`` where Excel saved the file in a locale
    whose decimal mark is a comma (vi-VN among them), a tab for a text export, else ``,``.

    The separator that splits the header into the most fields wins, a comma on a tie; quoted
    headers that hold another separator are one field, as the csv module reads them.
    """
    fields = {sep: len(next(csv.reader(io.StringIO(header), delimiter=sep), [])) for sep in ",;\t"}
    return max(fields, key=lambda sep: (fields[sep], sep == ","))


def _normalised(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    headers: dict[str, str] = {}
    keep = []
    for column in frame.columns:
        key = normalise(column)
        if key and key not in headers:
            headers[key] = str(column)
            keep.append(column)
    out = frame[keep].copy()
    out.columns = list(headers)
    return out.reset_index(drop=True), headers


def _pick(headers: dict[str, str], wanted: str | None, names: tuple[str, ...], what: str) -> str:
    if wanted is not None:
        key = normalise(wanted)
        if key not in headers:
            raise ValidationError(
                f"--{what}-column", wanted, f"no such column; the file has {list(headers.values())}"
            )
        return key
    return next((n for n in names if n in headers), "")


def points_table(
    raw: pd.DataFrame, first_row: int, fmt: str, lat_column: str | None, lon_column: str | None
) -> Table:
    frame, headers = _normalised(raw)
    n = len(frame)
    rows = np.arange(first_row, first_row + n, dtype=np.int64)
    geometry = np.full(n, None, dtype=object)
    problem = np.full(n, None, dtype=object)
    lat = _pick(headers, lat_column, LAT_NAMES, "lat")
    lon = _pick(headers, lon_column, LON_NAMES, "lon")
    wkt = next((w for w in WKT_NAMES if w in headers), "")
    if lat and lon:
        _parse_points(frame[lon], frame[lat], headers[lon], headers[lat], geometry, problem)
    elif wkt:
        _parse_wkt(frame[wkt], headers[wkt], geometry, problem)
    else:
        raise GeodataError(
            f"no coordinate columns: expected latitude ({', '.join(LAT_NAMES)}) and longitude "
            f"({', '.join(LON_NAMES)}) or WKT ({', '.join(WKT_NAMES)}); the file has "
            f"{list(headers.values())}; name them with --lat-column and --lon-column"
        )
    return Table(frame, geometry, problem, rows, None, fmt, headers)


def cell_text(value: object) -> str:
    """A cell as text: None and NaN are empty."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value).strip()


def _numbers(values: pd.Series) -> npt.NDArray[np.float64]:
    # Python strings, not pandas' text dtype (Arrow's when pyarrow is installed, which cannot
    # hold a lone surrogate): such a cell is then simply not a number
    text = np.array([cell_text(v).replace(",", ".") for v in values.to_numpy(dtype=object)])
    return np.asarray(pd.to_numeric(pd.Series(text, dtype=object), errors="coerce"), np.float64)


def _parse_points(
    xs: pd.Series, ys: pd.Series, x_name: str, y_name: str, geometry: ObjArray, problem: ObjArray
) -> None:
    x, y = _numbers(xs), _numbers(ys)
    ok = np.isfinite(x) & np.isfinite(y)
    geometry[ok] = shapely.points(x[ok], y[ok])
    for i in np.flatnonzero(~ok):
        name, value = (x_name, xs.iloc[i]) if not np.isfinite(x[i]) else (y_name, ys.iloc[i])
        text = cell_text(value)
        problem[i] = f"{name}: empty" if not text else f"{name}: not a number (got {value!r})"


def _parse_wkt(values: pd.Series, name: str, geometry: ObjArray, problem: ObjArray) -> None:
    for i, text in enumerate(cell_text(v) for v in values):
        if not text:
            problem[i] = f"{name}: empty"
            continue
        try:
            geometry[i] = shapely.from_wkt(text)
        except shapely.errors.GEOSException:
            problem[i] = f"{name}: not WKT (got {text[:60]!r})"
