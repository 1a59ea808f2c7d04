"""apply_outages: the live overlay of down sectors and down commune links."""

from __future__ import annotations

import numpy as np
import pytest

from lomsong.coverage.engine import apply_outages, classify
from lomsong.coverage.model import (
    COVERED,
    NONE,
    OUTAGE,
    WEAK,
    Classification,
    CoverageSettings,
    Readings,
    Sectors,
    empty_readings,
)
from lomsong.errors import ValidationError
from tests.coverage import scene

# The hand-checked levels are the formulas' medians: no shadowing margin.
SETTINGS = CoverageSettings(shadow_margin_db=0.0)
VIETTEL, MOBIFONE = 0, 2
NOW = 1_760_000_000.0

# H0 is covered by S0 and reached (weak) by S1 too; H1 only by S0; H2 by nothing.
HAMLETS = scene.hamlets([(0, 2000), (0, -2000), (0, -40_000)])
ROWS = [{"at": (0, 0)}, {"at": (0, 8000)}]


def run(
    rows: list[dict[str, object]], readings: Readings | None = None, **kw: object
) -> tuple[Classification, Classification, Sectors]:
    sectors = scene.sectors(rows)
    base = classify(HAMLETS, sectors, readings or empty_readings(), SETTINGS, now=NOW)
    return base, apply_outages(base, HAMLETS, sectors, **kw), sectors  # type: ignore[arg-type]


def test_the_scene() -> None:
    base, same, _ = run(ROWS)
    assert base.status[:, VIETTEL].tolist() == [COVERED, COVERED, NONE]
    assert base.serving[:, VIETTEL].tolist() == [0, 0, -1]
    # nothing is down: nothing changes
    for name in ("status", "overall", "serving", "best_operator"):
        assert np.array_equal(getattr(same, name), getattr(base, name))


def test_all_capable_sectors_down_is_outage_and_none_stays_none() -> None:
    _, out, _ = run([r | {"active": False} for r in ROWS])
    assert out.status[:, VIETTEL].tolist() == [OUTAGE, OUTAGE, NONE]
    assert out.overall.tolist() == [OUTAGE, OUTAGE, NONE]
    assert out.best_operator.tolist() == [-1, -1, -1]


def test_when_the_best_sector_is_down_the_next_one_serves() -> None:
    base, out, _ = run([ROWS[0] | {"active": False}, ROWS[1]])
    assert out.status[:, VIETTEL].tolist() == [WEAK, OUTAGE, NONE]
    assert out.serving[0, VIETTEL] == 1
    assert out.rsrp_dbm[0, VIETTEL] < base.rsrp_dbm[0, VIETTEL]
    # H1's level is kept for when S0 comes back
    assert out.rsrp_dbm[1, VIETTEL] == base.rsrp_dbm[1, VIETTEL]


def test_down_sectors_argument_overrides_the_active_flags() -> None:
    _, out, _ = run(ROWS, down_sectors=np.array([False, True]))
    assert out.status[:, VIETTEL].tolist() == [COVERED, COVERED, NONE]
    _, out, _ = run(ROWS, down_sectors=np.array([True, False]))
    assert out.status[:, VIETTEL].tolist() == [WEAK, OUTAGE, NONE]


def test_another_operator_keeps_the_hamlet_served() -> None:
    rows = [ROWS[0] | {"active": False}, {"at": (0, 0), "operator": "mobifone"}]
    _, out, _ = run(rows)
    assert out.status[:2, VIETTEL].tolist() == [OUTAGE, OUTAGE]
    assert out.status[:2, MOBIFONE].tolist() == [COVERED, COVERED]
    assert out.overall.tolist() == [COVERED, COVERED, NONE]
    assert out.best_operator.tolist() == [MOBIFONE, MOBIFONE, -1]


def test_measured_hamlet_keeps_its_reading_until_every_capable_sector_is_down() -> None:
    readings = scene.readings([(0, 2000, "viettel", -95.0, NOW)])
    base, out, _ = run([ROWS[0] | {"active": False}, ROWS[1]], readings)
    assert base.measured[0, VIETTEL]
    assert out.rsrp_dbm[0, VIETTEL] == -95.0 and out.status[0, VIETTEL] == COVERED
    _, out, _ = run([r | {"active": False} for r in ROWS], readings)
    assert out.status[0, VIETTEL] == OUTAGE


def test_down_link_cuts_off_the_served_hamlets_of_its_commune() -> None:
    hamlets = scene.hamlets(
        [(0, 2000), (0, -2000), (0, 40_000), (500, 0)], commune=["01273", "01273", "01273", "01279"]
    )
    sectors = scene.sectors([{"at": (0, 0)}, {"at": (0, 0), "operator": "mobifone"}])
    base = classify(hamlets, sectors, empty_readings(), SETTINGS, now=NOW)
    out = apply_outages(base, hamlets, sectors, down_links=[("01273", "viettel")])
    assert out.status[:, VIETTEL].tolist() == [OUTAGE, OUTAGE, NONE, COVERED]
    assert out.status[:, MOBIFONE].tolist() == [COVERED, COVERED, NONE, COVERED]
    assert out.overall.tolist() == [COVERED, COVERED, NONE, COVERED]
    both = apply_outages(
        base, hamlets, sectors, down_links=[("01273", "viettel"), ("01273", "mobifone")]
    )
    assert both.overall.tolist() == [OUTAGE, OUTAGE, NONE, COVERED]


def test_bad_inputs_are_refused() -> None:
    base, _, sectors = run(ROWS)
    with pytest.raises(ValidationError, match="down_sectors"):
        apply_outages(base, HAMLETS, sectors, down_sectors=np.array([True]))
    with pytest.raises(ValidationError, match="down_links.*fibre"):
        apply_outages(base, HAMLETS, sectors, down_links=[("01273", "fibre")])
    orphan = Classification(
        base.operators, base.rsrp_dbm, base.measured, base.serving, base.status, base.overall,
        base.best_operator,
    )  # fmt: skip
    with pytest.raises(ValidationError, match="classification"):
        apply_outages(orphan, HAMLETS, sectors)
