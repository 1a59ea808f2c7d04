"""Links between hamlets and sectors: each sector's link budget, the pair search, the best server.

The engine never looks at every hamlet × sector pair. Each sector has a *reach*: the distance
at which even its boresight level falls below ``none_dbm`` (in the most favourable environment,
capped at ``settings.max_reach_m``). The sectors of one operator on one mast form a *location*
whose reach is its sectors' largest; a KD-tree over the hamlets in EPSG:32648 returns only the
hamlet × location pairs within reach. Locations are searched in bands of similar reach (each
band's largest at most ``REACH_STEP`` times its smallest) so that one radius per band wastes
little, and in chunks so that memory stays bounded whatever the density. Distance and bearing
are computed once per pair, each sector's level from them, and only the location's best sector
goes on to the reduction to the best per hamlet and operator.

Levels follow ``lomsong.coverage.propagation``; for a sector in environment class ``e`` and at
``ld = log10(d / 1 km)``::

    level = min(intercept[e] − slope·ld, free_space[e] − 20·ld) − pattern(bearing)

where ``intercept`` is the boresight level at 1 km by Hata and ``free_space`` the one in free
space, so that the loss is never below free-space loss.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt
from pyproj import Transformer
from scipy.spatial import cKDTree

from lomsong.coverage.model import (
    ENVIRONMENTS,
    METRIC_CRS,
    CoverageSettings,
    FloatArray,
    IntArray,
    Readings,
    Sectors,
)
from lomsong.coverage.propagation import (
    FRONT_TO_BACK_DB,
    MIN_DISTANCE_M,
    RE_OFFSET_DB,
    free_space_1km_db,
    hata_1km_db,
    radio_codes,
)
from lomsong.errors import ValidationError

# Reach bands: the largest reach of a band is at most this many times its smallest.
REACH_STEP = 1.15
# Hamlet × location pairs computed at once (about 60 bytes each, times a location's sectors, at
# the peak).
CHUNK_PAIRS = 1_000_000
SECONDS_PER_DAY = 86_400.0
_LOG_MIN_KM = math.log10(MIN_DISTANCE_M / 1000.0)
_ENV_CODES = np.arange(len(ENVIRONMENTS), dtype=np.int8)


@cache
def _transformer() -> Transformer:
    return Transformer.from_crs("EPSG:4326", METRIC_CRS, always_xy=True)


def project(
    lon: FloatArray, lat: FloatArray, field: str = "lon/lat"
) -> tuple[FloatArray, FloatArray]:
    """WGS84 lon/lat to EPSG:32648 metres; ``ValidationError`` on a non-finite coordinate."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    bad = ~(np.isfinite(lon) & np.isfinite(lat))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValidationError(field, (float(lon[i]), float(lat[i])), "must be finite numbers")
    x, y = _transformer().transform(lon, lat)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def operator_index(
    operator: npt.NDArray[np.object_], keys: tuple[str, ...], field: str
) -> IntArray:
    """Index into ``keys`` of each operator name; ``ValidationError`` on one not configured."""
    out = np.full(operator.shape[0], -1, dtype=np.int64)
    for i, key in enumerate(keys):
        out[operator == key] = i
    if (out < 0).any():
        value = operator[np.argmax(out < 0)]
        raise ValidationError(field, value, f"expected one of {{{', '.join(keys)}}}")
    return out


# The step (dB) levels are packed with for the reduction. The hot path stays in float64:
# float32 was faster but picked among near-equal sectors a thousandth of a dB wrong, which
# showed at the thresholds.
QUANTUM_DB = 1e-6


@dataclass(frozen=True)
class Locations:
    """The ``L`` locations that have ``k`` sectors each, for the hot path.

    Slot ``c`` of every location is one of its sectors; each per-sector constant is one
    contiguous array per slot, so that a chunk of pairs gathers with ``np.take`` from
    1-D arrays. Per-environment constants are laid out ``e·L + l``.
    """

    k: int
    uniform: bool  # every sector of each location has the same budget and beamwidth
    x: FloatArray
    y: FloatArray
    reach: FloatArray
    operator: IntArray
    sector: IntArray  # (k·L,): sector index of slot c of location l at c·L + l
    intercept: tuple[FloatArray, ...]  # per slot, (3L,)
    free_space: tuple[FloatArray, ...]  # per slot, (3L,)
    slope: tuple[FloatArray, ...]  # per slot, (L,)
    azimuth: tuple[FloatArray, ...]  # per slot, (L,), radians in [-π, π), 0 for omni sectors
    curve: tuple[FloatArray, ...]  # per slot, (L,): 12 / beamwidth² in rad⁻², 0 for omni
    # (3L,): beyond this distance (m) no slot's boresight level reaches none_dbm in that
    # environment, so that no sector of the location can serve the hamlet
    alive_within: FloatArray
    # below this distance (m) some sector's loss is the free-space floor, not Hata's
    free_space_within: float


@dataclass(frozen=True)
class LinkBudget:
    """Per-sector constants of the level formula (module docstring), in metric coordinates.

    The sectors of one operator standing at the same point form a *location* (one operator's
    site): the pair search runs over locations, distance and bearing are computed once per
    hamlet and location, and only the location's best sector goes on to the reduction.
    """

    x: FloatArray
    y: FloatArray
    operator: IntArray
    intercept: FloatArray  # (n, 3): boresight level at 1 km by Hata, per environment class
    free_space: FloatArray  # (n, 3): the same in free space
    slope: FloatArray  # dB per decade of distance
    azimuth: FloatArray  # NaN: omnidirectional
    beamwidth: FloatArray
    reach_m: FloatArray  # 0 where the sector cannot reach none_dbm anywhere
    groups: tuple[Locations, ...]  # locations grouped by their number of sectors

    def __len__(self) -> int:
        return int(self.x.shape[0])


def link_budget(sectors: Sectors, settings: CoverageSettings) -> LinkBudget:
    """The link budget of every sector, with the settings' defaults filled in.

    A sector without power uses ``settings.default_power_dbm``, unless it has a positive
    ``range_m`` (OpenCelliD's estimated cell range): then its power is whatever makes the
    boresight level at ``range_m`` exactly ``none_dbm`` in every environment class, so that
    ``range_m`` is its radius, as measured where it stands.
    """
    n = len(sectors)
    x, y = _project_points(sectors.lon, sectors.lat, "sectors.lon/lat")
    op = operator_index(sectors.operator, settings.operator_keys(), "sectors.operator")
    radio = radio_codes(sectors.radio)
    freq = np.asarray(sectors.band_mhz, dtype=np.float64)
    height = np.where(np.isnan(sectors.height_m), settings.default_height_m, sectors.height_m)
    if (height <= 0).any():
        raise ValidationError(
            "sectors.height_m", float(height[np.argmax(height <= 0)]), "must be positive"
        )
    beamwidth = np.where(
        np.isnan(sectors.beamwidth_deg), settings.default_beamwidth_deg, sectors.beamwidth_deg
    )
    bad_bw = ~((beamwidth > 0) & (beamwidth <= 360))
    if bad_bw.any():
        raise ValidationError(
            "sectors.beamwidth_deg", float(beamwidth[np.argmax(bad_bw)]), "must be in (0, 360]"
        )
    azimuth = np.asarray(sectors.azimuth_deg, dtype=np.float64)
    omni = np.isnan(azimuth)
    gain = np.where(omni, settings.omni_gain_dbi, settings.sector_gain_dbi)
    power = np.where(np.isnan(sectors.power_dbm), settings.default_power_dbm, sectors.power_dbm)
    eirp = power - RE_OFFSET_DB[radio] + gain - settings.shadow_margin_db

    l1, slope2 = hata_1km_db(
        freq[:, None],
        height[:, None],
        _ENV_CODES[None, :],
        mobile_height_m=settings.mobile_height_m,
    )
    slope = slope2[:, 0] if n else np.empty(0)
    fs1 = free_space_1km_db(freq)[:, None]
    eirp_env = np.repeat(eirp[:, None], len(ENVIRONMENTS), axis=1)
    none = settings.thresholds.none_dbm
    by_range = np.isnan(sectors.power_dbm) & np.isfinite(sectors.range_m) & (sectors.range_m > 0)
    if by_range.any():
        lr = np.log10(np.maximum(sectors.range_m[by_range], MIN_DISTANCE_M) / 1000.0)[:, None]
        loss = np.maximum(l1[by_range] + slope[by_range, None] * lr, fs1[by_range] + 20.0 * lr)
        eirp_env[by_range] = none + loss
    intercept = np.ascontiguousarray(eirp_env - l1)
    free_space = np.ascontiguousarray(eirp_env - fs1)

    # boresight reach per environment: both branches of the min must stay above none_dbm
    with np.errstate(divide="ignore", invalid="ignore"):
        ld = np.minimum((intercept - none) / slope[:, None], (free_space - none) / 20.0)
    ld = np.where(ld >= _LOG_MIN_KM, ld, -np.inf)  # also where NaN: never reaches
    reach_env = 1000.0 * 10.0**ld
    reach = np.minimum(reach_env.max(axis=1, initial=0.0), settings.max_reach_m)
    # the hot path works in radians, with azimuths and bearings both in [-π, π)
    azimuth_hot = np.where(omni, 0.0, np.radians((azimuth + 180.0) % 360.0 - 180.0))
    curve = np.where(omni, 0.0, 12.0 / np.radians(beamwidth) ** 2)
    budget = LinkBudget(
        x=x,
        y=y,
        operator=op,
        intercept=intercept,
        free_space=free_space,
        slope=np.asarray(slope, dtype=np.float64),
        azimuth=azimuth,
        beamwidth=np.asarray(beamwidth, dtype=np.float64),
        reach_m=np.asarray(reach, dtype=np.float64),
        groups=(),
    )
    groups = _locations(budget, azimuth_hot, curve, reach_env) if n else ()
    return dataclasses.replace(budget, groups=groups)


def _runs(*columns: npt.NDArray[np.generic]) -> IntArray:
    """Start of each run of rows equal in every column, in the given order."""
    n = columns[0].shape[0]
    new = np.ones(n, dtype=bool)
    if n > 1:
        same = np.ones(n - 1, dtype=bool)
        for col in columns:
            same &= col[1:] == col[:-1]
        new[1:] = ~same
    return np.flatnonzero(new)


def _project_points(lon: FloatArray, lat: FloatArray, field: str) -> tuple[FloatArray, FloatArray]:
    """``project``, once per run of equal points (a mast's sectors usually come together)."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    start = _runs(lon, lat)
    if start.size * 2 > lon.size:
        return project(lon, lat, field)
    count = np.diff(np.r_[start, lon.size])
    x, y = project(lon[start], lat[start], field)
    return np.repeat(x, count), np.repeat(y, count)


def _locations(
    budget: LinkBudget, azimuth_hot: FloatArray, curve: FloatArray, reach_env: FloatArray
) -> tuple[Locations, ...]:
    """Group the sectors into locations (same point, same operator), by number of sectors."""
    x, y, op = budget.x, budget.y, budget.operator
    n = x.shape[0]
    # Sector lists usually give a mast's sectors together: the runs in the given order are the
    # locations unless a point and operator appear in two runs (then sort them all).
    start = _runs(x, y, op)
    rep = np.lexsort((op[start], y[start], x[start]))
    if _runs(x[start][rep], y[start][rep], op[start][rep]).size == start.size:
        order = np.arange(n)
    else:
        order = np.lexsort((op, y, x))
        start = _runs(x[order], y[order], op[order])
    count = np.diff(np.r_[start, n])
    loc_of = np.repeat(np.arange(start.size), count)  # location of each sector, in `order`
    reach = np.maximum.reduceat(budget.reach_m[order], start)
    # one layer: every sector of the location has the same budget and beamwidth, so that the
    # sector nearest in bearing is the best one
    mixed = np.zeros(start.size, dtype=bool)
    if n > 1:
        inner = loc_of[1:] == loc_of[:-1]
        for values in (budget.intercept, budget.free_space, budget.slope, curve):
            v = values[order]
            differs = v[1:] != v[:-1]
            if differs.ndim > 1:
                differs = differs.any(axis=1)
            mixed[loc_of[1:][inner & differs]] = True
    # Hata's loss is below free-space loss closer than ld = (Lfs1 - Lh1) / (slope - 20)
    with np.errstate(divide="ignore", invalid="ignore"):
        cross = (budget.intercept - budget.free_space) / (budget.slope[:, None] - 20.0)
    cross = np.nan_to_num(cross, nan=-np.inf, posinf=np.inf).max(axis=1)
    groups = []
    for k in np.unique(count).tolist():
        locs = np.flatnonzero(count == k)
        sector = order[start[locs][:, None] + np.arange(k)[None, :]]
        for uniform in (True, False):
            part = mixed[locs] != uniform
            if part.any():
                groups.append(
                    _group(
                        budget,
                        sector[part],
                        reach[locs[part]],
                        uniform,
                        azimuth_hot,
                        curve,
                        reach_env,
                        cross,
                    )
                )
    return tuple(groups)


def _group(
    budget: LinkBudget,
    sector: IntArray,
    reach: FloatArray,
    uniform: bool,
    azimuth_hot: FloatArray,
    curve: FloatArray,
    reach_env: FloatArray,
    cross: FloatArray,
) -> Locations:
    first = sector[:, 0]
    x, y = budget.x[first], budget.y[first]
    slots = [sector[:, c] for c in range(sector.shape[1])]
    alive = np.maximum.reduce([_by_env(reach_env, s) for s in slots])
    # a pair this close to the limit is kept: rounding in the hot path must not drop a winner
    alive *= 1.0 + 1e-9
    return Locations(
        k=sector.shape[1],
        uniform=uniform,
        x=x,
        y=y,
        reach=reach,
        operator=budget.operator[first],
        sector=sector.T.ravel().copy(),
        intercept=tuple(_by_env(budget.intercept, s) for s in slots),
        free_space=tuple(_by_env(budget.free_space, s) for s in slots),
        slope=tuple(budget.slope[s].astype(np.float64) for s in slots),
        azimuth=tuple(azimuth_hot[s].astype(np.float64) for s in slots),
        curve=tuple(curve[s].astype(np.float64) for s in slots),
        alive_within=alive,
        free_space_within=float(1000.0 * 10.0 ** np.max(cross[sector], initial=-np.inf)),
    )


def _by_env(per_env: FloatArray, sector: IntArray) -> FloatArray:
    """(n, 3) per-sector values of some sectors as (3L,), environment-major."""
    return np.ascontiguousarray(np.take(per_env, sector, axis=0).T, dtype=np.float64).ravel()


def levels(
    budget: LinkBudget,
    environment: npt.NDArray[np.int8],
    hx: FloatArray,
    hy: FloatArray,
    hamlet: IntArray,
    sector: IntArray,
) -> FloatArray:
    """Received level (dBm, float64) of each (hamlet, sector) pair: the exact formula."""
    dx = hx[hamlet] - budget.x[sector]
    dy = hy[hamlet] - budget.y[sector]
    flat = sector * len(ENVIRONMENTS) + environment[hamlet]
    ld = np.log10(np.maximum(np.hypot(dx, dy), MIN_DISTANCE_M)) - 3.0
    out = np.minimum(
        budget.intercept.ravel()[flat] - budget.slope[sector] * ld,
        budget.free_space.ravel()[flat] - 20.0 * ld,
    )
    az = budget.azimuth[sector]
    directional = ~np.isnan(az)
    off = np.abs((np.degrees(np.arctan2(dx, dy)) - az + 180.0) % 360.0 - 180.0)
    pattern = np.minimum(12.0 * (off / budget.beamwidth[sector]) ** 2, FRONT_TO_BACK_DB)
    return np.asarray(out - np.where(directional, pattern, 0.0))


class HamletTree:
    """Hamlets in metric coordinates with their KD-tree, built once per computation."""

    def __init__(self, hx: FloatArray, hy: FloatArray) -> None:
        self.x = hx
        self.y = hy
        self.tree = cKDTree(np.column_stack([hx, hy])) if hx.size else None
        if hx.size:
            area = max(float(np.ptp(hx)) * float(np.ptp(hy)), 1.0)
            self.density = hx.size / area
        else:
            self.density = 0.0

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def pairs(
        self, x: FloatArray, y: FloatArray, reach: FloatArray
    ) -> Iterator[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], FloatArray]]:
        """(hamlet, point, distance m) of every hamlet within ``reach[point]`` of a point, in
        chunks of about ``CHUNK_PAIRS`` pairs.

        Points are searched in bands of similar reach, each band with one radius (its largest)
        and the pairs beyond a point's own reach dropped.
        """
        if self.tree is None:
            return
        idx = np.flatnonzero(reach > 0)
        if idx.size == 0:
            return
        band = np.floor(np.log(reach[idx]) / math.log(REACH_STEP)).astype(np.int64)
        order = np.lexsort((x[idx], band))
        idx, band = idx[order], band[order]
        starts = np.flatnonzero(np.r_[True, band[1:] != band[:-1]])
        ends = np.r_[starts[1:], idx.size]
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            r_band = float(reach[idx[a:b]].max())
            per_point = max(1.0, self.density * math.pi * r_band * r_band)
            step = max(1, int(CHUNK_PAIRS / per_point))
            for c in range(a, b, step):
                chunk = idx[c : min(c + step, b)]
                other = cKDTree(np.column_stack([x[chunk], y[chunk]]))
                r_max = float(reach[chunk].max())
                found = self.tree.sparse_distance_matrix(other, r_max, output_type="ndarray")
                point = chunk[found["j"]]
                keep = found["v"] <= reach[point]
                yield found["i"][keep], point[keep], found["v"][keep]


def best_servers(
    tree: HamletTree,
    environment: npt.NDArray[np.int8],
    budget: LinkBudget,
    n_operators: int,
    none_dbm: float,
) -> tuple[FloatArray, IntArray]:
    """Best level (dBm, NaN where no sector reaches ``none_dbm``) and its sector, per hamlet and
    operator, as two ``(n_hamlets, n_operators)`` arrays.

    Candidate levels are computed per chunk of pairs, the best of each location's sectors kept,
    and the locations reduced with ``np.maximum.at`` over one int64 per pair that packs the
    level above ``none_dbm`` (in steps of ``QUANTUM_DB``) over the sector index, so that the
    maximum carries its sector (``np.maximum.at`` measured 70× faster than a lexsort here); the
    winners' levels are then computed again by the plain formula (``levels``).
    """
    n = len(tree)
    packed_best = np.full(n * n_operators, -1, dtype=np.int64)
    for group in budget.groups:
        for hamlet, location, dist in tree.pairs(group.x, group.y, group.reach):
            key, packed = _chunk(
                tree, environment, group, n_operators, none_dbm, hamlet, location, dist
            )
            np.maximum.at(packed_best, key, packed)
    return _decode(packed_best, tree, environment, budget, n_operators, none_dbm)


def _chunk(
    tree: HamletTree,
    environment: npt.NDArray[np.int8],
    group: Locations,
    n_operators: int,
    none_dbm: float,
    hamlet: npt.NDArray[np.intp],
    location: npt.NDArray[np.intp],
    dist: FloatArray,
) -> tuple[IntArray, IntArray]:
    """Keys (hamlet·n_operators + operator) and packed best levels of hamlet × location pairs.

    The pattern only takes away, so a pair farther than every slot's boresight reach in the
    hamlet's environment (``alive_within``) cannot win: such pairs, about half of those the
    search returns (its reach is the most favourable environment's), are dropped first.
    """
    take = np.take
    n_loc = group.x.shape[0]
    row = take(environment, hamlet).astype(np.int64) * n_loc + location
    alive = np.flatnonzero(dist <= take(group.alive_within, row))
    hamlet, location = take(hamlet, alive), take(location, alive)
    dist, row = take(dist, alive), take(row, alive)
    near = np.flatnonzero(dist < group.free_space_within)
    ld = np.log10(np.maximum(dist, MIN_DISTANCE_M, out=dist), out=dist)  # dist is done with
    ld -= 3.0
    # bearing of the hamlet seen from the location, radians in [-π, π]
    bearing = np.arctan2(
        take(tree.x, hamlet) - take(group.x, location),
        take(tree.y, hamlet) - take(group.y, location),
    )
    pick = np.zeros(hamlet.shape[0], dtype=np.int64)
    if group.uniform:
        best = _base(group, 0, row, location, ld, near)
        nearest = np.empty(0, dtype=np.float64)
        for c in range(group.k):
            off = _off_squared(bearing, take(group.azimuth[c], location))
            if c == 0:
                nearest = off
            else:
                pick[off < nearest] = c
                np.minimum(nearest, off, out=nearest)
        nearest *= take(group.curve[0], location)
        best -= np.minimum(nearest, FRONT_TO_BACK_DB, out=nearest)
    else:
        best = np.empty(0, dtype=np.float64)
        for c in range(group.k):
            lev = _base(group, c, row, location, ld, near)
            off = _off_squared(bearing, take(group.azimuth[c], location))
            off *= take(group.curve[c], location)
            lev -= np.minimum(off, FRONT_TO_BACK_DB, out=off)
            if c == 0:
                best = lev
            else:
                pick[lev > best] = c
                np.maximum(best, lev, out=best)
    sector = take(group.sector, pick * n_loc + location)
    # below none_dbm a pair never beats the initial -1; a rounding error short of it goes on to
    # _decode, which decides on the exact level
    best -= none_dbm
    packed = ((best / QUANTUM_DB).astype(np.int64) << 32) | sector
    packed[best < -QUANTUM_DB] = -1
    key = hamlet * n_operators + take(group.operator, location)
    return key, packed


def _base(
    group: Locations,
    c: int,
    row: IntArray,
    location: npt.NDArray[np.intp],
    ld: FloatArray,
    near: IntArray,
) -> FloatArray:
    """Boresight level of slot ``c``: Hata, and free space where that is lower."""
    lev = np.take(group.intercept[c], row)
    lev -= np.take(group.slope[c], location) * ld
    if near.size:
        floor = np.take(group.free_space[c], row[near]) - 20.0 * ld[near]
        lev[near] = np.minimum(lev[near], floor)
    return np.asarray(lev)


def _off_squared(bearing: FloatArray, azimuth: FloatArray) -> FloatArray:
    """Squared angle (rad²) between bearings and azimuths, both in [-π, π]."""
    off = np.abs(bearing - azimuth)
    np.minimum(off, 2.0 * math.pi - off, out=off)
    off *= off
    return off


def _decode(
    packed_best: IntArray,
    tree: HamletTree,
    environment: npt.NDArray[np.int8],
    budget: LinkBudget,
    n_operators: int,
    none_dbm: float,
) -> tuple[FloatArray, IntArray]:
    n = len(tree)
    level = np.full(n * n_operators, np.nan)
    serving = np.full(n * n_operators, -1, dtype=np.int64)
    won = np.flatnonzero(packed_best >= 0)
    sector = packed_best[won] & 0xFFFFFFFF
    hamlet = won // n_operators if n_operators else won
    exact = levels(budget, environment, tree.x, tree.y, hamlet, sector)
    # a pair a rounding error short of none_dbm came through: the plain formula decides
    ok = exact >= none_dbm
    level[won[ok]] = exact[ok]
    serving[won[ok]] = sector[ok]
    return level.reshape(n, n_operators), serving.reshape(n, n_operators)


def measured_levels(
    tree: HamletTree,
    readings: Readings,
    operators: tuple[str, ...],
    settings: CoverageSettings,
    now: float,
) -> FloatArray:
    """Median of the readings within ``measured_radius_m`` and ``measured_max_age_days`` of each
    hamlet, per operator; NaN where there are none. Readings dated after ``now`` are ignored."""
    n = tree.x.shape[0]
    out = np.full((n, len(operators)), np.nan)
    if len(readings) == 0 or tree.tree is None:
        return out
    op = operator_index(readings.operator, operators, "readings.operator")
    age = now - np.asarray(readings.measured_at, dtype=np.float64)
    fresh = np.flatnonzero((age >= 0) & (age <= settings.measured_max_age_days * SECONDS_PER_DAY))
    if fresh.size == 0:
        return out
    rx, ry = project(readings.lon[fresh], readings.lat[fresh], "readings.lon/lat")
    value = np.asarray(readings.rsrp_dbm, dtype=np.float64)[fresh]
    if not np.isfinite(value).all():
        raise ValidationError(
            "readings.rsrp_dbm", float(value[np.argmax(~np.isfinite(value))]), "must be finite"
        )
    found = tree.tree.sparse_distance_matrix(
        cKDTree(np.column_stack([rx, ry])), settings.measured_radius_m, output_type="ndarray"
    )
    hamlet = found["i"].astype(np.int64)
    reading = found["j"].astype(np.int64)
    if hamlet.size == 0:
        return out
    key = hamlet * len(operators) + op[fresh][reading]
    vals = value[reading]
    order = np.lexsort((vals, key))
    key, vals = key[order], vals[order]
    uniq, start, count = np.unique(key, return_index=True, return_counts=True)
    median = (vals[start + (count - 1) // 2] + vals[start + count // 2]) / 2.0
    out.ravel()[uniq] = median
    return out
