"""summarize: hamlets and population per status, per operator and overall, against hand counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lomsong.coverage.engine import summarize
from lomsong.coverage.model import (
    COVERED,
    NONE,
    OUTAGE,
    WEAK,
    Classification,
    CoverageSettings,
)
from lomsong.errors import ValidationError
from tests.coverage import scene

OPERATORS = CoverageSettings().operator_keys()
# five hamlets: two communes of province 04, one of province 08
HAMLETS = scene.hamlets(
    [(0, 0), (1, 0), (2, 0), (3, 0), (4, 0)],
    commune=["01273", "01273", "01273", "01279", "02000"],
    population=[100, 200, 50, 70, 1000],
    power=[True, False, False, True, False],
)
HAMLETS.province_code[4] = "08"
VIETTEL = [COVERED, NONE, WEAK, OUTAGE, NONE]
OVERALL = [COVERED, NONE, WEAK, COVERED, NONE]


def classification() -> Classification:
    status = np.full((5, len(OPERATORS)), NONE, dtype=np.int8)
    status[:, 0] = VIETTEL
    status[3, 2] = COVERED  # mobifone keeps h3 covered while viettel is out
    return Classification(
        operators=OPERATORS,
        rsrp_dbm=np.full(status.shape, np.nan, dtype=np.float32),
        measured=np.zeros(status.shape, dtype=bool),
        serving=np.full(status.shape, -1, dtype=np.int64),
        status=status,
        overall=np.array(OVERALL, dtype=np.int8),
        best_operator=np.array([0, -1, 0, 2, -1]),
    )


def row(frame: pd.DataFrame, code: str, operator: str) -> dict[str, object]:
    found = frame[(frame["code"] == code) & (frame["operator"] == operator)]
    assert len(found) == 1
    return dict(found.iloc[0])


def test_by_commune_counts_by_hand() -> None:
    frame = summarize(HAMLETS, classification(), by="commune")
    assert frame["code"].tolist() == ["01273"] * 6 + ["01279"] * 6 + ["02000"] * 6
    assert frame["operator"].tolist()[:6] == ["overall", *OPERATORS]
    overall = row(frame, "01273", "overall")
    assert overall["hamlets"] == 3 and overall["population"] == 350
    assert overall["hamlets_no_power"] == 2 and overall["population_no_power"] == 250
    assert (overall["hamlets_covered"], overall["population_covered"]) == (1, 100)
    assert (overall["hamlets_weak"], overall["population_weak"]) == (1, 50)
    assert (overall["hamlets_none"], overall["population_none"]) == (1, 200)
    assert (overall["hamlets_none_no_power"], overall["population_none_no_power"]) == (1, 200)
    assert (overall["hamlets_weak_no_power"], overall["population_weak_no_power"]) == (1, 50)
    assert overall["hamlets_covered_no_power"] == 0 and overall["hamlets_outage"] == 0
    viettel = row(frame, "01279", "viettel")
    assert (viettel["hamlets_outage"], viettel["population_outage"]) == (1, 70)
    assert row(frame, "01279", "overall")["hamlets_covered"] == 1
    assert row(frame, "01279", "mobifone")["population_covered"] == 70
    vinaphone = row(frame, "01273", "vinaphone")
    assert vinaphone["hamlets_none"] == 3 and vinaphone["population_none"] == 350


def test_by_province_adds_the_communes_up() -> None:
    frame = summarize(HAMLETS, classification(), by="province")
    assert sorted(set(frame["code"])) == ["04", "08"]
    overall = row(frame, "04", "overall")
    assert overall["hamlets"] == 4 and overall["population"] == 420
    # the figures a province reports: hamlets without signal or weak, and those without power
    weak_or_none = overall["hamlets_weak"] + overall["hamlets_none"]
    no_power = overall["hamlets_weak_no_power"] + overall["hamlets_none_no_power"]
    assert (weak_or_none, no_power) == (2, 2)
    other = row(frame, "08", "overall")
    assert other["hamlets_none_no_power"] == 1 and other["population_none_no_power"] == 1000
    columns = frame.columns.tolist()
    assert columns[:6] == [
        "code", "operator", "hamlets", "population", "hamlets_no_power", "population_no_power",
    ]  # fmt: skip
    assert len(columns) == 6 + 4 * 4
    assert all(frame[c].dtype == np.int64 for c in columns[2:])


def test_bad_arguments() -> None:
    with pytest.raises(ValidationError, match="by.*district"):
        summarize(HAMLETS, classification(), by="district")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="classification"):
        summarize(scene.hamlets([(0, 0)]), classification())
