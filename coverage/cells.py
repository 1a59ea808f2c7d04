"""Sites and field readings: operator site lists, OpenCelliD exports, signal measurements.

A site file has one row per sector (cell); OpenCelliD has one row per cell it has heard, with
longitude before latitude, no band and no power, and every country's networks (only MCC 452,
Vietnam, is kept: the others are skipped, counted but not listed). Field readings come from
surveys (CSV) or the API.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lomsong.coverage.fields import (
    RADIO_NAMES,
    SKIP,
    STATUS_NAMES,
    Columns,
    ObjArray,
    Options,
    RowChecks,
    lon_lat,
    operator_names,
    operator_of_mnc,
    reject_duplicates,
)
from lomsong.coverage.locate import Geography, place_rows
from lomsong.coverage.model import RADIOS, Operator
from lomsong.errors import GeodataError, ValidationError

#: OpenCelliD rows carry no band: assume the usual Vietnamese one for the radio
DEFAULT_BAND_MHZ = {"gsm": 900.0, "umts": 2100.0, "lte": 1800.0, "nr": 2600.0}
RSRP_RANGE_DBM = (-160.0, -20.0)

SITE_ALIASES: dict[str, tuple[str, ...]] = {
    "site": ("site_id", "site_name", "ma_tram", "tram", "ten_tram", "bts", "enodeb", "nodeb"),
    "cell": ("cell_id", "sector", "sector_id", "ma_cell", "cid", "eci", "cell_name"),
    "operator": ("nha_mang", "mno", "carrier", "network", "doanh_nghiep"),
    "radio": ("rat", "technology", "tech", "cong_nghe"),
    "band": ("band_mhz", "frequency", "frequency_mhz", "freq", "freq_mhz", "bang_tan", "tan_so"),
    "height": (
        "height_m",
        "antenna_height",
        "antenna_height_m",
        "do_cao",
        "do_cao_anten",
        "chieu_cao_anten",
        "chieu_cao",
    ),
    "azimuth": ("azimuth_deg", "az", "huong", "goc_phuong_vi", "phuong_vi", "huong_anten"),
    "beamwidth": ("beamwidth_deg", "bw", "horizontal_beamwidth", "hbw", "do_rong_bup_song"),
    "power": ("power_dbm", "tx_power", "tx_power_dbm", "cong_suat", "cong_suat_phat"),
    "status": ("trang_thai", "state"),
    "range": ("range_m", "radius", "ban_kinh"),
}
OPENCELLID_ALIASES: dict[str, tuple[str, ...]] = dict.fromkeys(
    ("radio", "mcc", "net", "area", "cell", "range"), ()
)
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("reading_id", "measurement_id"),
    "operator": SITE_ALIASES["operator"],
    "mcc": (),
    "mnc": ("net",),
    "radio": SITE_ALIASES["radio"],
    "rsrp_dbm": ("rsrp", "signal_dbm", "muc_thu", "cuong_do_tin_hieu"),
    "measured_at": ("time", "timestamp", "datetime", "date_time", "thoi_gian", "measured"),
    "source": ("nguon", "device", "thiet_bi"),
}


def operator_column(
    checks: RowChecks, options: Options, operators: tuple[Operator, ...]
) -> ObjArray:
    keys = [op.key for op in operators]
    if checks.has("operator"):
        return checks.choice("operator", operator_names(operators), keys, required=True)
    if options.operator is not None:
        if options.operator not in keys:
            raise ValidationError("--operator", options.operator, f"expected one of {keys}")
        return np.full(checks.n, options.operator, dtype=object)
    if checks.has("mcc") and checks.has("mnc"):
        return operator_from_mnc(checks, "mcc", "mnc", operators)
    raise GeodataError(
        f"no operator column ({', '.join(('operator', *SITE_ALIASES['operator']))}); "
        f"add one or name the operator with --operator"
    )


def operator_from_mnc(
    checks: RowChecks, mcc_name: str, mnc_name: str, operators: tuple[Operator, ...]
) -> ObjArray:
    """Rows of MCC 452 get their operator from the MNC; other MCCs are skipped."""
    mcc = checks.texts(mcc_name)
    mnc = checks.texts(mnc_name)
    foreign = (mcc != "452") & (mcc != "")
    checks.reject(foreign, SKIP)
    table = operator_of_mnc(operators)
    pairs = {
        (c, m): table.get((c, m.zfill(2))) if m.isdigit() else None
        for c, m in set(zip(mcc, mnc, strict=True))
    }
    out = np.array([pairs[(c, m)] for c, m in zip(mcc, mnc, strict=True)], dtype=object)
    label = checks.label(mnc_name)
    checks.reject(
        out == None,  # noqa: E711 - element-wise
        lambda i: f"{label}: no known operator has this MNC in MCC 452 (got {mnc[i]!r})",
    )
    return out


def sites(
    checks: RowChecks,
    points: ObjArray,
    shapes: ObjArray,
    options: Options,
    geo: Geography,
    operators: tuple[Operator, ...],
    notes: list[str],
) -> tuple[ObjArray, Columns, dict[str, int]]:
    ocid = "mcc" in checks.keys and "net" in checks.keys and "area" in checks.keys
    if ocid:
        operator = operator_from_mnc(checks, "mcc", "net", operators)
        radio = checks.choice(
            "radio", {"gsm": "gsm", "umts": "umts", "lte": "lte", "nr": "nr"}, RADIOS, required=True
        )
        area = checks.texts("area")
        cell = checks.number("cell", required=True, low=0)
        range_m = checks.number("range", low=0, unit=" m")
        band = np.array([DEFAULT_BAND_MHZ.get(r or "", np.nan) for r in radio], dtype=np.float64)
        height = azimuth = beamwidth = power = np.full(checks.n, np.nan)
        status = np.full(checks.n, "active", dtype=object)
        radio_text = [str(r).lower() for r in checks.texts("radio")]
        cell_id = np.array(
            [
                f"{r}-{a}-{int(c)}" if np.isfinite(c) else ""
                for r, a, c in zip(radio_text, area, cell, strict=True)
            ],
            dtype=object,
        )
        # an LTE cell identity is the eNodeB's id times 256 plus the sector: group sectors by it
        site_id = np.array(
            [
                f"enb-{int(c) >> 8}" if r == "lte" and np.isfinite(c) else cid
                for r, c, cid in zip(radio, cell, cell_id, strict=True)
            ],
            dtype=object,
        )
        source = "opencellid"
        notes.append(
            "OpenCelliD has no band: assumed "
            + ", ".join(f"{k} {v:g} MHz" for k, v in DEFAULT_BAND_MHZ.items())
        )
    else:
        operator = operator_column(checks, options, operators)
        site_id = checks.text("site", required=True, max_length=64)
        radio = checks.choice("radio", RADIO_NAMES, RADIOS, required=True)
        band = checks.number("band", low=0, low_open=True, unit=" MHz")
        missing_band = ~np.isfinite(band) & checks.ok
        if missing_band.any():
            band[missing_band] = [DEFAULT_BAND_MHZ[r] for r in radio[missing_band]]
            notes.append(f"{int(missing_band.sum())} rows without a band: assumed from the radio")
        height = checks.number("height", low=0, low_open=True, high=1000, unit=" m")
        azimuth = checks.number("azimuth", low=0, high=360, high_open=True, unit="°")
        beamwidth = checks.number("beamwidth", low=0, low_open=True, high=360, unit="°")
        power = checks.number("power", low=0, high=80, unit=" dBm")
        range_m = checks.number("range", low=0, unit=" m")
        status = checks.choice(
            "status", STATUS_NAMES, ("active", "down", "planned"), required=False
        )
        status = np.where(status == None, "active", status)  # noqa: E711
        if checks.has("cell"):
            cell_id = checks.text("cell", required=True, max_length=64)
        else:
            # one row per sector without cell ids: number the sectors of each site in file order
            cell_id = (
                pd.Series(site_id)
                .groupby(site_id)
                .cumcount()
                .add(1)
                .astype(str)
                .to_numpy(dtype=object)
            )
        source = "operator"
    codes = place_rows(checks, points, options, geo)
    ids = np.array(
        [
            f"{o}:{s}:{c}" if o and s and c else None
            for o, s, c in zip(operator, site_id, cell_id, strict=True)
        ],
        dtype=object,
    )
    reject_duplicates(checks, ids)
    lon, lat = lon_lat(points)
    columns: Columns = {
        "id": ids,
        "site_id": site_id,
        "cell_id": cell_id,
        "operator": operator,
        "radio": radio,
        "band_mhz": band,
        "lat": lat,
        "lon": lon,
        "province_code": np.array(
            [geo.known.get(c, ("", "", None))[2] for c in codes], dtype=object
        ),
        "commune_code": codes,
        "height_m": height,
        "azimuth_deg": azimuth,
        "beamwidth_deg": beamwidth,
        "power_dbm": power,
        "range_m": range_m,
        "status": status,
        "source": source,
        "synthetic": options.synthetic,
    }
    skipped = int(np.sum(checks.reasons == SKIP))
    return ids, columns, ({"mcc: not 452 (Vietnam)": skipped} if skipped else {})


def field_readings(
    checks: RowChecks,
    points: ObjArray,
    shapes: ObjArray,
    options: Options,
    geo: Geography,
    operators: tuple[Operator, ...],
    notes: list[str],
) -> tuple[ObjArray, Columns, dict[str, int]]:
    ids = checks.text("id", max_length=64)
    operator = operator_column(checks, options, operators)
    radio = checks.choice("radio", RADIO_NAMES, RADIOS, required=False)
    low, high = RSRP_RANGE_DBM
    rsrp = checks.number("rsrp_dbm", required=True, low=low, high=high, unit=" dBm")
    measured = checks.time("measured_at", required=True)
    source = checks.text("source", max_length=64)
    place_rows(checks, points, options, geo)
    reject_duplicates(checks, ids)
    lon, lat = lon_lat(points)
    default_source = (options.source or "import")[:64]
    columns: Columns = {
        "lat": lat,
        "lon": lon,
        "operator": operator,
        "radio": radio,
        "rsrp_dbm": rsrp,
        "measured_at": measured,
        "source": np.where(source == "", default_source, source).astype(object),
    }
    skipped = int(np.sum(checks.reasons == SKIP))
    return ids, columns, ({"mcc: not 452 (Vietnam)": skipped} if skipped else {})
