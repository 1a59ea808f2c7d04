"""Properties that must hold on real geography (issue #5, §5): Cao Bằng's real communes and
population, synthetic hamlets and sites, whatever the seed."""

from __future__ import annotations

from functools import cache, lru_cache

import geopandas as gpd
import numpy as np
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import Transformer
from scipy.spatial import cKDTree

from lomsong.coverage import boundaries, frames, synth
from lomsong.coverage.engine import classify, whatif
from lomsong.coverage.model import (
    COVERED,
    METRIC_CRS,
    NONE,
    RURAL,
    Classification,
    CoverageSettings,
    Hamlets,
    Sectors,
    as_object,
    concat_sectors,
    empty_readings,
    environment_codes,
    take_sectors,
)

SETTINGS = CoverageSettings()
OPERATORS = SETTINGS.operator_keys()
NOW = 1_760_000_000.0
SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
PROPERTY = settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
_TO_METRIC = Transformer.from_crs("EPSG:4326", METRIC_CRS, always_xy=True)
_TO_LONLAT = Transformer.from_crs(METRIC_CRS, "EPSG:4326", always_xy=True)


@cache
def communes() -> gpd.GeoDataFrame:
    return boundaries.communes(province="04")


@lru_cache(maxsize=8)
def world(seed: int) -> tuple[Hamlets, Sectors]:
    c = communes()
    return (
        frames.hamlets_from_frame(synth.hamlets(c, seed=seed), c),
        frames.sectors_from_frame(synth.sites(c, seed=seed)),
    )


def metric(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    x, y = _TO_METRIC.transform(lon, lat)
    return np.column_stack([x, y])


def classify_all(hamlets: Hamlets, sectors: Sectors) -> Classification:
    return classify(hamlets, sectors, empty_readings(), SETTINGS, now=NOW)


def ranks(result: Classification) -> np.ndarray:
    """Status codes per operator and overall, 0 best: comparisons read 'no worse than'."""
    return np.column_stack([result.status, result.overall])


def levels(result: Classification) -> np.ndarray:
    return np.nan_to_num(result.rsrp_dbm.astype(np.float64), nan=-np.inf)


def hamlet_at(x: float, y: float) -> Hamlets:
    """One hamlet at a metric point, in the environment class of the commune it falls in."""
    lon, lat = _TO_LONLAT.transform(x, y)
    c = communes()
    inside = np.flatnonzero(shapely.contains_xy(c.geometry.to_numpy(), lon, lat))
    if inside.size:
        row = c.iloc[int(inside[0])]
        env = environment_codes(as_object([row["type"]]), as_object([row["province_code"]]))
        commune, province = row["code"], row["province_code"]
    else:  # just over the border: a neighbouring xã
        env, commune, province = np.array([RURAL], dtype=np.int8), "00000", "04"
    return Hamlets(
        ids=as_object(["probe"]), names=as_object(["Bản thử"]), commune_code=as_object([commune]),
        province_code=as_object([province]), lon=np.array([lon]), lat=np.array([lat]),
        population=np.array([100]), has_grid_power=np.array([True]),
        environment=np.asarray(env, dtype=np.int8), synthetic=np.array([True]),
    )  # fmt: skip


@PROPERTY
@given(
    seed=SEEDS,
    pick=st.integers(min_value=0, max_value=10**6),
    bearing=st.floats(min_value=0.0, max_value=360.0),
    distance=st.floats(min_value=0.0, max_value=500.0),
)
def test_a_hamlet_within_500_m_of_a_site_is_covered_by_its_operator(
    seed: int, pick: int, bearing: float, distance: float
) -> None:
    hamlets, sectors = world(seed)
    # every synthetic hamlet that happens to be that close
    result = classify_all(hamlets, sectors)
    hamlet_xy = metric(hamlets.lon, hamlets.lat)
    sector_xy = metric(sectors.lon, sectors.lat)
    for j, op in enumerate(OPERATORS):
        mine = sectors.operator == op
        if not mine.any():
            continue
        near = cKDTree(sector_xy[mine]).query(hamlet_xy, distance_upper_bound=500.0)[0] <= 500.0
        assert (result.status[near, j] == COVERED).all()
    # and one placed at a drawn bearing and distance from a drawn site
    k = pick % len(sectors)
    rad = np.radians(bearing)
    x = sector_xy[k, 0] + distance * np.sin(rad)
    y = sector_xy[k, 1] + distance * np.cos(rad)
    probe = classify_all(hamlet_at(x, y), sectors)
    assert probe.status[0, OPERATORS.index(sectors.operator[k])] == COVERED


@PROPERTY
@given(seed=SEEDS, pick=st.integers(min_value=0, max_value=10**6))
def test_a_hamlet_40_km_from_every_site_has_no_signal(seed: int, pick: int) -> None:
    hamlets, sectors = world(seed)
    i = pick % len(hamlets)
    hamlet_xy = metric(hamlets.lon, hamlets.lat)
    sector_xy = metric(sectors.lon, sectors.lat)
    far = np.hypot(*(sector_xy - hamlet_xy[i]).T) >= 40_000.0
    result = classify_all(hamlets, take_sectors(sectors, far))
    assert (result.status[i] == NONE).all() and result.overall[i] == NONE
    assert np.isnan(result.rsrp_dbm[i]).all() and result.best_operator[i] == -1
    # and so is every other hamlet that far from what is left
    if far.any():
        lonely = cKDTree(sector_xy[far]).query(hamlet_xy)[0] >= 40_000.0
        assert (result.overall[lonely] == NONE).all()


@st.composite
def new_site(draw: st.DrawFn) -> Sectors:
    lon = draw(st.floats(min_value=105.3, max_value=106.9))
    lat = draw(st.floats(min_value=22.3, max_value=23.1))
    operator = draw(st.sampled_from(OPERATORS))
    radio, band, _, power = draw(st.sampled_from(synth.LAYERS))
    height = draw(st.floats(min_value=15.0, max_value=60.0))
    omni = draw(st.booleans())
    turn = draw(st.floats(min_value=0.0, max_value=360.0))
    azimuths = [np.nan] if omni else [(turn + 120.0 * k) % 360.0 for k in range(3)]
    n = len(azimuths)
    return Sectors(
        ids=as_object([f"{operator}:NEW:{k}" for k in range(n)]), site_id=as_object(["NEW"] * n),
        operator=as_object([operator] * n), radio=as_object([radio] * n),
        band_mhz=np.full(n, band), lon=np.full(n, lon), lat=np.full(n, lat),
        height_m=np.full(n, height), azimuth_deg=np.array(azimuths),
        beamwidth_deg=np.full(n, np.nan if omni else 65.0), power_dbm=np.full(n, power),
        range_m=np.full(n, np.nan), active=np.ones(n, dtype=bool),
    )  # fmt: skip


@PROPERTY
@given(seed=SEEDS, site=new_site())
def test_adding_a_site_never_worsens_any_hamlet(seed: int, site: Sectors) -> None:
    hamlets, sectors = world(seed)
    before = classify_all(hamlets, sectors)
    after = classify_all(hamlets, concat_sectors(sectors, site))
    assert (ranks(after) <= ranks(before)).all()
    assert (levels(after) >= levels(before) - 1e-4).all()
    # whatif gives the same answer and names exactly the hamlets that change
    answer = whatif(hamlets, sectors, empty_readings(), SETTINGS, site, now=NOW, base=before)
    assert np.array_equal(answer.after.status, after.status)
    changed = np.flatnonzero((ranks(after) != ranks(before)).any(axis=1))
    assert answer.changed.tolist() == changed.tolist()


@PROPERTY
@given(seed=SEEDS, pick=st.integers(min_value=0, max_value=10**6), whole_site=st.booleans())
def test_removing_a_sector_or_site_never_improves_any_hamlet(
    seed: int, pick: int, whole_site: bool
) -> None:
    hamlets, sectors = world(seed)
    k = pick % len(sectors)
    gone = (sectors.site_id == sectors.site_id[k]) if whole_site else (np.arange(len(sectors)) == k)
    before = classify_all(hamlets, sectors)
    after = classify_all(hamlets, take_sectors(sectors, ~gone))
    assert (ranks(after) >= ranks(before)).all()
    assert (levels(after) <= levels(before) + 1e-4).all()
    # where the best sector stays, the level stays
    kept = (before.serving >= 0) & ~np.isin(before.serving, np.flatnonzero(gone))
    assert np.allclose(levels(after)[kept], levels(before)[kept], atol=1e-4)
