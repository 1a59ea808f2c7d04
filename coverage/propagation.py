"""Path loss, antenna pattern and received level: the physics of the coverage model (DESIGN §8).

The model and its assumptions, in one place:

- **Path loss** is the median loss of the empirical Okumura–Hata model (Hata 1980) from 150 to
  1500 MHz and of COST-231 Hata (COST Action 231 final report, 1999) above 1500 MHz. COST-231 is
  fitted to 1500–2000 MHz; it is *extended* here to 2100 MHz (UMTS/LTE band 1) and 2600 MHz
  (LTE band 7, NR n41) as most planning tools do, and nothing above 2700 MHz is accepted.
- **Environment classes**: ``urban`` is Hata's urban formula with the small/medium-city mobile
  antenna correction (COST-231: Cm = 0 dB; no metropolitan +3 dB, which no Vietnamese ward
  outside the old city cores would justify); ``suburban`` subtracts Hata's suburban correction
  2·(log10(f/28))² + 5.4; ``rural`` subtracts Hata's open-area correction with its constant
  raised by 5 dB, ``4.78·(log10 f)² − 18.33·log10 f + 35.94``, i.e. Okumura's *quasi-open* area
  (open country with scattered trees and houses, about 5 dB worse than truly open land). The same
  corrections are applied to COST-231, which defines none of its own for rural land.
- **No terrain**: there is no open DEM for the whole country at a resolution that would help
  (SRTM/Copernicus are open but not bundled), so hills, valleys and ridges are ignored. In the
  northern mountains this is the largest error of the model: a hamlet behind a ridge is predicted
  as well served as one in line of sight. Measured readings override the prediction (engine).
- **Distance**: Hata is fitted from 1 to 20 km. Below 1 km the same log-distance law is
  extrapolated down to ``MIN_DISTANCE_M`` (closer points are treated as that far), and the loss
  is never taken below free-space loss, so a hamlet next to a mast is strongly covered instead of
  receiving an absurd level. Beyond 20 km the law is extrapolated up to the configured maximum
  reach (35 km, GSM's timing-advance limit, by default).
- **Horizontal pattern**: the 3GPP parabolic pattern (TR 36.814 Table A.2.1.1-2),
  ``A(θ) = −min(12·(θ/θ3dB)², Am)`` with Am = 25 dB front-to-back; omnidirectional antennas have
  no pattern. No vertical pattern, no downtilt.
- **Received level**: the *reference-signal* level, comparable to the RSRP thresholds. LTE and NR
  sectors' total power is spread over ``12·N_RB`` resource elements (LTE 10 MHz, 50 RB; NR
  100 MHz at 30 kHz spacing, 273 RB) since the sites table has no bandwidth column. For GSM and
  UMTS the documented equivalent is the power spectral density over one 15 kHz subcarrier of the
  carrier (200 kHz and 3.84 MHz): a GSM RxLev of −89 dBm then compares with −100 dBm RSRP.

Example
-------
>>> import numpy as np
>>> round(float(path_loss_db(np.array([869.0]), np.array([30.0]), np.array([2.0]),
...                          np.array([0], dtype=np.int8), mobile_height_m=1.0)[0]), 2)
137.88
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from lomsong.coverage.model import RADIOS, RURAL, SUBURBAN, FloatArray
from lomsong.errors import ValidationError

# Frequencies the Hata models are used for here (MHz).
MIN_FREQ_MHZ = 150.0
MAX_FREQ_MHZ = 2700.0
# Above this, COST-231 Hata replaces Okumura–Hata.
COST231_FROM_MHZ = 1500.0
# Closer than this a hamlet is treated as this far from the mast (m).
MIN_DISTANCE_M = 50.0
# Antenna heights outside Hata's 30–200 m are extrapolated, but not below this (m).
MIN_BASE_HEIGHT_M = 10.0
MAX_BASE_HEIGHT_M = 200.0
# 3GPP TR 36.814: front-to-back ratio of the horizontal pattern (dB).
FRONT_TO_BACK_DB = 25.0

# Resource elements (15 kHz-equivalent subcarriers) that share a sector's total power, by radio
# code (index into RADIOS): GSM 200 kHz / 15 kHz; UMTS 3.84 MHz / 15 kHz; LTE 10 MHz = 50 RB × 12;
# NR 100 MHz at 30 kHz = 273 RB × 12.
RESOURCE_ELEMENTS = np.array([200.0 / 15.0, 3840.0 / 15.0, 50.0 * 12.0, 273.0 * 12.0])
RE_OFFSET_DB = 10.0 * np.log10(RESOURCE_ELEMENTS)


def check_frequency(freq_mhz: FloatArray, field: str = "band_mhz") -> None:
    """Raise ``ValidationError`` naming the first frequency outside the supported range."""
    bad = ~((freq_mhz >= MIN_FREQ_MHZ) & (freq_mhz <= MAX_FREQ_MHZ))
    if bad.any():
        value = float(np.ravel(freq_mhz)[np.argmax(bad)])
        raise ValidationError(
            field,
            value,
            f"must be between {MIN_FREQ_MHZ:g} and {MAX_FREQ_MHZ:g} MHz "
            "(Okumura–Hata and COST-231 Hata, extended to 2600 MHz)",
        )


def radio_codes(radio: npt.NDArray[np.object_]) -> npt.NDArray[np.int8]:
    """Index into ``RADIOS`` of each radio name; ``ValidationError`` on an unknown one."""
    codes = np.full(radio.shape[0], -1, dtype=np.int8)
    for i, name in enumerate(RADIOS):
        codes[radio == name] = i
    if (codes < 0).any():
        value = radio[np.argmax(codes < 0)]
        raise ValidationError("radio", value, f"expected one of {{{', '.join(RADIOS)}}}")
    return codes


def mobile_correction_db(
    freq_mhz: FloatArray, mobile_height_m: float, *, large_city: bool = False
) -> FloatArray:
    """Hata's mobile antenna height correction a(hm) in dB.

    The small/medium-city form ``(1.1·log f − 0.7)·hm − (1.56·log f − 0.8)`` is the one the
    engine uses everywhere; ``large_city`` gives Hata's large-city form (3.2·(log 11.75·hm)² −
    4.97 above 300 MHz, 8.29·(log 1.54·hm)² − 1.1 below), kept for the published checks.
    """
    lf = np.log10(freq_mhz)
    if not large_city:
        return np.asarray((1.1 * lf - 0.7) * mobile_height_m - (1.56 * lf - 0.8))
    high = 3.2 * np.log10(11.75 * mobile_height_m) ** 2 - 4.97
    low = 8.29 * np.log10(1.54 * mobile_height_m) ** 2 - 1.1
    return np.asarray(np.where(freq_mhz >= 300.0, high, low), dtype=np.float64)


def environment_correction_db(
    freq_mhz: FloatArray, environment: npt.NDArray[np.int8]
) -> FloatArray:
    """How much less loss than the urban formula each environment class has (dB, ≥ 0)."""
    lf = np.log10(freq_mhz)
    suburban = 2.0 * np.log10(freq_mhz / 28.0) ** 2 + 5.4
    quasi_open = 4.78 * lf**2 - 18.33 * lf + 35.94
    out = np.zeros(np.broadcast(freq_mhz, environment).shape)
    out = np.where(environment == SUBURBAN, suburban, out)
    out = np.where(environment == RURAL, quasi_open, out)
    return out


def hata_1km_db(
    freq_mhz: FloatArray,
    base_height_m: FloatArray,
    environment: npt.NDArray[np.int8],
    *,
    mobile_height_m: float = 1.5,
    large_city: bool = False,
) -> tuple[FloatArray, FloatArray]:
    """Hata's loss at 1 km and its slope in dB per decade of distance: ``L(d) = L1 + B·log10 d``.

    Frequencies are validated (150–2700 MHz); base heights are clipped to 10–200 m.
    """
    f = np.asarray(freq_mhz, dtype=np.float64)
    check_frequency(np.atleast_1d(f))
    hb = np.clip(np.asarray(base_height_m, dtype=np.float64), MIN_BASE_HEIGHT_M, MAX_BASE_HEIGHT_M)
    lf = np.log10(f)
    lhb = np.log10(hb)
    # Okumura–Hata (urban) and COST-231 Hata (medium city, Cm = 0) at d = 1 km
    hata = 69.55 + 26.16 * lf
    cost = 46.3 + 33.9 * lf
    intercept = np.where(f > COST231_FROM_MHZ, cost, hata) - 13.82 * lhb
    intercept = intercept - mobile_correction_db(f, mobile_height_m, large_city=large_city)
    intercept = intercept - environment_correction_db(f, environment)
    slope = 44.9 - 6.55 * lhb
    return np.asarray(intercept), np.asarray(np.broadcast_to(slope, intercept.shape))


def free_space_1km_db(freq_mhz: FloatArray) -> FloatArray:
    """Free-space loss at 1 km (dB); it grows by 20 dB per decade of distance."""
    return np.asarray(32.45 + 20.0 * np.log10(freq_mhz))


def path_loss_db(
    freq_mhz: FloatArray,
    base_height_m: FloatArray,
    distance_km: FloatArray,
    environment: npt.NDArray[np.int8],
    *,
    mobile_height_m: float = 1.5,
    large_city: bool = False,
    floor: bool = True,
) -> FloatArray:
    """Median path loss in dB, broadcasting over its array arguments.

    Okumura–Hata up to 1500 MHz, COST-231 Hata above, with the environment class correction.
    With ``floor`` (the engine's setting) distances are clamped to ``MIN_DISTANCE_M`` and the
    loss is never below free-space loss; ``floor=False`` gives the bare formula for checks.

    Examples
    --------
    The ns-3 reference case (869 MHz, hb 30 m, hm 1 m, 2 km, urban small city):

    >>> import numpy as np
    >>> round(float(path_loss_db(np.array([869.0]), np.array([30.0]), np.array([2.0]),
    ...                          np.array([0], dtype=np.int8), mobile_height_m=1.0)[0]), 2)
    137.88
    """
    env = np.asarray(environment, dtype=np.int8)
    l1, slope = hata_1km_db(
        freq_mhz, base_height_m, env, mobile_height_m=mobile_height_m, large_city=large_city
    )
    d = np.asarray(distance_km, dtype=np.float64)
    if not floor:
        return np.asarray(l1 + slope * np.log10(d))
    ld = np.log10(np.maximum(d, MIN_DISTANCE_M / 1000.0))
    return np.asarray(np.maximum(l1 + slope * ld, free_space_1km_db(freq_mhz) + 20.0 * ld))


def pattern_db(
    bearing_deg: FloatArray, azimuth_deg: FloatArray, beamwidth_deg: FloatArray
) -> FloatArray:
    """Horizontal pattern attenuation (dB, ≥ 0) of a sector toward a bearing.

    ``min(12·(θ/θ3dB)², 25)`` with θ the angle off boresight; 0 where ``azimuth_deg`` is NaN
    (omnidirectional).

    Examples
    --------
    >>> import numpy as np
    >>> pattern_db(np.array([0.0, 32.5, 180.0]), np.array([0.0, 0.0, 0.0]),
    ...            np.array([65.0, 65.0, 65.0])).tolist()
    [0.0, 3.0, 25.0]
    """
    off = np.abs((bearing_deg - azimuth_deg + 180.0) % 360.0 - 180.0)
    att = np.minimum(12.0 * (off / beamwidth_deg) ** 2, FRONT_TO_BACK_DB)
    return np.asarray(np.where(np.isnan(azimuth_deg), 0.0, att))


def bearing_deg(dx: FloatArray, dy: FloatArray) -> FloatArray:
    """Bearing in degrees clockwise from grid north of the vector (dx east, dy north)."""
    return np.asarray(np.degrees(np.arctan2(dx, dy)) % 360.0)


def reference_signal_dbm(power_dbm: FloatArray, radio_code: npt.NDArray[np.int8]) -> FloatArray:
    """Power per resource element (LTE/NR) or per 15 kHz (GSM/UMTS) of a sector's total power."""
    return np.asarray(power_dbm - RE_OFFSET_DB[radio_code])


def received_dbm(
    eirp_re_dbm: FloatArray,
    freq_mhz: FloatArray,
    base_height_m: FloatArray,
    distance_km: FloatArray,
    environment: npt.NDArray[np.int8],
    pattern_loss_db: FloatArray,
    *,
    mobile_height_m: float = 1.5,
) -> FloatArray:
    """Received reference-signal level (dBm): EIRP per resource element − pattern − path loss."""
    loss = path_loss_db(
        freq_mhz, base_height_m, distance_km, environment, mobile_height_m=mobile_height_m
    )
    return np.asarray(eirp_re_dbm - pattern_loss_db - loss)
