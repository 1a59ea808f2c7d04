"""The coverage engine on the national shape, beside a plain geopandas version of the same model.

1. ``classify`` of the national shape (``synth.national``: ~64,000 hamlets, ~120,000 sectors,
   plus 20,000 field readings) for every operator, in a child process of its own: wall time
   (median of 3) and the child's peak RSS, everything included. Targets: ≤ 5 s, ≤ 2 GiB.
   (a) beside it, in another child, a straightforward geopandas implementation of the same model
   (``sjoin`` with the ``dwithin`` predicate at each sector's reach, the same propagation
   functions on the joined frame, ``groupby`` max): target ≥ 10× slower than the engine; the
   two must agree on every hamlet's status.
   (b) the bare cKDTree pair search the engine runs (hamlets × locations within reach): the
   engine should cost ≤ 3× it. Shown too: the same search per sector, and the two reductions
   of candidate levels to the best per hamlet and operator (``np.maximum.at`` and a sort).
2. ``dead_zones`` for one whole province (Cao Bằng, synthetic sites): target ≤ 5 s.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import Outcome, check, heading, line

NAME = "coverage"
SEED = 1
CLASSIFY_TARGET_S = 5.0
MEMORY_TARGET_GIB = 2.0
BASELINE_RATIO = 10.0
SEARCH_RATIO = 3.0
DEAD_ZONE_TARGET_S = 5.0
NOW = 1_760_000_000.0
READINGS = 20_000
ROOT = Path(__file__).resolve().parent.parent


def main() -> list[Outcome]:
    heading("coverage: national shape classified for every operator")
    line("load average (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    with tempfile.TemporaryDirectory(prefix="lomsong-bench-coverage-") as tmp:
        data = Path(tmp)
        started = time.perf_counter()
        shape = _prepare(data)
        line(
            f"synthetic national shape (seed {SEED}): {shape['hamlets']:,} hamlets, "
            f"{shape['sectors']:,} sectors, {shape['readings']:,} readings "
            f"(generated in {time.perf_counter() - started:.1f} s, not timed below)"
        )
        engine = _child("engine", data)
        baseline = _child("baseline", data)
        agree = _agreement(data)
    outcomes = _report(engine, baseline, agree)
    heading("coverage: dead-zone polygons for one province (Cao Bằng)")
    outcomes.append(_dead_zones())
    return outcomes


def _prepare(data: Path) -> dict[str, int]:
    """Generate the national shape once and store it for the child processes."""
    from lomsong.coverage import boundaries, frames, synth
    from lomsong.coverage.model import CoverageSettings

    communes = boundaries.communes()
    hamlets_gdf, sites_gdf = synth.national(SEED)
    hamlets = frames.hamlets_from_frame(hamlets_gdf, communes)
    sectors = frames.sectors_from_frame(sites_gdf)
    readings = _readings(hamlets.lon, hamlets.lat, CoverageSettings().operator_keys())
    with open(data / "columns.pickle", "wb") as f:
        pickle.dump((hamlets, sectors, readings), f)
    with open(data / "frames.pickle", "wb") as f:
        pickle.dump((hamlets_gdf, sites_gdf, hamlets.environment), f)
    return {"hamlets": len(hamlets), "sectors": len(sectors), "readings": len(readings)}


def _readings(lon: np.ndarray, lat: np.ndarray, operators: tuple[str, ...]) -> Any:
    from lomsong.coverage.model import Readings, as_object

    rng = np.random.default_rng(SEED)
    at = rng.integers(0, lon.size, READINGS)
    return Readings(
        lon=lon[at] + rng.normal(0, 0.002, READINGS),
        lat=lat[at] + rng.normal(0, 0.002, READINGS),
        operator=as_object(list(rng.choice(operators[:3], READINGS))),
        rsrp_dbm=rng.normal(-100.0, 10.0, READINGS).round(1),
        measured_at=NOW - rng.uniform(0, 400, READINGS) * 86_400.0,
        source=as_object(["field"] * READINGS),
    )


def _child(kind: str, data: Path) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter, so that its peak RSS is its own."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_coverage", kind, str(data)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench_coverage {kind} child failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _peak_rss_gib() -> float:
    # Linux reports ru_maxrss in KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _timed(fn: Any, repeat: int) -> tuple[list[float], list[float], Any]:
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return walls, cpus, out


def _engine_child(data: Path) -> dict[str, Any]:
    from lomsong.coverage import links
    from lomsong.coverage.engine import classify
    from lomsong.coverage.model import CoverageSettings

    with open(data / "columns.pickle", "rb") as f:
        hamlets, sectors, readings = pickle.load(f)
    settings = CoverageSettings()
    rss_before = _peak_rss_gib()
    walls, cpus, result = _timed(
        lambda: classify(hamlets, sectors, readings, settings, now=NOW), repeat=3
    )
    peak = _peak_rss_gib()
    np.save(data / "engine_status.npy", result.status)
    np.save(data / "engine_overall.npy", result.overall)

    tree = links.HamletTree(*links.project(hamlets.lon, hamlets.lat))
    budget = links.link_budget(sectors, settings)

    def search() -> int:
        fresh = links.HamletTree(*links.project(hamlets.lon, hamlets.lat))
        return sum(i.size for g in budget.groups for i, _, _ in fresh.pairs(g.x, g.y, g.reach))

    s_walls, s_cpus, n_pairs = _timed(search, repeat=3)

    def per_sector() -> int:
        return sum(i.size for i, _, _ in tree.pairs(budget.x, budget.y, budget.reach_m))

    p_walls, _, n_sector_pairs = _timed(per_sector, repeat=1)

    # the two reductions, on the same candidate levels
    chunks = [
        links._chunk(tree, hamlets.environment, g, 5, settings.thresholds.none_dbm, *pair)
        for g in budget.groups
        for pair in tree.pairs(g.x, g.y, g.reach)
    ]
    key = np.concatenate([c[0] for c in chunks])
    packed = np.concatenate([c[1] for c in chunks])
    best = np.full(len(hamlets) * 5, -1, dtype=np.int64)
    m_walls, _, _ = _timed(lambda: np.maximum.at(best, key, packed), repeat=3)

    def by_sort() -> np.ndarray:
        order = np.lexsort((packed, key))
        k = key[order]
        last = np.flatnonzero(np.r_[k[1:] != k[:-1], True])
        out = np.full(len(hamlets) * 5, -1, dtype=np.int64)
        out[k[last]] = packed[order][last]
        return out

    o_walls, _, sorted_best = _timed(by_sort, repeat=3)
    assert np.array_equal(np.maximum(sorted_best, -1), best)
    return {
        "walls": walls,
        "cpus": cpus,
        "rss_before_gib": rss_before,
        "peak_gib": peak,
        "search_walls": s_walls,
        "search_cpus": s_cpus,
        "pairs": n_pairs,
        "sector_pairs": n_sector_pairs,
        "sector_search_wall": p_walls[0],
        "maximum_at": statistics.median(m_walls),
        "sort": statistics.median(o_walls),
        "candidates": int(key.size),
        "overall": np.bincount(result.overall, minlength=4).tolist(),
        "measured": int(result.measured.sum()),
    }


def _baseline_child(data: Path) -> dict[str, Any]:
    """The same model written the plain geopandas way: sjoin, columns, groupby."""
    import geopandas as gpd

    from lomsong.coverage import propagation as prop
    from lomsong.coverage.links import link_budget
    from lomsong.coverage.model import METRIC_CRS, CoverageSettings

    with open(data / "frames.pickle", "rb") as f:
        hamlets_gdf, sites_gdf, environment = pickle.load(f)
    with open(data / "columns.pickle", "rb") as f:
        _, sectors, _ = pickle.load(f)
    settings = CoverageSettings()
    none = settings.thresholds.none_dbm
    # the reach each sector is searched within is the engine's (the same model)
    reach = link_budget(sectors, settings).reach_m
    del sectors
    rss_before = _peak_rss_gib()
    wall, cpu = time.perf_counter(), time.process_time()

    hamlets_m = hamlets_gdf[["geometry"]].to_crs(METRIC_CRS)
    hamlets_m["environment"] = environment
    sites_m = sites_gdf.to_crs(METRIC_CRS)
    joined = gpd.sjoin(sites_m, hamlets_m, predicate="dwithin", distance=reach)
    hamlet_geom = hamlets_m.geometry.loc[joined["index_right"]].to_numpy()
    hx = gpd.GeoSeries(hamlet_geom).x.to_numpy()
    hy = gpd.GeoSeries(hamlet_geom).y.to_numpy()
    sx, sy = joined.geometry.x.to_numpy(), joined.geometry.y.to_numpy()
    distance_km = np.hypot(hx - sx, hy - sy) / 1000.0
    height = joined["height_m"].fillna(settings.default_height_m).to_numpy()
    beamwidth = joined["beamwidth_deg"].fillna(settings.default_beamwidth_deg).to_numpy()
    azimuth = joined["azimuth_deg"].to_numpy(dtype=float)
    power = joined["power_dbm"].fillna(settings.default_power_dbm).to_numpy()
    gain = np.where(np.isnan(azimuth), settings.omni_gain_dbi, settings.sector_gain_dbi)
    radio = prop.radio_codes(joined["radio"].to_numpy(dtype=object))
    loss = prop.path_loss_db(
        joined["band_mhz"].to_numpy(),
        height,
        distance_km,
        joined["environment"].to_numpy(dtype=np.int8),
        mobile_height_m=settings.mobile_height_m,
    )
    pattern = prop.pattern_db(prop.bearing_deg(hx - sx, hy - sy), azimuth, beamwidth)
    margin = settings.shadow_margin_db
    joined["level"] = prop.reference_signal_dbm(power, radio) + gain - margin - pattern - loss
    joined = joined[joined["level"] >= none]
    best = joined.groupby(["index_right", "operator"])["level"].max().unstack()
    best = best.reindex(index=hamlets_m.index, columns=list(settings.operator_keys()))
    level = best.to_numpy(dtype=float)
    status = np.full(level.shape, 2, dtype=np.int8)
    status[level >= none] = 1
    status[level >= settings.thresholds.covered_dbm] = 0
    elapsed = time.perf_counter() - wall
    cpu_s = time.process_time() - cpu
    peak = _peak_rss_gib()
    np.save(data / "baseline_status.npy", status)
    return {
        "wall": elapsed,
        "cpu": cpu_s,
        "rss_before_gib": rss_before,
        "peak_gib": peak,
        "pairs": int(len(joined)),
    }


def _agreement(data: Path) -> dict[str, int]:
    """Compare the engine's predicted statuses (readings left out) with the baseline's."""
    from lomsong.coverage.engine import classify
    from lomsong.coverage.model import CoverageSettings, empty_readings

    with open(data / "columns.pickle", "rb") as f:
        hamlets, sectors, _ = pickle.load(f)
    predicted = classify(hamlets, sectors, empty_readings(), CoverageSettings(), now=NOW)
    baseline = np.load(data / "baseline_status.npy")
    differ = predicted.status != baseline
    return {"cells": int(differ.size), "differ": int(differ.sum())}


def _report(
    engine: dict[str, Any], baseline: dict[str, Any], agree: dict[str, int]
) -> list[Outcome]:
    wall = statistics.median(engine["walls"])
    cpu = statistics.median(engine["cpus"])
    search = statistics.median(engine["search_walls"])
    overall = engine["overall"]
    line(
        f"classify: {', '.join(f'{w:.2f}' for w in engine['walls'])} s wall "
        f"(CPU {', '.join(f'{c:.2f}' for c in engine['cpus'])} s); "
        f"{engine['pairs']:,} hamlet × location pairs"
    )
    line(
        f"overall: {overall[0]:,} covered, {overall[1]:,} weak, {overall[2]:,} none; "
        f"{engine['measured']:,} hamlet × operator levels measured"
    )
    line(
        f"child process RSS: {engine['rss_before_gib']:.2f} GiB with the data loaded, "
        f"peak {engine['peak_gib']:.2f} GiB"
    )
    out = [
        check(
            NAME,
            "national classify",
            f"{wall:.2f} s",
            f"≤ {CLASSIFY_TARGET_S:g} s",
            wall <= CLASSIFY_TARGET_S,
        ),
        check(
            NAME,
            "national classify peak RSS",
            f"{engine['peak_gib']:.2f} GiB",
            f"≤ {MEMORY_TARGET_GIB:g} GiB",
            engine["peak_gib"] <= MEMORY_TARGET_GIB,
        ),
    ]
    heading("coverage: (a) beside a plain geopandas sjoin + groupby of the same model")
    ratio = baseline["wall"] / wall
    line(
        f"geopandas: {baseline['wall']:.1f} s wall (CPU {baseline['cpu']:.1f} s), "
        f"{baseline['pairs']:,} sector pairs at or above none_dbm, peak RSS "
        f"{baseline['peak_gib']:.2f} GiB"
    )
    line(
        f"statuses (predicted, no readings) that differ from the engine's: "
        f"{agree['differ']:,} of {agree['cells']:,}"
    )
    out.append(
        check(
            NAME,
            "engine vs geopandas",
            f"{ratio:.1f}× faster",
            f"≥ {BASELINE_RATIO:g}×",
            ratio >= BASELINE_RATIO,
        )
    )
    out.append(
        check(
            NAME,
            "engine agrees with geopandas",
            f"{agree['differ']} statuses differ",
            "0",
            agree["differ"] == 0,
        )
    )
    heading("coverage: (b) beside the bare cKDTree pair search")
    line(
        f"pair search alone (tree, hamlets × locations): "
        f"{', '.join(f'{w:.2f}' for w in engine['search_walls'])} s wall "
        f"(CPU {statistics.median(engine['search_cpus']):.2f} s); per sector instead: "
        f"{engine['sector_search_wall']:.2f} s for {engine['sector_pairs']:,} pairs"
    )
    line(
        f"reduction of {engine['candidates']:,} candidate levels to the best per hamlet and "
        f"operator: np.maximum.at {engine['maximum_at'] * 1000:.0f} ms, lexsort "
        f"{engine['sort'] * 1000:.0f} ms"
    )
    line(f"classify CPU {cpu:.2f} s")
    search_ratio = wall / search
    out.append(
        check(
            NAME,
            "classify vs bare pair search",
            f"{search_ratio:.2f}×",
            f"≤ {SEARCH_RATIO:g}×",
            search_ratio <= SEARCH_RATIO,
        )
    )
    return out


def _dead_zones() -> Outcome:
    from lomsong.coverage import boundaries, frames, synth
    from lomsong.coverage.deadzones import dead_zones
    from lomsong.coverage.model import CoverageSettings, take_sectors

    communes = boundaries.communes(province="04")
    sectors = frames.sectors_from_frame(synth.sites(communes, seed=SEED))
    walls, cpus, zones = _timed(lambda: dead_zones(communes, sectors, CoverageSettings()), 3)
    wall = statistics.median(walls)
    line(
        f"{len(communes)} communes, {len(sectors):,} sectors: "
        f"{', '.join(f'{w:.2f}' for w in walls)} s wall (CPU {statistics.median(cpus):.2f} s); "
        f"dead zones {zones['area_km2'].sum():.1f} km² of {communes['area_km2'].sum():,.0f} km²"
    )
    # with no terrain the synthetic network leaves little uncovered; one small operator alone
    # shows the polygons at work
    small = take_sectors(sectors, sectors.operator == "vietnamobile")
    w_small, _, alone = _timed(lambda: dead_zones(communes, small, CoverageSettings()), 1)
    line(
        f"vietnamobile alone ({len(small)} sectors): {w_small[0]:.2f} s, dead zones "
        f"{alone['area_km2'].sum():,.0f} km² in {int((alone['area_km2'] > 0).sum())} communes"
    )
    return check(
        NAME,
        "Cao Bằng dead zones",
        f"{wall:.2f} s",
        f"≤ {DEAD_ZONE_TARGET_S:g} s",
        wall <= DEAD_ZONE_TARGET_S,
    )


if __name__ == "__main__":
    # child processes: python -m bench.bench_coverage {engine|baseline} DATA_DIR
    kind, where = sys.argv[1], Path(sys.argv[2])
    runner = {"engine": _engine_child, "baseline": _baseline_child}[kind]
    print(json.dumps(runner(where)))
