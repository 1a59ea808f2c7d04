"""The coverage engine: hamlets, sectors and readings in; status per hamlet and operator out.

``classify`` predicts the best level of every operator at every hamlet (``links`` and
``propagation``: Okumura–Hata/COST-231 with no terrain, 3GPP sector pattern), replaces it by the
median of fresh nearby readings where there are some, and grades it against the thresholds.
``apply_outages`` overlays what is down right now, ``whatif`` adds candidate sectors in memory,
``summarize`` counts hamlets and people per status, per commune or province.

Statuses (``model.STATUS_CODES``): covered at or above ``covered_dbm``, weak from ``none_dbm``
up to ``covered_dbm``, none below ``none_dbm`` or where no sector reaches; outage only from
``apply_outages``. A hamlet's overall status is the best over its operators.

Example
-------
>>> import numpy as np
>>> from lomsong.coverage.model import CoverageSettings, Hamlets, Sectors, as_object
>>> from lomsong.coverage.model import STATUS_CODES, empty_readings, RURAL
>>> hamlets = Hamlets(as_object(["h1"]), as_object(["Bản Nà Lũng"]), as_object(["01273"]),
...     as_object(["04"]), np.array([106.2]), np.array([22.66]), np.array([300]),
...     np.array([True]), np.array([RURAL], dtype=np.int8), np.array([False]))
>>> sectors = Sectors(as_object(["viettel:s1:1"]), as_object(["s1"]), as_object(["viettel"]),
...     as_object(["lte"]), np.array([1800.0]), np.array([106.21]), np.array([22.66]),
...     np.array([30.0]), np.array([np.nan]), np.array([np.nan]), np.array([46.0]),
...     np.array([np.nan]), np.array([True]))
>>> result = classify(hamlets, sectors, empty_readings(), CoverageSettings(), now=0.0)
>>> [STATUS_CODES[code].value for code in result.status[0]]
['covered', 'none', 'none', 'none', 'none']
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from lomsong.coverage.links import (
    HamletTree,
    best_servers,
    link_budget,
    measured_levels,
    operator_index,
    project,
)
from lomsong.coverage.model import (
    COVERED,
    NONE,
    OUTAGE,
    STATUS_CODES,
    WEAK,
    BoolArray,
    Classification,
    CoverageSettings,
    FloatArray,
    Hamlets,
    IntArray,
    Readings,
    Sectors,
    Thresholds,
    take_sectors,
)
from lomsong.errors import ValidationError

__all__ = [
    "Classification",
    "WhatIf",
    "apply_outages",
    "classify",
    "status_codes",
    "summarize",
    "whatif",
]

# Rank of each status code when choosing a hamlet's overall status: covered, weak, outage, none.
_RANK = np.array([0, 1, 3, 2], dtype=np.int8)
_UNRANK = np.array([COVERED, WEAK, OUTAGE, NONE], dtype=np.int8)


def status_codes(level_dbm: FloatArray, thresholds: Thresholds) -> npt.NDArray[np.int8]:
    """COVERED at or above ``covered_dbm``, WEAK from ``none_dbm`` (inclusive), else NONE."""
    out = np.full(np.shape(level_dbm), NONE, dtype=np.int8)
    with np.errstate(invalid="ignore"):
        out[level_dbm >= thresholds.none_dbm] = WEAK
        out[level_dbm >= thresholds.covered_dbm] = COVERED
    return out


def classify(
    hamlets: Hamlets,
    sectors: Sectors,
    readings: Readings,
    settings: CoverageSettings,
    *,
    now: float,
) -> Classification:
    """Coverage status of every hamlet for every configured operator.

    Every loaded sector counts, ``active`` or not: this is the coverage the network gives when
    it is up; ``apply_outages`` overlays what is down. Readings within
    ``settings.measured_radius_m`` of a hamlet, of the same operator, at most
    ``settings.measured_max_age_days`` old at ``now`` (Unix seconds) replace the prediction by
    their median and mark it ``measured``.

    Parameters
    ----------
    hamlets, sectors, readings
        The columns (``lomsong.coverage.model``); ``frames`` builds them from GeoDataFrames.
    settings
        Thresholds, operators, defaults for sectors that lack power, height or beamwidth.
    now
        The time readings are aged against.

    Returns
    -------
    Classification
        ``rsrp_dbm[i, j]`` is hamlet i's level from ``operators[j]`` (NaN where no sector
        reaches ``none_dbm`` and nothing was measured), ``serving`` the predicted best sector.

    Examples
    --------
    See the module docstring.
    """
    operators = settings.operator_keys()
    tree = HamletTree(*project(hamlets.lon, hamlets.lat, "hamlets.lon/lat"))
    environment = _environment(hamlets)
    budget = link_budget(sectors, settings)
    level, serving = best_servers(
        tree, environment, budget, len(operators), settings.thresholds.none_dbm
    )
    measured_dbm = measured_levels(tree, readings, operators, settings, now)
    measured = ~np.isnan(measured_dbm)
    level = np.where(measured, measured_dbm, level)
    status = status_codes(level, settings.thresholds)
    return _finish(operators, level, measured, serving, status, settings)


def apply_outages(
    classification: Classification,
    hamlets: Hamlets,
    sectors: Sectors,
    *,
    down_sectors: BoolArray | None = None,
    down_links: Iterable[tuple[str, str]] = (),
) -> Classification:
    """The live overlay: which served hamlets are cut off right now.

    ``down_sectors`` (default: the sectors not ``active``) are out of service. For a hamlet and
    operator, the *capable* sectors are those whose predicted level there reaches ``none_dbm``.
    If all of them are down and the hamlet was covered or weak, its status becomes OUTAGE
    (``rsrp_dbm`` and ``serving`` keep what returns when they come back). If only some are down,
    a predicted level falls back to the best capable sector still up (covered may become weak);
    a measured one is kept. ``down_links`` holds ``(commune_code, operator)`` pairs whose commune
    probe reports that operator down: its covered and weak hamlets become OUTAGE. A hamlet's
    overall status is OUTAGE when every operator that served it is OUTAGE.

    ``classification`` must come from ``classify`` on the same hamlets and sectors.
    """
    settings = _settings_of(classification, hamlets)
    operators = classification.operators
    n_ops = len(operators)
    status = classification.status.copy()
    rsrp = classification.rsrp_dbm.astype(np.float64)
    serving = classification.serving.copy()
    measured = classification.measured
    down = ~sectors.active if down_sectors is None else np.asarray(down_sectors, dtype=bool)
    if down.shape != (len(sectors),):
        raise ValidationError(
            "down_sectors", down.shape, f"must be one flag per sector ({len(sectors)})"
        )
    served = (status == COVERED) | (status == WEAK)
    if down.any() and len(hamlets):
        tree = HamletTree(*project(hamlets.lon, hamlets.lat, "hamlets.lon/lat"))
        environment = _environment(hamlets)
        none = settings.thresholds.none_dbm
        down_budget = link_budget(take_sectors(sectors, np.flatnonzero(down)), settings)
        down_level, _ = best_servers(tree, environment, down_budget, n_ops, none)
        # (hamlet, operator) with at least one capable sector down
        hit = ~np.isnan(down_level)
        affected = np.flatnonzero(hit.any(axis=1))
        if affected.size:
            up = np.flatnonzero(~down)
            sub = HamletTree(tree.x[affected], tree.y[affected])
            up_budget = link_budget(take_sectors(sectors, up), settings)
            up_level, up_local = best_servers(sub, environment[affected], up_budget, n_ops, none)
            h, j = np.nonzero(hit[affected])
            rows = affected[h]
            cut = np.isnan(up_level[h, j])
            out = cut & served[rows, j]
            status[rows[out], j[out]] = OUTAGE
            fall = ~cut & ~measured[rows, j]
            rows, j, h = rows[fall], j[fall], h[fall]
            rsrp[rows, j] = up_level[h, j]
            serving[rows, j] = up[up_local[h, j]]
            status[rows, j] = status_codes(up_level[h, j], settings.thresholds)
    links = list(down_links)
    if links:
        communes = np.array([c for c, _ in links], dtype=object)
        link_op = operator_index(
            np.array([o for _, o in links], dtype=object), operators, "down_links"
        )
        for col in range(n_ops):
            chosen = communes[link_op == col]
            if chosen.size == 0:
                continue
            cut_off = np.isin(hamlets.commune_code, chosen) & (
                (status[:, col] == COVERED) | (status[:, col] == WEAK)
            )
            status[cut_off, col] = OUTAGE
    return _finish(operators, rsrp, measured.copy(), serving, status, settings)


@dataclass
class WhatIf:
    """What candidate sectors change: ``changed`` are the hamlets whose overall status or status
    for some operator differs between ``before`` and ``after`` (both for every hamlet)."""

    hamlets: Hamlets
    before: Classification
    after: Classification
    changed: IntArray

    def table(self) -> list[dict[str, Any]]:
        """One row per changed hamlet and operator, and one with operator ``"overall"`` where
        the overall status changed: hamlet_id, name, commune_code, population, operator,
        before, after (status names)."""
        rows: list[dict[str, Any]] = []
        h = self.hamlets
        for i in self.changed.tolist():
            base = {
                "hamlet_id": h.ids[i],
                "name": h.names[i],
                "commune_code": h.commune_code[i],
                "population": int(h.population[i]),
            }
            for j, op in enumerate(self.after.operators):
                b, a = int(self.before.status[i, j]), int(self.after.status[i, j])
                if a != b:
                    rows.append(base | {"operator": op, **_transition(b, a)})
            b, a = int(self.before.overall[i]), int(self.after.overall[i])
            if a != b:
                rows.append(base | {"operator": "overall", **_transition(b, a)})
        return rows

    def _gained(self, now: BoolArray, was: BoolArray) -> tuple[int, int]:
        mask = now & ~was
        return int(mask.sum()), int(self.hamlets.population[mask].sum())

    @property
    def newly_covered(self) -> tuple[int, int]:
        """(hamlets, population) whose overall status becomes covered."""
        return self._gained(self.after.overall == COVERED, self.before.overall == COVERED)

    @property
    def newly_served(self) -> tuple[int, int]:
        """(hamlets, population) that had no signal (none) and now have some (covered or weak)."""
        served_after = (self.after.overall == COVERED) | (self.after.overall == WEAK)
        served_before = (self.before.overall == COVERED) | (self.before.overall == WEAK)
        return self._gained(served_after, served_before)


def whatif(
    hamlets: Hamlets,
    sectors: Sectors,
    readings: Readings,
    settings: CoverageSettings,
    candidates: Sectors,
    *,
    now: float,
    base: Classification | None = None,
) -> WhatIf:
    """The hamlets whose status changes if ``candidates`` (sectors not built yet) are added.

    Only hamlets within a candidate's reach are computed again. A candidate improves a hamlet
    where its predicted level beats what the hamlet has now, measured or predicted; there its
    ``serving`` index is ``len(sectors) + k`` for ``candidates`` row k. Without readings,
    ``after`` equals ``classify`` on the sectors and candidates together. ``base``, if given,
    must be ``classify``'s result for the same hamlets, sectors, readings and settings.

    Examples
    --------
    >>> # answer = whatif(hamlets, sectors, readings, settings, new_site, now=time.time())
    >>> # answer.newly_served -> (12, 3480); answer.table() -> rows for a report
    """
    if base is None:
        base = classify(hamlets, sectors, readings, settings, now=now)
    operators = settings.operator_keys()
    if len(base) != len(hamlets) or base.operators != operators:
        raise ValidationError(
            "base", (len(base), base.operators), "must classify these hamlets and operators"
        )
    tree = HamletTree(*project(hamlets.lon, hamlets.lat, "hamlets.lon/lat"))
    budget = link_budget(candidates, settings)
    level, serving = best_servers(
        tree, _environment(hamlets), budget, len(operators), settings.thresholds.none_dbm
    )
    current = base.rsrp_dbm.astype(np.float64)
    better = ~np.isnan(level) & (np.isnan(current) | (level > current))
    rsrp = np.where(better, level, current)
    status = base.status.copy()
    status[better] = status_codes(level[better], settings.thresholds)
    after = _finish(
        operators,
        rsrp,
        base.measured & ~better,
        np.where(better, serving + len(sectors), base.serving),
        status,
        settings,
    )
    changed = np.flatnonzero(
        (after.status != base.status).any(axis=1) | (after.overall != base.overall)
    )
    return WhatIf(hamlets=hamlets, before=base, after=after, changed=changed)


def summarize(
    hamlets: Hamlets,
    classification: Classification,
    *,
    by: Literal["commune", "province"] = "commune",
) -> pd.DataFrame:
    """Hamlets and population per status, per operator and overall: the figures provinces report.

    One row per code (commune or province) and scope (``"overall"``, then each operator), sorted
    by code. Columns: ``code``, ``operator``, ``hamlets``, ``population``, ``hamlets_no_power``,
    ``population_no_power``, and for each status ``s`` in covered, weak, none, outage:
    ``hamlets_s``, ``population_s``, ``hamlets_s_no_power``, ``population_s_no_power``.

    Examples
    --------
    >>> # summarize(hamlets, result, by="province").query("operator == 'overall'")
    """
    if by == "commune":
        codes = hamlets.commune_code
    elif by == "province":
        codes = hamlets.province_code
    else:
        raise ValidationError("by", by, "expected one of {commune, province}")
    if len(classification) != len(hamlets):
        raise ValidationError(
            "classification", len(classification), f"must have one row per hamlet ({len(hamlets)})"
        )
    group, uniques = pd.factorize(pd.Series(codes, dtype=object), sort=True)
    n_groups = len(uniques)
    population = np.asarray(hamlets.population, dtype=np.float64)
    no_power = ~np.asarray(hamlets.has_grid_power, dtype=bool)
    scopes = [("overall", classification.overall)] + [
        (op, classification.status[:, j]) for j, op in enumerate(classification.operators)
    ]

    def count(mask: BoolArray, weights: FloatArray | None = None) -> IntArray:
        w = mask.astype(np.float64) if weights is None else np.where(mask, weights, 0.0)
        return np.bincount(group, weights=w, minlength=n_groups).round().astype(np.int64)

    everyone = np.ones(len(hamlets), dtype=bool)
    frames = []
    for scope, status in scopes:
        columns: dict[str, Any] = {
            "code": np.asarray(uniques, dtype=object),
            "operator": np.full(n_groups, scope, dtype=object),
            "hamlets": count(everyone),
            "population": count(everyone, population),
            "hamlets_no_power": count(no_power),
            "population_no_power": count(no_power, population),
        }
        for code, name in enumerate(STATUS_CODES):
            mask = status == code
            columns[f"hamlets_{name}"] = count(mask)
            columns[f"population_{name}"] = count(mask, population)
            columns[f"hamlets_{name}_no_power"] = count(mask & no_power)
            columns[f"population_{name}_no_power"] = count(mask & no_power, population)
        frames.append(pd.DataFrame(columns))
    out = pd.concat(frames, ignore_index=True)
    scope_order = {scope: k for k, (scope, _) in enumerate(scopes)}
    out["_scope"] = out["operator"].map(scope_order)
    out = out.sort_values(["code", "_scope"], kind="stable").drop(columns="_scope")
    return out.reset_index(drop=True)


def _environment(hamlets: Hamlets) -> npt.NDArray[np.int8]:
    env = np.asarray(hamlets.environment, dtype=np.int8)
    bad = (env < 0) | (env > 2)
    if bad.any():
        raise ValidationError(
            "hamlets.environment", int(env[np.argmax(bad)]), "expected 0 (urban), 1 or 2 (rural)"
        )
    return env


def _settings_of(classification: Classification, hamlets: Hamlets) -> CoverageSettings:
    if classification.settings is None:
        raise ValidationError("classification", "no settings", "must come from classify")
    if len(classification) != len(hamlets):
        raise ValidationError(
            "classification", len(classification), f"must have one row per hamlet ({len(hamlets)})"
        )
    return classification.settings


def _finish(
    operators: tuple[str, ...],
    level: FloatArray,
    measured: BoolArray,
    serving: IntArray,
    status: npt.NDArray[np.int8],
    settings: CoverageSettings,
) -> Classification:
    """Overall status and best operator from per-operator statuses."""
    n = status.shape[0]
    if status.shape[1]:
        overall = _UNRANK[_RANK[status].min(axis=1)]
    else:
        overall = np.full(n, NONE, dtype=np.int8)
    served = (status == COVERED) | (status == WEAK)
    score = np.where(served, level, -np.inf)
    best = np.argmax(score, axis=1) if status.shape[1] else np.zeros(n, dtype=np.int64)
    best_operator = np.where(served.any(axis=1), best, -1).astype(np.int64)
    return Classification(
        operators=operators,
        rsrp_dbm=level.astype(np.float32),
        measured=np.asarray(measured, dtype=bool),
        serving=np.asarray(serving, dtype=np.int64),
        status=status.astype(np.int8),
        overall=overall.astype(np.int8),
        best_operator=best_operator,
        settings=settings,
    )


def _transition(before: int, after: int) -> dict[str, str]:
    return {"before": STATUS_CODES[before].value, "after": STATUS_CODES[after].value}
