"""Okumura–Hata, COST-231 Hata, the sector pattern and the received level, against published
reference values and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lomsong.coverage import propagation as prop
from lomsong.coverage.model import RADIOS, RURAL, SUBURBAN, URBAN
from lomsong.errors import ValidationError


def loss(
    freq: float, env: int, d_km: float, *, hb: float = 30.0, hm: float = 1.5, **kw: bool
) -> float:
    return float(
        prop.path_loss_db(
            np.array([freq]),
            np.array([hb]),
            np.array([d_km]),
            np.array([env], dtype=np.int8),
            mobile_height_m=hm,
            **kw,
        )[0]
    )


# Reference losses published with ns-3's Okumura–Hata model, src/propagation/test/
# okumura-hata-test-suite.cc (nsnam/ns-3-dev): f, base height 30 m, mobile height 1 m, 2 km.
# They follow Hata (IEEE Trans. Veh. Tech. 29(3), 1980) and the COST 231 final report (1999,
# §4.4.1); each was also checked by hand from the formulas in the propagation module docstring.
@pytest.mark.parametrize(
    ("freq", "env", "large_city", "expected"),
    [
        (869.0, URBAN, False, 137.88),  # "original OH Urban small city"
        (869.0, URBAN, True, 137.93),  # "original OH Urban Large city"
        (869.0, SUBURBAN, False, 128.03),  # "original OH SubUrban"
        (2114.0, URBAN, False, 150.64),  # "COST231 OH Urban small city and suburban"
    ],
)
def test_hata_matches_published_reference_losses(
    freq: float, env: int, large_city: bool, expected: float
) -> None:
    got = loss(freq, env, 2.0, hm=1.0, large_city=large_city, floor=False)
    assert got == pytest.approx(expected, abs=0.006)


def test_hata_urban_by_hand_at_900_mhz() -> None:
    # 69.55 + 26.16·log 900 − 13.82·log 30 − a(1.5) + (44.9 − 6.55·log 30)·log 10, with
    # with log 900 = 2.954243 and log 30 = 1.477121: 26.16·2.954243 = 77.28298,
    # 13.82·1.477121 = 20.41382, a(1.5) = (1.1·2.954243 − 0.7)·1.5 − (1.56·2.954243 − 0.8) =
    # 0.01588, 44.9 − 6.55·1.477121 = 35.22486 (hand computed)
    expected = 69.55 + 77.28298 - 20.41382 - 0.01588 + 35.22486
    assert loss(900.0, URBAN, 10.0, floor=False) == pytest.approx(expected, abs=0.01)


def test_rural_is_quasi_open_correction() -> None:
    # quasi-open: 4.78·(log f)² − 18.33·log f + 35.94 below the urban loss; at 900 MHz
    # 4.78·8.72755 − 18.33·2.954243 + 35.94 = 23.506 dB (hand computed), 5 dB less than open land
    assert loss(900.0, URBAN, 5.0) - loss(900.0, RURAL, 5.0) == pytest.approx(23.506, abs=0.001)
    suburban = 2 * math.log10(900 / 28) ** 2 + 5.4
    assert loss(900.0, URBAN, 5.0) - loss(900.0, SUBURBAN, 5.0) == pytest.approx(suburban)


def test_cost231_above_1500_mhz_and_hata_below() -> None:
    lf = math.log10(1800.0)
    a = (1.1 * lf - 0.7) * 1.5 - (1.56 * lf - 0.8)
    cost = 46.3 + 33.9 * lf - 13.82 * math.log10(30.0) - a  # at 1 km, Cm = 0
    assert loss(1800.0, URBAN, 1.0, floor=False) == pytest.approx(cost, abs=1e-9)
    lf = math.log10(1500.0)
    a = (1.1 * lf - 0.7) * 1.5 - (1.56 * lf - 0.8)
    hata = 69.55 + 26.16 * lf - 13.82 * math.log10(30.0) - a
    assert loss(1500.0, URBAN, 1.0, floor=False) == pytest.approx(hata, abs=1e-9)


@pytest.mark.parametrize("freq", [900.0, 1800.0, 2100.0, 2600.0])
@pytest.mark.parametrize("env", [URBAN, SUBURBAN, RURAL])
def test_loss_increases_with_distance(freq: float, env: int) -> None:
    d = np.geomspace(0.05, 35.0, 400)
    values = prop.path_loss_db(
        np.full(d.size, freq), np.full(d.size, 35.0), d, np.full(d.size, env, dtype=np.int8)
    )
    assert (np.diff(values) > 0).all()


def test_close_to_the_mast_distance_is_clamped_and_loss_floored_at_free_space() -> None:
    assert loss(900.0, RURAL, 0.001) == loss(900.0, RURAL, prop.MIN_DISTANCE_M / 1000)
    # rural Hata extrapolated to 60 m is below free space: the floor holds
    free_space = 32.45 + 20 * math.log10(900.0) + 20 * math.log10(0.06)
    assert loss(900.0, RURAL, 0.06, hb=45.0, floor=False) < free_space
    assert loss(900.0, RURAL, 0.06, hb=45.0) == pytest.approx(free_space)
    # at 5 km Hata is well above free space and untouched
    assert loss(900.0, RURAL, 5.0) == loss(900.0, RURAL, 5.0, floor=False)


def test_pattern_by_hand() -> None:
    bearing = np.array([0.0, 32.5, -32.5, 65.0, 90.0, 180.0, 10.0])
    azimuth = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 350.0])
    beamwidth = np.full(bearing.size, 65.0)
    got = prop.pattern_db(bearing, azimuth, beamwidth)
    # boresight 0 dB, half beamwidth −3 dB, full beamwidth 12 dB, then the 25 dB cap; 350°→10°
    # is 20° off boresight: 12·(20/65)² = 1.136 dB
    assert got.tolist() == pytest.approx([0.0, 3.0, 3.0, 12.0, 23.006, 25.0, 1.13609], abs=1e-3)
    assert prop.pattern_db(np.array([123.0]), np.array([np.nan]), np.array([65.0]))[0] == 0.0


def test_reference_signal_per_resource_element() -> None:
    codes = np.arange(len(RADIOS), dtype=np.int8)
    got = prop.reference_signal_dbm(np.full(len(RADIOS), 46.0), codes)
    # gsm 200/15 kHz, umts 3.84 MHz/15 kHz, lte 50 RB × 12, nr 273 RB × 12
    assert got.tolist() == pytest.approx(
        [46 - 11.249, 46 - 24.082, 46 - 27.782, 46 - 35.153], abs=1e-3
    )


def test_received_level_is_eirp_minus_pattern_minus_loss() -> None:
    got = prop.received_dbm(
        np.array([35.0]), np.array([900.0]), np.array([30.0]), np.array([3.0]),
        np.array([RURAL], dtype=np.int8), np.array([3.0]),
    )  # fmt: skip
    assert got[0] == pytest.approx(35.0 - 3.0 - loss(900.0, RURAL, 3.0))


@pytest.mark.parametrize("freq", [100.0, 3500.0, float("nan")])
def test_frequency_outside_the_models_is_refused(freq: float) -> None:
    with pytest.raises(ValidationError, match="band_mhz") as caught:
        loss(freq, RURAL, 1.0)
    assert "150" in str(caught.value) and "2700" in str(caught.value)


def test_unknown_radio_is_refused() -> None:
    with pytest.raises(ValidationError, match="radio.*'wimax'"):
        prop.radio_codes(np.array(["lte", "wimax"], dtype=object))
