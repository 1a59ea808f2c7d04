"""From table-shaped frames to the engine's columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lomsong.coverage import boundaries, frames, synth
from lomsong.coverage.model import RURAL, SUBURBAN, URBAN, environment_codes
from lomsong.errors import ValidationError


def test_environment_classes_of_communes() -> None:
    types = np.array(["Phường", "phường", "Xã", "xã", "Đặc khu", "Phường"], dtype=object)
    provinces = np.array(["01", "04", "04", "79", "22", "79"], dtype=object)
    assert environment_codes(types, provinces).tolist() == [
        URBAN, SUBURBAN, RURAL, RURAL, RURAL, URBAN,
    ]  # fmt: skip


def test_synthetic_hamlets_become_columns() -> None:
    communes = boundaries.communes(province="04")
    frame = synth.hamlets(communes, seed=1)
    hamlets = frames.hamlets_from_frame(frame, communes)
    assert len(hamlets) == len(frame)
    assert hamlets.ids.tolist() == frame["id"].tolist()
    assert hamlets.population.sum() == frame["population"].sum()
    ward = frame["commune_code"].map(communes.set_index("code")["type"]).str.lower() == "phường"
    assert (hamlets.environment[ward.to_numpy()] == SUBURBAN).all()
    assert (hamlets.environment[~ward.to_numpy()] == RURAL).all()
    assert hamlets.synthetic.all()


def test_missing_values_take_their_documented_defaults() -> None:
    frame = pd.DataFrame(
        {
            "id": ["a", "b"],
            "name": ["Thôn Đông", "Thôn Tây"],
            "commune_code": ["01273", "01273"],
            "province_code": ["04", "04"],
            "lon": [106.2, 106.3],
            "lat": [22.6, 22.7],
            "population": pd.array([120, None], dtype="Int64"),
            "has_grid_power": pd.array([False, None], dtype="boolean"),
        }
    )
    hamlets = frames.hamlets_from_frame(frame, boundaries.communes(province="04"))
    assert hamlets.population.tolist() == [120, 0]
    assert hamlets.has_grid_power.tolist() == [False, True]
    assert hamlets.synthetic.tolist() == [False, False]
    frame.loc[1, "commune_code"] = "99999"
    with pytest.raises(ValidationError, match="commune_code.*99999"):
        frames.hamlets_from_frame(frame, boundaries.communes(province="04"))
    with pytest.raises(ValidationError, match="hamlets columns.*lat"):
        frames.hamlets_from_frame(frame.drop(columns="lat"))


def test_sites_become_sectors_planned_left_out_down_kept() -> None:
    frame = synth.sites(boundaries.communes(province="04"), seed=1).head(6).copy()
    frame.loc[frame.index[0], "status"] = "planned"
    frame.loc[frame.index[1], "status"] = "down"
    frame.loc[frame.index[2], "power_dbm"] = None
    sectors = frames.sectors_from_frame(frame)
    assert len(sectors) == 5
    assert sectors.ids.tolist() == frame["id"].tolist()[1:]
    assert sectors.active.tolist() == [False, True, True, True, True]
    assert np.isnan(sectors.power_dbm[1]) and np.isnan(sectors.range_m).all()
    frame.loc[frame.index[3], "status"] = "broken"
    with pytest.raises(ValidationError, match="status.*broken"):
        frames.sectors_from_frame(frame)


def test_readings_become_columns() -> None:
    frame = pd.DataFrame(
        {
            "lon": [106.2],
            "lat": [22.6],
            "operator": ["viettel"],
            "rsrp_dbm": [-101.5],
            "measured_at": [1.7e9],
        }
    )
    readings = frames.readings_from_frame(frame)
    assert readings.rsrp_dbm.tolist() == [-101.5] and readings.source.tolist() == [""]
    with pytest.raises(ValidationError, match="readings columns.*rsrp_dbm"):
        frames.readings_from_frame(frame.drop(columns="rsrp_dbm"))
