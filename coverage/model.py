"""The coverage engine's vocabulary: operators, statuses, settings and the columns it works on.

Everything the engine computes is a function of three tables held as numpy columns (hamlets,
sectors, readings) and one settings object, so that the same code serves the CLI, the collector's
API, the maps and the benchmarks. Coordinates are lon/lat in EPSG:4326; metric work is done in
EPSG:32648 (UTM 48N, DESIGN §8).
"""

from __future__ import annotations

import dataclasses
import unicodedata
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
StrArray = npt.NDArray[np.object_]

METRIC_CRS = "EPSG:32648"


@dataclass(frozen=True)
class Operator:
    key: str
    name: str
    mcc: str
    mnc: tuple[str, ...]


# DESIGN §3; extendable through CoverageSettings.operators.
DEFAULT_OPERATORS: tuple[Operator, ...] = (
    Operator("viettel", "Viettel", "452", ("04", "06", "08")),
    Operator("vinaphone", "VinaPhone", "452", ("02",)),
    Operator("mobifone", "MobiFone", "452", ("01",)),
    Operator("vietnamobile", "Vietnamobile", "452", ("05",)),
    Operator("gmobile", "Gmobile", "452", ("07",)),
)


class Status(StrEnum):
    """Coverage status of a hamlet, per operator and overall; ordered best first."""

    COVERED = "covered"  # phủ sóng
    WEAK = "weak"  # lõm sóng
    NONE = "none"  # trắng sóng
    OUTAGE = "outage"  # its serving sites or its commune's link are down right now


# Status codes as stored in the engine's int8 arrays.
STATUS_CODES: tuple[Status, ...] = (Status.COVERED, Status.WEAK, Status.NONE, Status.OUTAGE)
COVERED, WEAK, NONE, OUTAGE = 0, 1, 2, 3

STATUS_LABELS_VI = {
    Status.COVERED: "phủ sóng",
    Status.WEAK: "lõm sóng",
    Status.NONE: "trắng sóng",
    Status.OUTAGE: "mất sóng do sự cố",
}

# Environment classes for the Hata correction (DESIGN §8): wards are built up, the rest rural.
ENVIRONMENTS = ("urban", "suburban", "rural")
URBAN, SUBURBAN, RURAL = 0, 1, 2

# The six centrally run cities (2025 codes): Hà Nội, Hải Phòng, Huế, Đà Nẵng, Hồ Chí Minh, Cần Thơ.
# Their wards are Hata "urban"; a provincial town's ward (2–4 storey houses, fields inside its
# 2025 boundary) is "suburban"; xã and đặc khu are "rural" (quasi-open).
CITY_PROVINCES = frozenset({"01", "31", "46", "48", "79", "92"})

RADIOS = ("gsm", "umts", "lte", "nr")


@dataclass(frozen=True)
class Thresholds:
    """RSRP thresholds in dBm: covered at or above ``covered_dbm``, none below ``none_dbm``."""

    covered_dbm: float = -100.0
    none_dbm: float = -110.0

    def __post_init__(self) -> None:
        if not self.none_dbm < self.covered_dbm:
            raise ValueError(
                f"thresholds: none_dbm ({self.none_dbm}) must be below covered_dbm "
                f"({self.covered_dbm})"
            )


@dataclass(frozen=True)
class CoverageSettings:
    thresholds: Thresholds = field(default_factory=Thresholds)
    operators: tuple[Operator, ...] = DEFAULT_OPERATORS
    # a sector without its own power transmits this much (dBm, total, e.g. 43 dBm = 20 W)
    default_power_dbm: float = 43.0
    default_height_m: float = 30.0
    default_beamwidth_deg: float = 65.0
    sector_gain_dbi: float = 17.0
    omni_gain_dbi: float = 11.0
    mobile_height_m: float = 1.5
    # measured readings within this distance and age of a hamlet override the prediction
    measured_radius_m: float = 500.0
    measured_max_age_days: float = 365.0
    # no sector serves beyond this distance (GSM's timing-advance limit; Hata is fitted to 20 km)
    max_reach_m: float = 35_000.0
    # Predictions are median levels over the terrain the model cannot see (no open DEM): a
    # margin of about one standard deviation of log-normal shadowing in hilly land (σ ≈ 8 dB)
    # makes "covered" mean covered at about 84 % of locations. Measured readings are not
    # touched, and an OpenCelliD range is a measured extent, so it is not shrunk either.
    shadow_margin_db: float = 8.0

    def operator_keys(self) -> tuple[str, ...]:
        return tuple(op.key for op in self.operators)


@dataclass
class Hamlets:
    """Hamlets as columns; row i of every array is hamlet i."""

    ids: StrArray
    names: StrArray
    commune_code: StrArray
    province_code: StrArray
    lon: FloatArray
    lat: FloatArray
    population: IntArray
    has_grid_power: BoolArray  # unknown counts as having power
    environment: npt.NDArray[np.int8]
    synthetic: BoolArray

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass
class Sectors:
    """Sectors (cells) as columns; NaN azimuth means omnidirectional, NaN power the default."""

    ids: StrArray
    site_id: StrArray
    operator: StrArray
    radio: StrArray
    band_mhz: FloatArray
    lon: FloatArray
    lat: FloatArray
    height_m: FloatArray
    azimuth_deg: FloatArray
    beamwidth_deg: FloatArray
    power_dbm: FloatArray
    range_m: FloatArray
    active: BoolArray  # False: status "down" (planned sectors are not loaded)

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass
class Readings:
    """Measured signal: field readings and probes' modem readings."""

    lon: FloatArray
    lat: FloatArray
    operator: StrArray
    rsrp_dbm: FloatArray
    measured_at: FloatArray
    source: StrArray

    def __len__(self) -> int:
        return int(self.lon.shape[0])


def empty_readings() -> Readings:
    return Readings(
        lon=np.empty(0),
        lat=np.empty(0),
        operator=np.empty(0, dtype=object),
        rsrp_dbm=np.empty(0),
        measured_at=np.empty(0),
        source=np.empty(0, dtype=object),
    )


def take_sectors(sectors: Sectors, index: Any) -> Sectors:
    """The sectors at ``index`` (indices or a boolean mask), in that order."""
    return Sectors(**{name: getattr(sectors, name)[index] for name in fields_of(Sectors)})


def concat_sectors(*parts: Sectors) -> Sectors:
    """The sectors of every part, one after the other."""
    return Sectors(
        **{name: np.concatenate([getattr(p, name) for p in parts]) for name in fields_of(Sectors)}
    )


def fields_of(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def as_object(values: list[Any]) -> StrArray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


@dataclass
class Classification:
    """The engine's answer for a set of hamlets: row i is hamlet i, column j is operators[j]."""

    operators: tuple[str, ...]
    rsrp_dbm: npt.NDArray[np.float32]  # NaN where no sector reaches
    measured: BoolArray  # True where readings replaced the prediction
    serving: IntArray  # index into the sectors, -1 for none
    status: npt.NDArray[np.int8]  # status codes per operator
    overall: npt.NDArray[np.int8]  # the best status over the operators
    best_operator: IntArray  # index into operators, -1 for none
    # the settings it was computed with; apply_outages recomputes levels near down sectors
    settings: CoverageSettings | None = None

    def __len__(self) -> int:
        return int(self.overall.shape[0])


def environment_codes(commune_type: StrArray, province_code: StrArray) -> npt.NDArray[np.int8]:
    """Environment class (URBAN/SUBURBAN/RURAL) of each commune type ("xã", "phường", ...).

    Wards of the centrally run cities are urban, other wards suburban, xã and đặc khu rural;
    the type is matched without regard to case ("Phường" and "phường").
    """
    kinds = np.array([commune_kind(t) for t in commune_type], dtype=object)
    ward = kinds == "phường"
    city = np.isin(np.asarray(province_code, dtype=object), list(CITY_PROVINCES))
    out = np.full(kinds.shape[0], RURAL, dtype=np.int8)
    out[ward] = SUBURBAN
    out[ward & city] = URBAN
    return out


def commune_kind(value: object) -> str:
    """A commune type as "xã", "phường" or "đặc khu", whatever its case or Unicode form."""
    return unicodedata.normalize("NFC", str(value)).strip().lower()
