"""classify on hand-checked geometries: levels against the propagation formulas, measured
overrides, thresholds, the OpenCelliD range rule, the reach cap, and the fast path against a
brute-force evaluation of every pair."""

from __future__ import annotations

import numpy as np
import pytest

from lomsong.coverage import links
from lomsong.coverage import propagation as prop
from lomsong.coverage.engine import classify, status_codes
from lomsong.coverage.model import (
    COVERED,
    NONE,
    RADIOS,
    RURAL,
    SUBURBAN,
    URBAN,
    WEAK,
    CoverageSettings,
    Thresholds,
    empty_readings,
)
from lomsong.errors import ValidationError
from tests.coverage import scene

# The hand-checked levels are the formulas' medians: no shadowing margin.
SETTINGS = CoverageSettings(shadow_margin_db=0.0)
VIETTEL, VINAPHONE, MOBIFONE = 0, 1, 2
DAY = 86_400.0
NOW = 1_760_000_000.0


def predicted(
    d_m: float,
    *,
    env: int = RURAL,
    freq: float = 1800.0,
    hb: float = 30.0,
    power: float = 46.0,
    radio: str = "lte",
    gain: float = 17.0,
    pattern: float = 0.0,
) -> float:
    """The level by the propagation module's formulas, independently of the engine's path."""
    loss = prop.path_loss_db(
        np.array([freq]), np.array([hb]), np.array([d_m / 1000]), np.array([env], dtype=np.int8)
    )[0]
    return float(power - prop.RE_OFFSET_DB[RADIOS.index(radio)] + gain - pattern - loss)


def test_hamlet_in_front_of_a_sector_is_served_and_behind_it_is_not() -> None:
    hamlets = scene.hamlets([(0, 3000), (0, -3000), (3000, 0), (0, 6000)])
    sectors = scene.sectors([{"at": (0, 0), "azimuth_deg": 0.0}])
    result = classify(hamlets, sectors, empty_readings(), SETTINGS, now=NOW)
    front, back, side = (
        predicted(3000),
        predicted(3000, pattern=25.0),
        predicted(3000, pattern=23.006),
    )
    far = predicted(6000)
    assert front > -100 and back < -110 and side < -110 and -110 <= far < -100  # the geometry
    rsrp = result.rsrp_dbm[:, VIETTEL]
    assert rsrp[0] == pytest.approx(front, abs=1e-3)
    assert np.isnan(rsrp[1]) and np.isnan(rsrp[2])  # below none_dbm: not reached
    assert rsrp[3] == pytest.approx(far, abs=1e-3)
    assert result.status[:, VIETTEL].tolist() == [COVERED, NONE, NONE, WEAK]
    assert result.serving[:, VIETTEL].tolist() == [0, -1, -1, 0]
    assert result.overall.tolist() == [COVERED, NONE, NONE, WEAK]
    assert result.best_operator.tolist() == [VIETTEL, -1, -1, VIETTEL]
    assert (result.status[:, MOBIFONE] == NONE).all() and not result.measured.any()


def test_omni_site_serves_every_direction_alike() -> None:
    points = [(2000, 0), (0, 2000), (-2000, 0), (0, -2000), (1414.2136, 1414.2136)]
    hamlets = scene.hamlets(points)
    sectors = scene.sectors([{"at": (0, 0), "radio": "gsm", "band_mhz": 900.0, "power_dbm": 43.0}])
    result = classify(hamlets, sectors, empty_readings(), SETTINGS, now=NOW)
    expected = predicted(2000, freq=900.0, power=43.0, radio="gsm", gain=11.0)
    assert result.rsrp_dbm[:, VIETTEL] == pytest.approx([expected] * 5, abs=1e-3)


def test_environment_class_of_the_hamlet_sets_the_loss() -> None:
    hamlets = scene.hamlets([(0, 1000)] * 3, environment=[URBAN, SUBURBAN, RURAL])
    sectors = scene.sectors([{"at": (0, 0)}])
    result = classify(hamlets, sectors, empty_readings(), SETTINGS, now=NOW)
    expected = [predicted(1000, env=e, gain=11.0) for e in (URBAN, SUBURBAN, RURAL)]
    assert result.rsrp_dbm[:, VIETTEL] == pytest.approx(expected, abs=1e-3)
    assert result.status[:, VIETTEL].tolist() == [WEAK, COVERED, COVERED]


def test_hamlet_at_the_mast_and_within_500_m_is_covered() -> None:
    points = [(0, 0), (0, -500), (433, 250), (-433, 250)]
    hamlets = scene.hamlets(points, environment=SUBURBAN)
    three = [{"at": (0, 0), "azimuth_deg": az, "band_mhz": 2600.0} for az in (0.0, 120.0, 240.0)]
    result = classify(hamlets, scene.sectors(three), empty_readings(), SETTINGS, now=NOW)
    assert (result.status[:, VIETTEL] == COVERED).all()


def test_best_sector_and_operator_win() -> None:
    hamlets = scene.hamlets([(0, 1000)])
    sectors = scene.sectors(
        [
            {"at": (0, 0), "azimuth_deg": 180.0},  # back toward the hamlet
            {"at": (0, 0), "azimuth_deg": 0.0},  # facing it: the best
            {"at": (0, 0), "operator": "mobifone", "power_dbm": 40.0},
            {"at": (0, 8000), "operator": "mobifone", "azimuth_deg": 180.0},
        ]
    )
    result = classify(hamlets, sectors, empty_readings(), SETTINGS, now=NOW)
    assert result.serving[0, VIETTEL] == 1
    assert result.rsrp_dbm[0, VIETTEL] == pytest.approx(predicted(1000), abs=1e-3)
    mobifone = max(predicted(1000, power=40.0, gain=11.0), predicted(7000))
    assert result.rsrp_dbm[0, MOBIFONE] == pytest.approx(mobifone, abs=1e-3)
    assert result.serving[0, MOBIFONE] == 2
    assert result.best_operator[0] == VIETTEL


def test_readings_override_the_prediction_with_their_median() -> None:
    hamlets = scene.hamlets([(0, 3000), (20_000, 0)])
    sectors = scene.sectors([{"at": (0, 0)}])
    readings = scene.readings(
        [
            (100, 3000, "viettel", -95.0, NOW - DAY),
            (0, 3200, "viettel", -105.0, NOW - 30 * DAY),
            (-300, 3000, "viettel", -120.0, NOW - 364 * DAY),
            (0, 3600, "viettel", -50.0, NOW),  # 600 m away
            (0, 3000, "viettel", -50.0, NOW - 366 * DAY),  # too old
            (0, 3000, "viettel", -50.0, NOW + DAY),  # after now
            (0, 3050, "mobifone", -104.0, NOW - DAY),  # no mobifone sector at all
            (20_000, 100, "vinaphone", -90.0, NOW - DAY),
            (20_000, 0, "vinaphone", -80.0, NOW - DAY),
        ]
    )
    result = classify(hamlets, sectors, readings, SETTINGS, now=NOW)
    assert result.rsrp_dbm[0, VIETTEL] == -105.0 and result.status[0, VIETTEL] == WEAK
    assert result.rsrp_dbm[0, MOBIFONE] == -104.0 and result.status[0, MOBIFONE] == WEAK
    assert result.rsrp_dbm[1, VINAPHONE] == -85.0  # median of two
    assert result.measured[:, :3].tolist() == [[True, False, True], [False, True, False]]
    assert result.serving[0, VIETTEL] == 0  # the predicted server is kept
    without = classify(hamlets, sectors, empty_readings(), SETTINGS, now=NOW)
    assert without.status[0, VIETTEL] == COVERED


def test_thresholds_at_their_exact_boundaries() -> None:
    values = [-99.999, -100.0, -100.001, -109.999, -110.0, -110.001]
    points = [(20_000.0 * i, 0.0) for i in range(len(values))]
    hamlets = scene.hamlets(points)
    readings = scene.readings(
        [(x, y, "viettel", v, NOW) for (x, y), v in zip(points, values, strict=True)]
    )
    result = classify(hamlets, scene.sectors([]), readings, SETTINGS, now=NOW)
    assert result.status[:, VIETTEL].tolist() == [COVERED, COVERED, WEAK, WEAK, WEAK, NONE]
    assert status_codes(np.array(values + [np.nan]), Thresholds()).tolist() == [
        COVERED, COVERED, WEAK, WEAK, WEAK, NONE, NONE,
    ]  # fmt: skip
    tight = Thresholds(covered_dbm=-90.0, none_dbm=-95.0)
    assert status_codes(np.array([-90.0, -92.0, -95.0, -95.5]), tight).tolist() == [
        COVERED, WEAK, WEAK, NONE,
    ]  # fmt: skip


@pytest.mark.parametrize("env", [URBAN, SUBURBAN, RURAL])
def test_opencellid_range_is_the_radius_at_none_dbm(env: int) -> None:
    hamlets = scene.hamlets([(0, 4990), (0, 5010), (0, 5000)], environment=env)
    sectors = scene.sectors([{"at": (0, 0), "power_dbm": np.nan, "range_m": 5000.0}])
    result = classify(hamlets, sectors, empty_readings(), SETTINGS, now=NOW)
    assert result.status[:, VIETTEL].tolist()[:2] == [WEAK, NONE]
    budget = links.link_budget(sectors, SETTINGS)
    tree = links.HamletTree(*links.project(hamlets.lon, hamlets.lat))
    at_range = links.levels(
        budget, hamlets.environment, tree.x, tree.y, np.array([2]), np.array([0])
    )
    assert at_range[0] == pytest.approx(SETTINGS.thresholds.none_dbm, abs=1e-9)
    assert budget.reach_m[0] == pytest.approx(5000.0)


def test_sector_without_power_or_range_uses_the_default_power() -> None:
    hamlets = scene.hamlets([(0, 2500)])
    unknown = scene.sectors([{"at": (0, 0), "power_dbm": np.nan}])
    known = scene.sectors([{"at": (0, 0), "power_dbm": SETTINGS.default_power_dbm}])
    a = classify(hamlets, unknown, empty_readings(), SETTINGS, now=NOW).rsrp_dbm
    b = classify(hamlets, known, empty_readings(), SETTINGS, now=NOW).rsrp_dbm
    assert (
        a[0, VIETTEL]
        == b[0, VIETTEL]
        == pytest.approx(predicted(2500, power=43.0, gain=11.0), abs=1e-3)
    )


def test_no_sector_serves_beyond_the_maximum_reach() -> None:
    hamlets = scene.hamlets([(0, 34_900), (0, 35_100), (0, 29_900), (0, 30_100)])
    strong = [{"at": (0, 0), "band_mhz": 900.0, "height_m": 100.0, "power_dbm": 60.0}]
    default = classify(hamlets, scene.sectors(strong), empty_readings(), SETTINGS, now=NOW)
    assert (default.status[:, VIETTEL] != NONE).tolist() == [True, False, True, True]
    assert predicted(35_100, freq=900.0, hb=100.0, power=60.0, gain=11.0) > -110  # not the loss
    short = CoverageSettings(max_reach_m=30_000.0, shadow_margin_db=0.0)
    capped = classify(hamlets, scene.sectors(strong), empty_readings(), short, now=NOW)
    assert (capped.status[:, VIETTEL] != NONE).tolist() == [False, False, True, False]


def test_nothing_at_all() -> None:
    result = classify(
        scene.hamlets([(0, 0)]), scene.sectors([]), empty_readings(), SETTINGS, now=NOW
    )
    assert np.isnan(result.rsrp_dbm).all() and (result.status == NONE).all()
    assert result.overall.tolist() == [NONE] and result.best_operator.tolist() == [-1]
    empty = classify(
        scene.hamlets([]), scene.sectors([{"at": (0, 0)}]), empty_readings(), SETTINGS, now=NOW
    )
    assert empty.rsrp_dbm.shape == (0, 5) and len(empty) == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"operator": "beeline"}, "sectors.operator"),
        ({"radio": "wimax"}, "radio"),
        ({"band_mhz": 3500.0}, "band_mhz"),
        ({"height_m": -5.0}, "sectors.height_m"),
        ({"azimuth_deg": 10.0, "beamwidth_deg": 0.0}, "sectors.beamwidth_deg"),
    ],
)
def test_bad_sector_is_refused_naming_the_field(change: dict[str, object], field: str) -> None:
    sectors = scene.sectors([{"at": (0, 0)} | change])
    with pytest.raises(ValidationError) as caught:
        classify(scene.hamlets([(0, 10)]), sectors, empty_readings(), SETTINGS, now=NOW)
    assert caught.value.field == field


def test_bad_reading_and_hamlet_are_refused() -> None:
    hamlets = scene.hamlets([(0, 0)])
    bad = scene.readings([(0, 0, "sfone", -90.0, NOW)])
    with pytest.raises(ValidationError, match="readings.operator.*sfone"):
        classify(hamlets, scene.sectors([]), bad, SETTINGS, now=NOW)
    hamlets.lon[0] = np.nan
    with pytest.raises(ValidationError, match="hamlets.lon/lat"):
        classify(hamlets, scene.sectors([]), empty_readings(), SETTINGS, now=NOW)


@pytest.mark.parametrize("listing", ["mast by mast", "shuffled"])
def test_fast_path_equals_brute_force_over_every_pair(listing: str) -> None:
    # a mast's sectors listed together let the engine take its locations from the listing;
    # shuffled, they must be found by sorting, with the same result
    rng = np.random.default_rng(7)
    n_h, n_sites = 400, 40
    points = rng.uniform(-25_000, 25_000, (n_h, 2))
    hamlets = scene.hamlets(
        [tuple(p) for p in points], environment=rng.integers(0, 3, n_h).tolist()
    )
    rows = []
    for site in rng.uniform(-25_000, 25_000, (n_sites, 2)):
        kind = rng.integers(0, 4)
        operator = ["viettel", "vinaphone", "mobifone"][rng.integers(0, 3)]
        layer = {
            "band_mhz": float(rng.choice([900, 1800, 2100, 2600])),
            "height_m": float(rng.uniform(15, 60)),
        }
        if kind == 0:  # omni with an OpenCelliD range and no power
            rows.append(
                {
                    "at": tuple(site),
                    "operator": operator,
                    "power_dbm": np.nan,
                    "range_m": float(rng.uniform(500, 9000)),
                }
                | layer
            )
        elif kind == 1:  # two operators sharing a mast
            rows.append(
                {
                    "at": tuple(site),
                    "operator": "viettel",
                    "azimuth_deg": float(rng.uniform(0, 360)),
                }
                | layer
            )
            rows.append(
                {
                    "at": tuple(site),
                    "operator": "mobifone",
                    "radio": "gsm",
                    "band_mhz": 900.0,
                    "power_dbm": 43.0,
                }
            )
        else:  # three sectors, mixed layers
            turn = rng.uniform(0, 360)
            rows.extend(
                {
                    "at": tuple(site),
                    "operator": operator,
                    "azimuth_deg": (turn + 120 * k) % 360,
                    "beamwidth_deg": float(rng.choice([33, 65, 90])),
                }
                | layer
                for k in range(3)
            )
    if listing == "shuffled":
        rows = [rows[i] for i in rng.permutation(len(rows))]
    sectors = scene.sectors(rows)
    result = classify(hamlets, sectors, empty_readings(), SETTINGS, now=NOW)

    budget = links.link_budget(sectors, SETTINGS)
    # one location per mast and operator, however the sectors were listed
    masts = {(row["at"], row["operator"]) for row in rows}
    assert sum(group.x.size for group in budget.groups) == len(masts)
    tree = links.HamletTree(*links.project(hamlets.lon, hamlets.lat))
    h, s = (a.ravel() for a in np.meshgrid(np.arange(n_h), np.arange(len(sectors)), indexing="ij"))
    level = links.levels(budget, hamlets.environment, tree.x, tree.y, h, s)
    dist = np.hypot(tree.x[h] - budget.x[s], tree.y[h] - budget.y[s])
    level[(level < -110.0) | (dist > budget.reach_m[s])] = -np.inf
    expected = np.full((n_h, 5), -np.inf)
    np.maximum.at(expected, (h, budget.operator[s]), level)
    expected[np.isneginf(expected)] = np.nan
    got = result.rsrp_dbm.astype(np.float64)
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    assert got[~np.isnan(got)] == pytest.approx(expected[~np.isnan(expected)], abs=1e-3)
    assert (~np.isnan(expected)).sum() > 300  # the scene is not trivially empty
    served = result.serving >= 0
    chosen = links.levels(
        budget, hamlets.environment, tree.x, tree.y, np.nonzero(served)[0], result.serving[served]
    )
    assert chosen == pytest.approx(expected[served], abs=1e-3)


def test_the_shadowing_margin_lowers_predictions_only() -> None:
    hamlets = scene.hamlets([(0, 3000), (0, 6000)])
    sectors = scene.sectors([{"at": (0, 0)}])
    readings = scene.readings([(0, 6000, "viettel", -95.0, NOW - DAY)])
    median = classify(hamlets, sectors, readings, SETTINGS, now=NOW)
    margined = classify(hamlets, sectors, readings, CoverageSettings(shadow_margin_db=8.0), now=NOW)
    assert CoverageSettings().shadow_margin_db == 8.0
    # the predicted level drops by the margin; the measured one is what was measured
    assert margined.rsrp_dbm[0, VIETTEL] == pytest.approx(median.rsrp_dbm[0, VIETTEL] - 8.0)
    assert margined.rsrp_dbm[1, VIETTEL] == median.rsrp_dbm[1, VIETTEL] == -95.0
