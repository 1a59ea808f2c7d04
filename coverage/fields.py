"""Column-wise parsing and checking of imported rows, each rejection naming field and value.

A :class:`RowChecks` holds one reason per row (the first problem found wins); each parser
reads one logical field (found through its aliases), returns the parsed column, and rejects the
rows whose value is missing when required, malformed or out of range with a message such as
``population: must be ≥ 0 (got '-5')``. Work is done on whole columns, so a large
OpenCelliD export is checked in seconds. The import's options and the helpers that turn checked
columns into records live here too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely

from lomsong.coverage.model import BoolArray, FloatArray, Operator
from lomsong.coverage.readers import cell_text, normalise
from lomsong.errors import ValidationError
from lomsong.timefmt import LOCAL_TZ
from lomsong.wire import EARLIEST, LATEST

ObjArray = npt.NDArray[np.object_]

#: naive times in a file are Vietnam's local time

_TRUE = {"1", "true", "t", "yes", "y", "co", "x"}
_FALSE = {"0", "false", "f", "no", "n", "khong"}


def texts_of(values: ObjArray) -> ObjArray:
    """Values as stripped text; None and NaN become empty."""
    series = pd.Series(values, dtype=object)
    # kept as Python objects: with pyarrow installed, pandas' own text dtype is Arrow's, which
    # cannot hold a lone surrogate, and such text must reach storable() to be refused by name
    missing = series.isna().to_numpy()
    out = np.empty(len(series), dtype=object)
    for i, (value, gone) in enumerate(zip(series.to_numpy(dtype=object), missing, strict=True)):
        out[i] = "" if gone else str(value).strip()
    return out


#: the era of every time a reading may carry, in epoch seconds: the wire's
_ERA = (EARLIEST.timestamp(), LATEST.timestamp())


def storable(text: str) -> bool:
    """Text every database keeps as it is: no NUL (PostgreSQL refuses it) and no lone
    surrogate (not UTF-8 at all)."""
    if text.isascii():
        return "\x00" not in text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _flag_key(value: object) -> str:
    # GeoJSON booleans with nulls reach pandas as 1.0/0.0/NaN
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    if isinstance(value, int | float | np.number) and value in (0, 1):
        return str(int(value))
    return normalise(cell_text(value))


class RowChecks:
    """The rows of one table and why each was rejected (None while it is still accepted)."""

    def __init__(
        self,
        frame: pd.DataFrame,
        headers: Mapping[str, str],
        aliases: Mapping[str, Iterable[str]],
        overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.frame = frame
        self.n = len(frame)
        self.reasons: ObjArray = np.full(self.n, None, dtype=object)
        self._ok = np.ones(self.n, dtype=bool)
        self.headers = dict(headers)
        self.keys: dict[str, str] = {}
        for name, names in aliases.items():
            key = next((normalise(a) for a in (name, *names) if normalise(a) in frame.columns), "")
            if key:
                self.keys[name] = key
        for name, header in (overrides or {}).items():
            key = normalise(header)
            if key not in frame.columns:
                raise ValidationError(
                    f"--column {name}",
                    header,
                    f"no such column; the file has {list(headers.values())}",
                )
            self.keys[name] = key

    # -- bookkeeping ---------------------------------------------------------------------------

    @property
    def ok(self) -> BoolArray:
        """The rows not rejected so far (a copy)."""
        return self._ok.copy()

    def reject(self, mask: BoolArray, reason: str | Callable[[int], str]) -> None:
        """Reject the rows of ``mask`` not rejected yet; ``reason`` may depend on the row."""
        for i in np.flatnonzero(mask & self._ok):
            self.reasons[i] = reason if isinstance(reason, str) else reason(int(i))
            self._ok[i] = False

    def has(self, name: str) -> bool:
        return name in self.keys

    def label(self, name: str) -> str:
        """How the user knows the field: the file's own header when there is one."""
        key = self.keys.get(name)
        return self.headers.get(key, name) if key else name

    def raw(self, name: str) -> ObjArray:
        key = self.keys.get(name)
        if key is None:
            return np.full(self.n, "", dtype=object)
        return np.asarray(self.frame[key].to_numpy(dtype=object), dtype=object)

    def texts(self, name: str) -> ObjArray:
        """The column as stripped text; None and NaN are empty."""
        return texts_of(self.raw(name))

    def _bad(self, name: str, raw: ObjArray, problem: str) -> Callable[[int], str]:
        label = self.label(name)
        return lambda i: f"{label}: {problem} (got {raw[i]!r})"

    def _missing(self, name: str, empty: BoolArray, required: bool) -> None:
        if required:
            self.reject(empty, f"{self.label(name)}: empty")

    # -- parsers -------------------------------------------------------------------------------

    def text(self, name: str, *, required: bool = False, max_length: int = 200) -> ObjArray:
        values = self.texts(name)
        empty = values == ""
        self._missing(name, empty, required)
        long = np.asarray(pd.Series(values, dtype=object).str.len() > max_length, dtype=bool)
        self.reject(long, self._bad(name, values, f"longer than {max_length} characters"))
        unstorable = np.fromiter((not storable(v) for v in values), dtype=bool, count=self.n)
        self.reject(
            unstorable, self._bad(name, values, "holds a NUL character or a lone surrogate")
        )
        return values

    def number(
        self,
        name: str,
        *,
        required: bool = False,
        low: float | None = None,
        high: float | None = None,
        high_open: bool = False,
        low_open: bool = False,
        unit: str = "",
    ) -> FloatArray:
        raw = self.raw(name)
        text = self.texts(name)
        empty = text == ""
        values = np.asarray(
            pd.to_numeric(pd.Series(text).str.replace(",", ".", regex=False), errors="coerce"),
            dtype=np.float64,
        )
        self._missing(name, empty, required)
        self.reject(~empty & ~np.isfinite(values), self._bad(name, raw, "not a number"))
        finite = np.isfinite(values)
        with np.errstate(invalid="ignore"):
            if low is not None:
                below = values <= low if low_open else values < low
                sign = ">" if low_open else "≥"
                self.reject(finite & below, self._bad(name, raw, f"must be {sign} {low:g}{unit}"))
            if high is not None:
                above = values >= high if high_open else values > high
                sign = "<" if high_open else "≤"
                self.reject(finite & above, self._bad(name, raw, f"must be {sign} {high:g}{unit}"))
        return values

    def count(self, name: str, *, required: bool = False) -> FloatArray:
        """A non-negative whole number (population, households); NaN where empty."""
        values = self.number(name, required=required, low=0)
        fraction = np.isfinite(values) & (values != np.floor(values))
        self.reject(fraction, self._bad(name, self.raw(name), "must be a whole number"))
        return values

    def flag(self, name: str) -> ObjArray:
        """True, False or None (unknown) from 1/0, true/false, yes/no, có/không."""
        raw = self.raw(name)
        out = np.full(self.n, None, dtype=object)
        cache: dict[object, str] = {}
        keys = [cache.get(v) or cache.setdefault(v, _flag_key(v)) for v in raw]
        for i, key in enumerate(keys):
            if key in _TRUE:
                out[i] = True
            elif key in _FALSE:
                out[i] = False
        bad = np.array([k != "" and o is None for k, o in zip(keys, out, strict=True)], dtype=bool)
        self.reject(bad, self._bad(name, raw, "expected yes/no, true/false, 1/0 or có/không"))
        return out

    def code(self, name: str, width: int, *, required: bool = False) -> ObjArray:
        """An official code with its leading zeros: 1273, "1273" and "01273" are all "01273"."""
        raw = self.raw(name)
        text = self.texts(name)
        out = np.full(self.n, None, dtype=object)
        bad = np.zeros(self.n, dtype=bool)
        for i, t in enumerate(text):
            if t.endswith(".0") and t[:-2].isdigit():  # a code read as a number
                t = t[:-2]
            if not t:
                continue
            if t.isdigit() and len(t) <= width:
                out[i] = t.zfill(width)
            else:
                bad[i] = True
        self._missing(name, text == "", required)
        self.reject(bad, self._bad(name, raw, f"expected a code of {width} digits"))
        return out

    def choice(
        self, name: str, mapping: Mapping[str, str], allowed: Iterable[str], *, required: bool
    ) -> ObjArray:
        """A value from a closed set, matched through ``mapping`` (normalised spelling → value)."""
        raw = self.raw(name)
        text = self.texts(name)
        # few distinct spellings, many rows: normalise each spelling once
        found = {t: mapping.get(normalise(t)) for t in set(text)}
        out = np.array([found[t] for t in text], dtype=object)
        empty = text == ""
        self._missing(name, empty, required)
        unknown = ~empty & np.array([o is None for o in out], dtype=bool)
        wanted = ", ".join(allowed)
        self.reject(unknown, self._bad(name, raw, f"expected one of {{{wanted}}}"))
        return out

    def time(self, name: str, *, required: bool = False) -> FloatArray:
        """Epoch seconds from ISO 8601 (naive: Vietnam's local time) or epoch seconds."""
        raw = self.raw(name)
        out = np.full(self.n, np.nan)
        bad = np.zeros(self.n, dtype=bool)
        empty = np.zeros(self.n, dtype=bool)
        for i, v in enumerate(raw):
            if isinstance(v, datetime):  # a date column of a GeoPackage
                stamp = v if v.tzinfo is not None else v.replace(tzinfo=LOCAL_TZ)
                out[i] = stamp.timestamp()
                continue
            t = cell_text(v)
            if not t:
                empty[i] = True
                continue
            try:
                out[i] = float(t)
                continue
            except ValueError:
                pass
            try:
                parsed = datetime.fromisoformat(t.replace("Z", "+00:00"))
            except ValueError:
                bad[i] = True
                continue
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=LOCAL_TZ)
            out[i] = parsed.timestamp()
        self._missing(name, empty, required)
        self.reject(bad, self._bad(name, raw, "expected an ISO 8601 time or epoch seconds"))
        with np.errstate(invalid="ignore"):
            era = ~np.isnan(out) & ~((out >= _ERA[0]) & (out < _ERA[1]))
        self.reject(era, self._bad(name, raw, "not a time between 2000 and 2100"))
        return out


def operator_names(operators: Iterable[Operator]) -> dict[str, str]:
    """Spellings of each operator (key, name, MCC-MNC; VNPT for VinaPhone) → its key."""
    out: dict[str, str] = {}
    for op in operators:
        out[normalise(op.key)] = op.key
        out[normalise(op.name)] = op.key
        for mnc in op.mnc:
            for spelling in (f"{op.mcc}-{mnc}", f"{op.mcc}{mnc}", f"{op.mcc} {mnc}"):
                out[normalise(spelling)] = op.key
    if "vinaphone" in out.values():
        out.update({"vnpt": "vinaphone", "vnpt_vinaphone": "vinaphone"})
    if "gmobile" in out.values():
        out["beeline"] = "gmobile"
    return out


def operator_of_mnc(operators: Iterable[Operator]) -> dict[tuple[str, str], str]:
    """(MCC, MNC with two digits) → operator key."""
    return {(op.mcc, mnc.zfill(2)): op.key for op in operators for mnc in op.mnc}


RADIO_NAMES = {
    "gsm": "gsm",
    "2g": "gsm",
    "umts": "umts",
    "wcdma": "umts",
    "3g": "umts",
    "lte": "lte",
    "4g": "lte",
    "nr": "nr",
    "5g": "nr",
}
STATUS_NAMES = {
    "active": "active",
    "on": "active",
    "up": "active",
    "on_air": "active",
    "hoat_dong": "active",
    "dang_hoat_dong": "active",
    "down": "down",
    "off": "down",
    "su_co": "down",
    "mat_song": "down",
    "ngung_hoat_dong": "down",
    "planned": "planned",
    "plan": "planned",
    "quy_hoach": "planned",
    "du_kien": "planned",
    "ke_hoach": "planned",
}


@dataclass(frozen=True)
class Options:
    """What the user asked for besides the file (CLI options of ``geodata import``)."""

    kind: str
    crs: str | None = None
    province: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)
    operator: str | None = None
    synthetic: bool = False
    source: str = ""


SKIP = "\0skip"  # a reason that marks a row skipped, not rejected


def lon_lat(points: ObjArray) -> tuple[FloatArray, FloatArray]:
    lon = np.full(len(points), np.nan)
    lat = np.full(len(points), np.nan)
    have = np.array([p is not None for p in points], dtype=bool)
    lon[have] = shapely.get_x(points[have])
    lat[have] = shapely.get_y(points[have])
    return lon, lat


def reject_duplicates(checks: RowChecks, ids: ObjArray, rows_label: str = "id") -> None:
    """Reject a row whose id an earlier accepted row already has."""
    ids = np.asarray(ids, dtype=object)
    live = checks.ok & np.asarray(pd.Series(ids, dtype=object).fillna("") != "", dtype=bool)
    dup = np.zeros(checks.n, dtype=bool)
    dup[live] = pd.Series(ids[live], dtype=object).duplicated(keep="first").to_numpy()
    checks.reject(dup, lambda i: f"{rows_label}: duplicate in this file (got {ids[i]!r})")


def nullable(values: FloatArray) -> ObjArray:
    """Floats as Python floats, None where NaN (the database's NULL)."""
    out = values.astype(object)
    out[~np.isfinite(values)] = None
    return out


def nullable_ints(values: FloatArray) -> ObjArray:
    out = np.full(len(values), None, dtype=object)
    have = np.isfinite(values)
    out[have] = values[have].astype(np.int64).tolist()
    return out


Columns = dict[str, Any]


def records(columns: Columns, rows: npt.NDArray[np.int64]) -> list[dict[str, Any]]:
    """The chosen rows as dicts; a column is an array (one value per row) or one value."""
    keys = list(columns)
    values = []
    for k in keys:
        v = columns[k]
        if isinstance(v, np.ndarray):
            picked = v[rows]
            values.append((nullable(picked) if picked.dtype.kind == "f" else picked).tolist())
        else:
            values.append([v] * len(rows))
    return [dict(zip(keys, row, strict=True)) for row in zip(*values, strict=True)]
