"""whatif: exactly the hamlets whose status changes, and the people they hold."""

from __future__ import annotations

import numpy as np
import pytest

from lomsong.coverage.engine import classify, whatif
from lomsong.coverage.model import (
    COVERED,
    NONE,
    WEAK,
    CoverageSettings,
    concat_sectors,
    empty_readings,
)
from lomsong.errors import ValidationError
from tests.coverage import scene

# The hand-checked levels are the formulas' medians: no shadowing margin.
SETTINGS = CoverageSettings(shadow_margin_db=0.0)
VIETTEL, VINAPHONE = 0, 1
NOW = 1_760_000_000.0

# H0 covered by S0; H1, H2 none (20 and 22 km east); H3 far north; H4 weak (6 km north).
HAMLETS = scene.hamlets(
    [(0, 2000), (20_000, 0), (22_000, 0), (0, 60_000), (0, 6000)],
    population=[500, 120, 80, 300, 45],
)
SECTORS = scene.sectors([{"at": (0, 0), "azimuth_deg": 0.0}])


def test_the_scene() -> None:
    base = classify(HAMLETS, SECTORS, empty_readings(), SETTINGS, now=NOW)
    assert base.status[:, VIETTEL].tolist() == [COVERED, NONE, NONE, NONE, WEAK]


def test_a_new_site_reports_exactly_the_hamlets_it_changes() -> None:
    candidates = scene.sectors([{"at": (21_000, 0)}])
    answer = whatif(HAMLETS, SECTORS, empty_readings(), SETTINGS, candidates, now=NOW)
    assert answer.changed.tolist() == [1, 2]
    assert answer.after.status[:, VIETTEL].tolist() == [COVERED, COVERED, COVERED, NONE, WEAK]
    assert answer.after.serving[1:3, VIETTEL].tolist() == [1, 1]  # len(sectors) + 0
    assert answer.newly_served == (2, 200) and answer.newly_covered == (2, 200)
    rows = answer.table()
    assert rows == [
        {"hamlet_id": "h1", "name": "Bản thử 1", "commune_code": "01273", "population": 120,
         "operator": "viettel", "before": "none", "after": "covered"},
        {"hamlet_id": "h1", "name": "Bản thử 1", "commune_code": "01273", "population": 120,
         "operator": "overall", "before": "none", "after": "covered"},
        {"hamlet_id": "h2", "name": "Bản thử 2", "commune_code": "01273", "population": 80,
         "operator": "viettel", "before": "none", "after": "covered"},
        {"hamlet_id": "h2", "name": "Bản thử 2", "commune_code": "01273", "population": 80,
         "operator": "overall", "before": "none", "after": "covered"},
    ]  # fmt: skip


def test_after_equals_classify_with_the_candidates_added() -> None:
    candidates = scene.sectors(
        [
            {"at": (1000, 5000), "azimuth_deg": 0.0},
            {"at": (21_000, 0), "operator": "vinaphone", "azimuth_deg": 270.0},
        ]
    )
    answer = whatif(HAMLETS, SECTORS, empty_readings(), SETTINGS, candidates, now=NOW)
    full = classify(
        HAMLETS, concat_sectors(SECTORS, candidates), empty_readings(), SETTINGS, now=NOW
    )
    for name in ("status", "overall", "serving", "best_operator"):
        assert np.array_equal(getattr(answer.after, name), getattr(full, name)), name
    np.testing.assert_allclose(answer.after.rsrp_dbm, full.rsrp_dbm, atol=1e-4)
    changed = np.flatnonzero(
        (answer.before.status != full.status).any(axis=1) | (answer.before.overall != full.overall)
    )
    assert answer.changed.tolist() == changed.tolist() == [1, 2, 4]
    # H4 goes from weak to covered overall: covered gained, but it was served already
    assert answer.newly_covered == (3, 245) and answer.newly_served == (2, 200)


def test_a_measured_level_only_yields_to_a_better_prediction() -> None:
    readings = scene.readings(
        [(20_000, 0, "viettel", -104.0, NOW), (22_000, 0, "viettel", -60.0, NOW)]
    )
    candidates = scene.sectors([{"at": (21_000, 0)}])
    answer = whatif(HAMLETS, SECTORS, readings, SETTINGS, candidates, now=NOW)
    assert answer.before.status[1:3, VIETTEL].tolist() == [WEAK, COVERED]
    assert answer.after.status[1:3, VIETTEL].tolist() == [COVERED, COVERED]
    assert answer.after.measured[1:3, VIETTEL].tolist() == [False, True]
    assert answer.after.rsrp_dbm[2, VIETTEL] == -60.0
    assert answer.changed.tolist() == [1]


def test_a_given_base_is_used_and_checked() -> None:
    base = classify(HAMLETS, SECTORS, empty_readings(), SETTINGS, now=NOW)
    candidates = scene.sectors([{"at": (21_000, 0)}])
    answer = whatif(HAMLETS, SECTORS, empty_readings(), SETTINGS, candidates, now=NOW, base=base)
    assert answer.before is base and answer.changed.tolist() == [1, 2]
    nothing = whatif(
        HAMLETS, SECTORS, empty_readings(), SETTINGS, scene.sectors([]), now=NOW, base=base
    )
    assert nothing.changed.size == 0 and nothing.table() == [] and nothing.newly_served == (0, 0)
    other = classify(scene.hamlets([(0, 0)]), SECTORS, empty_readings(), SETTINGS, now=NOW)
    with pytest.raises(ValidationError, match="base"):
        whatif(HAMLETS, SECTORS, empty_readings(), SETTINGS, candidates, now=NOW, base=other)
