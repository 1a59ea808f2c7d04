"""Synthetic hamlets and sites on the real communes: counts, sums, places, marks, seeds."""

from __future__ import annotations

from functools import cache

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from lomsong.coverage import boundaries, propagation, synth
from lomsong.coverage.model import DEFAULT_OPERATORS
from lomsong.errors import ValidationError
from lomsong.storage import schema


@cache
def cao_bang() -> gpd.GeoDataFrame:
    return boundaries.communes(province="04")


def test_hamlets_follow_real_population() -> None:
    communes = cao_bang()
    frame = synth.hamlets(communes, seed=11)
    expected = sum(max(1, round(p / 380)) for p in communes["population"].astype(int))
    assert len(frame) == expected and 1_400 < expected < 1_600
    totals = frame.groupby("commune_code")["population"].sum()
    real = communes.set_index("code")["population"].astype(int)
    assert totals.sort_index().tolist() == real.loc[totals.sort_index().index].tolist()
    assert (frame["population"] >= 1).all()
    assert ((frame["households"] >= 1) & (frame["households"] < frame["population"])).all()


def test_hamlets_lie_inside_their_commune_and_say_they_are_synthetic() -> None:
    communes = cao_bang()
    frame = synth.hamlets(communes, seed=11)
    polygons = communes.set_index("code").geometry.loc[frame["commune_code"]].to_numpy()
    assert shapely.contains_xy(polygons, frame["lon"], frame["lat"]).all()
    assert list(frame.columns) == [c.name for c in schema.hamlets.columns]
    assert frame.crs == "EPSG:4326" and (frame.geometry.geom_type == "Point").all()
    assert np.allclose(frame.geometry.x, frame["lon"]) and np.allclose(
        frame.geometry.y, frame["lat"]
    )
    assert frame["synthetic"].all() and frame["id"].is_unique
    assert frame["id"].str.match(r"^SYN-04-\d{5}-\d{3}$").all()
    assert (frame["province_code"] == "04").all() and (frame["version"] == 1).all()
    names = frame.groupby("commune_code")["name"]
    assert names.apply(lambda s: s.is_unique).all()
    assert frame["name"].str.match(r"^(Xóm|Tổ dân phố) ").all()


def test_grid_power_is_missing_only_outside_wards() -> None:
    communes = cao_bang()
    frame = synth.hamlets(communes, seed=11)
    kind = frame["commune_code"].map(communes.set_index("code")["type"]).str.lower()
    assert frame.loc[kind == "phường", "has_grid_power"].all()
    no_power = int((~frame["has_grid_power"]).sum())
    assert 0 < no_power < len(frame) // 5


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    communes = cao_bang()
    a, b = synth.hamlets(communes, seed=5), synth.hamlets(communes, seed=5)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(synth.sites(communes, seed=5), synth.sites(communes, seed=5))
    c = synth.hamlets(communes, seed=6)
    assert len(a) == len(c) and not np.allclose(a["lon"], c["lon"])
    with pytest.raises(ValidationError, match="seed"):
        synth.hamlets(communes, seed=-1)


def test_sites_of_a_province() -> None:
    communes = cao_bang()
    frame = synth.sites(communes, seed=11)
    assert 850 < len(frame) < 1_150
    assert list(frame.columns) == [c.name for c in schema.sites.columns] + ["geometry"]
    assert frame["synthetic"].all() and (frame["source"] == "synthetic").all()
    assert (frame["status"] == "active").all() and frame["id"].is_unique
    assert (
        frame["id"] == frame["operator"] + ":" + frame["site_id"] + ":" + frame["cell_id"]
    ).all()
    assert frame["site_id"].str.startswith("SYN-").all()
    shares = frame.groupby("operator")["site_id"].nunique().sort_values(ascending=False)
    assert shares.index[0] == "viettel" and set(shares.index) <= {
        op.key for op in DEFAULT_OPERATORS
    }
    assert frame["band_mhz"].between(propagation.MIN_FREQ_MHZ, propagation.MAX_FREQ_MHZ).all()
    assert (frame["radio"] == "lte").mean() > 0.6
    polygons = communes.set_index("code").geometry.loc[frame["commune_code"]].to_numpy()
    assert shapely.contains_xy(polygons, frame["lon"], frame["lat"]).all()


def test_three_sector_sites_face_three_ways() -> None:
    frame = synth.sites(cao_bang(), seed=11)
    sizes = frame.groupby("site_id").size()
    assert set(sizes.unique()) == {1, 3} and (sizes == 1).mean() < 0.2
    three = frame[frame["site_id"].isin(sizes[sizes == 3].index)].sort_values(
        ["site_id", "cell_id"]
    )
    az = three["azimuth_deg"].to_numpy().reshape(-1, 3)
    gaps = (np.diff(az, axis=1) % 360).round(0)
    assert (gaps == 120).all()
    assert (three["beamwidth_deg"] == 65).all()
    omni = frame[frame["site_id"].isin(sizes[sizes == 1].index)]
    assert omni["azimuth_deg"].isna().all() and omni["beamwidth_deg"].isna().all()


def test_operators_can_be_chosen() -> None:
    frame = synth.sites(cao_bang(), seed=2, operators=["viettel", "itelecom"])
    assert set(frame["operator"]) == {"viettel", "itelecom"}
    with pytest.raises(ValidationError, match="operators"):
        synth.sites(cao_bang(), seed=2, operators=[])


def test_national_shape() -> None:
    communes = boundaries.communes()
    assert len(communes) == 3321
    hamlets = synth.hamlet_counts(communes)
    assert 60_000 < hamlets.sum() < 68_000  # about 63,600 rural hamlets (DESIGN §1)
    sites = synth.expected_sites(communes)
    sectors = sites.sum() * (1 - synth.OMNI_SHARE) * 3 + sites.sum() * synth.OMNI_SHARE
    assert 110_000 < sectors < 130_000
    assert 95e6 < synth.estimated_population(communes).sum() < 108e6
    # wards are denser than xã, in hamlets and in sites per km²
    kind = communes["type"].str.lower().to_numpy()
    area = communes["area_km2"].to_numpy()
    ward, xa = kind == "phường", kind == "xã"
    assert np.median((hamlets / area)[ward]) > 2 * np.median((hamlets / area)[xa])
    assert np.median((sites / area)[ward]) > 2 * np.median((sites / area)[xa])
    # the seven provinces with real population keep it
    real = communes["population"].notna()
    assert real.sum() == 567
    assert (synth.estimated_population(communes)[real] == communes["population"][real]).all()


def test_a_province_cut_from_a_larger_set_is_its_own_set() -> None:
    two = boundaries.communes()
    two = two[two["province_code"].isin(["04", "20"])]
    both = synth.hamlets(two, seed=3)
    cut = both[both["province_code"] == "04"].reset_index(drop=True)
    pd.testing.assert_frame_equal(cut, synth.hamlets(cao_bang(), seed=3))
    sites = synth.sites(two, seed=3)
    cut_sites = sites[sites["province_code"] == "04"].reset_index(drop=True)
    pd.testing.assert_frame_equal(cut_sites, synth.sites(cao_bang(), seed=3))


def test_communes_without_a_crs_are_refused() -> None:
    frame = cao_bang().head(2).set_crs(None, allow_override=True)
    with pytest.raises(ValidationError, match="crs"):
        synth.hamlets(frame, seed=1)
